"""The bytes of every emulated video, generated on demand and never held whole in memory.

Downloads must be realistic enough to exercise an archiver and the media checks behind it: a
real, playable H.264 MP4 of the duration, resolution and aspect ratio the task asked for, with a
stable SHA-256 per task, at sizes up to several GiB for benchmarks, served from any byte offset
for resumed (Range) downloads. So a video is laid out as

    [the shape's clip][one top-level ``free`` box: header + per-task padding]

which is still a structurally valid MP4 (players skip ``free`` boxes). The clip is encoded once
per distinct shape and cached (:mod:`.clips`); the padding is a 64 KiB block derived from the
task id with BLAKE2b and repeated, so the byte at any offset is computed directly and a range
can be produced without generating what comes before it.

Two faults change what is laid out, for the media checks to catch:

* ``wrong_shape``: the packaged ``sample.mp4`` (1 s, 320x180, 16:9) instead of the shape's
  clip, padded the same way;
* ``unreadable_mp4``: the sample's ``ftyp`` box followed by task padding alone: the signature
  of an MP4, and nothing a demuxer can read (no ``moov``, no ``mdat``).

``sample.mp4`` was made once, on a machine with ffmpeg (nothing needs ffmpeg at run or test time):

    ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc=size=320x180:rate=24 -t 1 \\
        -c:v libx264 -pix_fmt yuv420p -movflags +faststart -an -y sample.mp4

(ffmpeg 5.1.9 from Debian 12; the result is 6,953 bytes.)
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Final, Literal

from .clips import VideoShape, clip_bytes

VideoFault = Literal["wrong_shape", "unreadable_mp4"]
"""What a faulty provider delivers instead of the video asked for (see the module docstring)."""

#: The shape of a submit that names no duration, resolution or aspect ratio (6 s, 720p, 16:9).
DEFAULT_SHAPE: Final = VideoShape()
#: Size of the repeated per-task padding block.
PADDING_BLOCK_BYTES = 64 * 1024
#: Default chunk size of :func:`iter_video_chunks` (also the download chunk size).
CHUNK_BYTES = 256 * 1024
#: Total size of the ``free`` box appended when no video size is configured: small, yet enough
#: task-specific bytes to give every task its own SHA-256.
DEFAULT_TAG_BOX_BYTES = 64
#: The smallest ``free`` box a sized video may end with: an 8-byte header and 8 task bytes.
MIN_TAG_BOX_BYTES = 16
#: Garbage after the ``ftyp`` box of an unreadable video when no video size is configured.
UNREADABLE_BODY_BYTES = 64 * 1024

_DIGEST_BYTES = 64  # BLAKE2b's largest digest; PADDING_BLOCK_BYTES is a multiple of it.
_PACKAGE = __name__.rpartition(".")[0]


@functools.cache
def sample_bytes() -> bytes:
    """The packaged sample clip (a 1 s, 320x180 H.264 MP4 of a few KB)."""
    return resources.files(_PACKAGE).joinpath("sample.mp4").read_bytes()


@functools.cache
def ftyp_box() -> bytes:
    """The sample's leading ``ftyp`` box: a real MP4 signature, for the unreadable fault."""
    sample = sample_bytes()
    (size,) = struct.unpack_from(">I", sample)
    assert sample[4:8] == b"ftyp", "the sample clip must start with its ftyp box"
    return sample[:size]


def min_video_size(shape: VideoShape | None = None) -> int:
    """The smallest ``video_size_bytes`` that leaves room for a task-specific ``free`` box.

    Without a shape: the floor of every video, the packaged sample clip plus 16 bytes (what the
    config accepts). With one: that shape's clip plus 16 bytes, which encodes the clip if it is
    not cached yet.
    """
    clip = sample_bytes() if shape is None else clip_bytes(shape)
    return len(clip) + MIN_TAG_BOX_BYTES


def box_header(box_type: bytes, total_size: int) -> bytes:
    """ISO-BMFF box header for a box of ``total_size`` bytes, header included.

    A box of 2**32 bytes or more cannot state its size in the 32-bit field, so it uses the
    ``size == 1`` form followed by a 64-bit "largesize" (a 16-byte header instead of 8).
    """
    if len(box_type) != 4:
        raise ValueError(f"box type must be 4 bytes, got {box_type!r}")
    if total_size < 2**32:
        if total_size < 8:
            raise ValueError(f"a box is at least 8 bytes, got {total_size}")
        return struct.pack(">I4s", total_size, box_type)
    return struct.pack(">I4sQ", 1, box_type, total_size)


