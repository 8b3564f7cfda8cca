"""Video bytes without a server: the shape's clip, sizes, ranges, hashes, faults and MP4 boxes."""

from __future__ import annotations

import hashlib
import io
import struct

import av
import pytest
from pydantic import ValidationError

from omniflash_prefect.emulator import (
    DEFAULT_SHAPE,
    EmulatorConfig,
    VideoFault,
    VideoShape,
    video_sha256,
    video_size,
)
from omniflash_prefect.emulator.clips import clip_bytes
from omniflash_prefect.emulator.videos import (
    DEFAULT_TAG_BOX_BYTES,
    PADDING_BLOCK_BYTES,
    UNREADABLE_BODY_BYTES,
    box_header,
    ftyp_box,
    iter_video_chunks,
    min_video_size,
    sample_bytes,
    video_layout,
)

from .helpers import top_level_boxes

TASK = "task_01KS1H7ZYSJWH1N779S2FSHTKA"
OTHER = "task_01KS1H7ZYSJWH1N779S2FSHTKB"
#: The shape most tests submit (``duration=4``), so its clip is usually cached already.
FOUR_SECONDS = VideoShape(duration=4)


def _video(
    task_id: str,
    size: int | None,
    *,
    shape: VideoShape = DEFAULT_SHAPE,
    fault: VideoFault | None = None,
) -> bytes:
    return b"".join(iter_video_chunks(task_id, size, shape=shape, fault=fault))


def _probe(data: bytes) -> tuple[int, int, float, str]:
    """Width, height, seconds and codec, from the container and stream headers alone."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert container.duration is not None
        return stream.width, stream.height, container.duration / 1e6, stream.codec_context.name


def test_sample_is_a_real_h264_mp4() -> None:
    """The packaged clip is a small, faststart MP4 (moov before mdat) with an H.264 track."""
    sample = sample_bytes()
    assert len(sample) < 30_000
    kinds = [kind for kind, _ in top_level_boxes(sample)]
    assert kinds[0] == "ftyp"
    assert kinds.index("moov") < kinds.index("mdat")
    assert b"avc1" in sample


def test_default_video_is_the_shape_clip_plus_a_task_box() -> None:
    """Without a size, a video is its shape's clip followed by a small task-specific free box."""
    clip = clip_bytes(DEFAULT_SHAPE)
    video = _video(TASK, None)
    assert len(video) == video_size(TASK) == len(clip) + DEFAULT_TAG_BOX_BYTES
    assert video.startswith(clip)
    assert top_level_boxes(video)[-1] == ("free", DEFAULT_TAG_BOX_BYTES)
    assert hashlib.sha256(video).hexdigest() == video_sha256(TASK) == video_sha256(TASK, None)
    assert video_sha256(TASK) != video_sha256(OTHER)
    assert video_sha256(TASK) != video_sha256(TASK, shape=FOUR_SECONDS)
    assert _video(TASK, None) == video  # deterministic


def test_sized_video_is_exact_and_valid() -> None:
    """A requested size is met exactly by one padding free box, and the bytes hash as reported."""
    clip = clip_bytes(FOUR_SECONDS)
    size = len(clip) + 3 * PADDING_BLOCK_BYTES + 12_345
    video = _video(TASK, size, shape=FOUR_SECONDS)
    assert len(video) == video_size(TASK, size, shape=FOUR_SECONDS) == size
    assert top_level_boxes(video)[-1] == ("free", size - len(clip))
    assert hashlib.sha256(video).hexdigest() == video_sha256(TASK, size, shape=FOUR_SECONDS)
    assert video_sha256(TASK, size, shape=FOUR_SECONDS) != video_sha256(
        OTHER, size, shape=FOUR_SECONDS
    )
    assert _probe(video) == (1280, 720, 4.0, "h264")  # the padding box hides nothing


def test_smallest_sized_video() -> None:
    """A shape's smallest size holds its clip and a 16-byte free box; one byte less is refused.
    The config's floor is the sample clip's (the smallest video there is)."""
    smallest = min_video_size(FOUR_SECONDS)
    assert smallest == len(clip_bytes(FOUR_SECONDS)) + 16
    assert top_level_boxes(_video(TASK, smallest, shape=FOUR_SECONDS))[-1] == ("free", 16)
    with pytest.raises(ValueError, match=r"at least .* 1280x720 · 4 s clip"):
        video_size(TASK, smallest - 1, shape=FOUR_SECONDS)

    floor = min_video_size()
    assert floor == len(sample_bytes()) + 16 < smallest
    with pytest.raises(ValidationError):
        EmulatorConfig(video_size_bytes=floor - 1)
    assert EmulatorConfig(video_size_bytes=floor).video_size_bytes == floor


def _offset(where: str, delta: int, head: int) -> int:
    """An offset ``delta`` bytes from the start, the end of the head (the clip and the free
    box header: where the padding starts) or the end of the first padding-block-sized span."""
    return {"start": 0, "head": head, "block": PADDING_BLOCK_BYTES}[where] + delta


