"""Video bytes without a server: sample clip, sizes, ranges, hashes and MP4 box headers."""

from __future__ import annotations

import hashlib
import struct

import pytest
from pydantic import ValidationError

from omniflash_prefect.emulator import EmulatorConfig, video_sha256, video_size
from omniflash_prefect.emulator.videos import (
    DEFAULT_TAG_BOX_BYTES,
    PADDING_BLOCK_BYTES,
    box_header,
    iter_video_chunks,
    min_video_size,
    sample_bytes,
)

from .helpers import top_level_boxes

TASK = "task_01KS1H7ZYSJWH1N779S2FSHTKA"
OTHER = "task_01KS1H7ZYSJWH1N779S2FSHTKB"


def _video(task_id: str, size: int | None) -> bytes:
    return b"".join(iter_video_chunks(task_id, size))


def test_sample_is_a_real_h264_mp4() -> None:
    """The packaged clip is a small, faststart MP4 (moov before mdat) with an H.264 track."""
    sample = sample_bytes()
    assert len(sample) < 30_000
    kinds = [kind for kind, _ in top_level_boxes(sample)]
    assert kinds[0] == "ftyp"
    assert kinds.index("moov") < kinds.index("mdat")
    assert b"avc1" in sample


def test_default_video_is_sample_plus_a_task_box() -> None:
    """Without a size, a video is the sample followed by a small task-specific free box."""
    video = _video(TASK, None)
    assert len(video) == video_size(TASK, None) == len(sample_bytes()) + DEFAULT_TAG_BOX_BYTES
    assert video.startswith(sample_bytes())
    assert top_level_boxes(video)[-1] == ("free", DEFAULT_TAG_BOX_BYTES)
    assert hashlib.sha256(video).hexdigest() == video_sha256(TASK, None)
    assert video_sha256(TASK, None) != video_sha256(OTHER, None)
    assert _video(TASK, None) == video  # deterministic


def test_sized_video_is_exact_and_valid() -> None:
    """A requested size is met exactly by one padding free box, and the bytes hash as reported."""
    size = 3 * PADDING_BLOCK_BYTES + 12_345
    video = _video(TASK, size)
    assert len(video) == video_size(TASK, size) == size
    assert top_level_boxes(video)[-1] == ("free", size - len(sample_bytes()))
    assert hashlib.sha256(video).hexdigest() == video_sha256(TASK, size)
    assert video_sha256(TASK, size) != video_sha256(OTHER, size)


def test_smallest_sized_video() -> None:
    """The minimum size holds the sample and a 16-byte free box; one byte less is refused."""
    smallest = min_video_size()
    assert smallest == len(sample_bytes()) + 16
    assert top_level_boxes(_video(TASK, smallest))[-1] == ("free", 16)
    with pytest.raises(ValueError, match="at least"):
        video_size(TASK, smallest - 1)
    with pytest.raises(ValidationError):
        EmulatorConfig(video_size_bytes=smallest - 1)
    assert EmulatorConfig(video_size_bytes=smallest).video_size_bytes == smallest


@pytest.mark.parametrize(
    ("start", "end", "chunk_size"),
    [
        (0, None, 1000),
        (5, 6, 256 * 1024),
        (len(sample_bytes()) - 3, len(sample_bytes()) + 20, 7),
        (PADDING_BLOCK_BYTES - 10, 3 * PADDING_BLOCK_BYTES + 10, 100_000),
        (150_000, None, 333),
    ],
)
def test_ranges_match_the_whole_video(start: int, end: int | None, chunk_size: int) -> None:
    """Any byte range, in any chunk size, equals the same slice of the whole video."""
    size = 300_000
    whole = _video(TASK, size)
    chunks = list(iter_video_chunks(TASK, size, start, end, chunk_size))
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    assert b"".join(chunks) == whole[start:end]


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (10, 5), (0, 300_001)])
def test_ranges_outside_the_video_are_refused(start: int, end: int) -> None:
    """A range outside [0, size] is a programming error, not silently clipped."""
    with pytest.raises(ValueError, match="outside"):
        next(iter_video_chunks(TASK, 300_000, start, end))


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
    sample = len(sample_bytes())
    header = b"".join(iter_video_chunks(TASK, size, sample, sample + 16))
    assert header == struct.pack(">I4sQ", 1, b"free", size - sample)

    small = 2 * PADDING_BLOCK_BYTES + sample + 16
    small_padding = b"".join(iter_video_chunks(TASK, small, sample + 8))  # 8-byte header there
    tail_offset = size - 100
    padding_offset = tail_offset - (sample + 16)
    start_in_block = padding_offset % PADDING_BLOCK_BYTES
    tail = b"".join(iter_video_chunks(TASK, size, tail_offset))
    assert tail == small_padding[start_in_block : start_in_block + 100]