@functools.lru_cache(maxsize=64)
def _padding_block(task_id: str) -> bytes:
    """The task's 64 KiB padding block: BLAKE2b in counter mode, keyed by the task id."""
    key = hashlib.blake2b(task_id.encode()).digest()
    return b"".join(
        hashlib.blake2b(counter.to_bytes(4, "big"), key=key, person=b"omniflash-emu").digest()
        for counter in range(PADDING_BLOCK_BYTES // _DIGEST_BYTES)
    )


def _padding(task_id: str, offset: int, length: int) -> bytes:
    """``length`` padding bytes starting ``offset`` bytes into the repeated block."""
    block = _padding_block(task_id)
    start = offset % PADDING_BLOCK_BYTES
    if start + length <= PADDING_BLOCK_BYTES:
        return block[start : start + length]
    out = bytearray(block[start:])
    while len(out) < length:
        out += block[: min(PADDING_BLOCK_BYTES, length - len(out))]
    return bytes(out)


@dataclass(frozen=True)
class VideoLayout:
    """One task's video: literal leading parts (a clip, a box header), then task padding up to
    ``total`` bytes. The parts are shared with the clip cache, never copied per download."""

    task_id: str
    parts: tuple[bytes, ...]
    total: int

    @property
    def head_size(self) -> int:
        """Bytes of the literal parts; everything after them is padding."""
        return sum(len(part) for part in self.parts)

    def _head(self, start: int, stop: int) -> bytes:
        """The literal bytes ``[start, stop)`` (clipped to the head), across parts."""
        pieces: list[bytes] = []
        offset = 0
        for part in self.parts:
            low, high = max(start, offset), min(stop, offset + len(part))
            if low < high:
                pieces.append(part[low - offset : high - offset])
            offset += len(part)
        return b"".join(pieces)

    def chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_BYTES
    ) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` in chunks of at most ``chunk_size``.

        Memory use is bounded by ``chunk_size`` (plus the shared clip) whatever the video size,
        which is what lets the emulator serve GiB videos.
        """
        stop_at = self.total if end is None else end
        if not 0 <= start <= stop_at <= self.total:
            raise ValueError(f"range [{start}, {stop_at}) is outside a {self.total}-byte video")
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        head_size = self.head_size
        position = start
        while position < stop_at:
            stop = min(stop_at, position + chunk_size)
            head = self._head(position, stop) if position < head_size else b""
            padding_from = max(position, head_size)
            tail = (
                _padding(self.task_id, padding_from - head_size, stop - padding_from)
                if padding_from < stop
                else b""
            )
            yield head + tail
            position = stop


def video_layout(
    task_id: str,
    size_bytes: int | None = None,
    *,
    shape: VideoShape = DEFAULT_SHAPE,
    fault: VideoFault | None = None,
) -> VideoLayout:
    """How the task's video is made, given what was fixed at submit time.

    ``size_bytes`` is ``EmulatorConfig.video_size_bytes`` (None: a small tag box only). Encodes
    the shape's clip when it is not cached yet, so call it off the event loop. Raises
    ``ValueError`` when ``size_bytes`` cannot hold the clip and a 16-byte ``free`` box.
    """
    if fault == "unreadable_mp4":
        head = ftyp_box()
        total = len(head) + UNREADABLE_BODY_BYTES if size_bytes is None else size_bytes
        if total < len(head) + MIN_TAG_BOX_BYTES:
            raise ValueError(f"video size must be at least {len(head) + MIN_TAG_BOX_BYTES} bytes")
        return VideoLayout(task_id, (head,), total)
    clip = sample_bytes() if fault == "wrong_shape" else clip_bytes(shape)
    if size_bytes is None:
        total = len(clip) + DEFAULT_TAG_BOX_BYTES
    elif size_bytes < len(clip) + MIN_TAG_BOX_BYTES:
        what = "the sample clip" if fault == "wrong_shape" else f"a {shape.clip_format.label} clip"
        raise ValueError(
            f"video size must be at least {len(clip) + MIN_TAG_BOX_BYTES} bytes to hold "
            f"{what} and a 16-byte free box, got {size_bytes}"
        )
    else:
        total = size_bytes
    return VideoLayout(task_id, (clip, box_header(b"free", total - len(clip))), total)


def video_size(
    task_id: str,
    size_bytes: int | None = None,
    *,
    shape: VideoShape = DEFAULT_SHAPE,
    fault: VideoFault | None = None,
) -> int:
    """Exact byte size of a task's video (``size_bytes`` is ``EmulatorConfig.video_size_bytes``;
    ``shape`` and ``fault`` are what the submit fixed; the defaults are a plain default submit)."""
    return video_layout(task_id, size_bytes, shape=shape, fault=fault).total


def iter_video_chunks(
    task_id: str,
    size_bytes: int | None,
    start: int = 0,
    end: int | None = None,
    chunk_size: int = CHUNK_BYTES,
    *,
    shape: VideoShape = DEFAULT_SHAPE,
    fault: VideoFault | None = None,
) -> Iterator[bytes]:
    """Yield the bytes ``[start, end)`` of the task's video in chunks of at most ``chunk_size``."""
    layout = video_layout(task_id, size_bytes, shape=shape, fault=fault)
    return layout.chunks(start, end, chunk_size)


@functools.lru_cache(maxsize=256)
def video_sha256(
    task_id: str,
    size_bytes: int | None = None,
    *,
    shape: VideoShape = DEFAULT_SHAPE,
    fault: VideoFault | None = None,
) -> str:
    """Hex SHA-256 of the task's whole video, computed by streaming and memoised.

    With the running emulator at hand, ``emulator.state.video_sha256(task_id)`` fills in the
    size, shape and fault the task was submitted with.
    """
    digest = hashlib.sha256()
    for chunk in iter_video_chunks(task_id, size_bytes, shape=shape, fault=fault):
        digest.update(chunk)
    return digest.hexdigest()