@pytest.mark.parametrize(
    ("start", "end", "chunk_size"),
    [
        (("start", 0), None, 1000),
        (("start", 5), ("start", 6), 256 * 1024),
        (("head", -3), ("head", 20), 7),
        (("block", -10), ("head", 3 * PADDING_BLOCK_BYTES + 10), 100_000),
        (("head", 150_000), None, 333),
    ],
)
def test_ranges_match_the_whole_video(
    start: tuple[str, int], end: tuple[str, int] | None, chunk_size: int
) -> None:
    """Any byte range, in any chunk size, equals the same slice of the whole video: inside the
    clip, across the clip and its free box header, and deep in the padding."""
    head = len(clip_bytes(FOUR_SECONDS)) + 8  # the clip, then the free box's 8-byte header
    size = head + 300_000
    assert video_layout(TASK, size, shape=FOUR_SECONDS).head_size == head
    first = _offset(*start, head)
    last = None if end is None else _offset(*end, head)
    whole = _video(TASK, size, shape=FOUR_SECONDS)
    chunks = list(iter_video_chunks(TASK, size, first, last, chunk_size, shape=FOUR_SECONDS))
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    assert b"".join(chunks) == whole[first:last]


def test_ranges_outside_the_video_are_refused() -> None:
    """A range outside [0, size] is a programming error, not silently clipped."""
    size = min_video_size(FOUR_SECONDS)
    for start, end in [(-1, 10), (10, 5), (0, size + 1)]:
        with pytest.raises(ValueError, match="outside"):
            next(iter_video_chunks(TASK, size, start, end, shape=FOUR_SECONDS))


def test_box_header_switches_to_largesize_at_4_gib() -> None:
    """Boxes of 2**32 bytes or more use size=1 and a 64-bit largesize (16-byte header)."""
    assert box_header(b"free", 2**32 - 1) == struct.pack(">I4s", 2**32 - 1, b"free")
    assert box_header(b"free", 2**32) == struct.pack(">I4sQ", 1, b"free", 2**32)
    assert box_header(b"free", 5 * 2**30) == struct.pack(">I4sQ", 1, b"free", 5 * 2**30)
    with pytest.raises(ValueError, match="at least 8"):
        box_header(b"free", 7)
    with pytest.raises(ValueError, match="4 bytes"):
        box_header(b"fre", 100)


def test_huge_video_is_generated_by_range_without_materialising() -> None:
    """A 5 GiB video gets a largesize free box, and its last bytes come straight from the
    repeated padding block, computed at that offset."""
    size = 5 * 2**30
    clip = len(clip_bytes(FOUR_SECONDS))
    header = b"".join(iter_video_chunks(TASK, size, clip, clip + 16, shape=FOUR_SECONDS))
    assert header == struct.pack(">I4sQ", 1, b"free", size - clip)

    small = 2 * PADDING_BLOCK_BYTES + clip + 16
    small_padding = b"".join(iter_video_chunks(TASK, small, clip + 8, shape=FOUR_SECONDS))
    tail_offset = size - 100
    padding_offset = tail_offset - (clip + 16)
    start_in_block = padding_offset % PADDING_BLOCK_BYTES
    tail = b"".join(iter_video_chunks(TASK, size, tail_offset, shape=FOUR_SECONDS))
    assert tail == small_padding[start_in_block : start_in_block + 100]


def test_shapes_with_the_same_frame_share_a_clip() -> None:
    """16:9 and 32:18 ask for the same frame, so they get the same clip (and video)."""
    same = VideoShape(duration=4, aspect_ratio="32:18")
    assert clip_bytes(same) is clip_bytes(FOUR_SECONDS)
    assert video_sha256(TASK, shape=same) == video_sha256(TASK, shape=FOUR_SECONDS)


def test_wrong_shape_fault_is_the_padded_sample() -> None:
    """The wrong-shape video is the 1 s 320x180 sample, whatever was asked, padded as usual."""
    portrait = VideoShape(duration=8, resolution="1080p", aspect_ratio="9:16")
    video = _video(TASK, None, shape=portrait, fault="wrong_shape")
    assert video.startswith(sample_bytes())
    assert top_level_boxes(video)[-1] == ("free", DEFAULT_TAG_BOX_BYTES)
    width, height, seconds, codec = _probe(video)
    assert (width, height, codec) == (320, 180, "h264")
    assert seconds == pytest.approx(1.0, abs=0.1)

    sized = _video(TASK, 50_000, shape=portrait, fault="wrong_shape")
    assert len(sized) == 50_000
    assert hashlib.sha256(sized).hexdigest() == video_sha256(
        TASK, 50_000, shape=portrait, fault="wrong_shape"
    )


@pytest.mark.parametrize("task_id", [TASK, OTHER, "task_01KS1H7ZYSJWH1N779S2FSHTKC"])
def test_unreadable_fault_passes_a_signature_check_and_nothing_else(task_id: str) -> None:
    """ftyp first, then task-specific garbage: no demuxer finds a video in it."""
    video = _video(task_id, None, fault="unreadable_mp4")
    assert len(video) == video_size(task_id, fault="unreadable_mp4")
    assert len(video) == len(ftyp_box()) + UNREADABLE_BODY_BYTES
    assert video[4:8] == b"ftyp"
    assert video.startswith(ftyp_box())
    assert b"moov" not in video[: len(ftyp_box())]
    with pytest.raises(av.error.FFmpegError):
        _probe(video)
    assert _video(task_id, None, fault="unreadable_mp4") == video  # deterministic per task


def test_unreadable_fault_is_per_task_and_sized() -> None:
    """Each task gets its own garbage, and video_size_bytes is met exactly."""
    first = _video(TASK, 100_000, fault="unreadable_mp4")
    second = _video(OTHER, 100_000, fault="unreadable_mp4")
    assert len(first) == len(second) == 100_000
    assert first != second
    assert hashlib.sha256(first).hexdigest() == video_sha256(TASK, 100_000, fault="unreadable_mp4")
    assert video_sha256(TASK, fault="unreadable_mp4") != video_sha256(TASK, fault="wrong_shape")
