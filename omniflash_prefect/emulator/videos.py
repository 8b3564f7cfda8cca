"""The bytes of every emulated video, generated on demand and never held whole in memory.

Downloads must be realistic enough to exercise an archiver: a real, playable H.264 MP4 with a
stable SHA-256 per task, at sizes up to several GiB for benchmarks, served from any byte offset
for resumed (Range) downloads. So a video is laid out as

    [packaged sample clip][one top-level ``free`` box: header + per-task padding]

which is still a structurally valid MP4 (players skip ``free`` boxes). The padding is a 64 KiB
block derived from the task id with BLAKE2b and repeated, so the byte at any offset is computed
directly and a range can be produced without generating what comes before it.

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
from importlib import resources

#: Size of the repeated per-task padding block.
PADDING_BLOCK_BYTES = 64 * 1024
#: Default chunk size of :func:`iter_video_chunks` (also the download chunk size).
CHUNK_BYTES = 256 * 1024
#: Total size of the ``free`` box appended when no video size is configured: small, yet enough
#: task-specific bytes to give every task its own SHA-256.
DEFAULT_TAG_BOX_BYTES = 64
#: The smallest ``free`` box a sized video may end with: an 8-byte header and 8 task bytes.
MIN_TAG_BOX_BYTES = 16

_DIGEST_BYTES = 64  # BLAKE2b's largest digest; PADDING_BLOCK_BYTES is a multiple of it.
_PACKAGE = __name__.rpartition(".")[0]


@functools.cache
def sample_bytes() -> bytes:
    """The packaged sample clip (a 1 s, 320x180 H.264 MP4 of a few KB)."""
    return resources.files(_PACKAGE).joinpath("sample.mp4").read_bytes()


def min_video_size() -> int:
    """The smallest ``video_size_bytes`` that still leaves room for a task-specific ``free`` box."""
    return len(sample_bytes()) + MIN_TAG_BOX_BYTES


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


def video_size(task_id: str, size_bytes: int | None) -> int:
    """Exact byte size of a task's video (``size_bytes`` is ``EmulatorConfig.video_size_bytes``).

    ``task_id`` is accepted for symmetry with :func:`video_sha256`; today only the configured size
    decides the length.
    """
    del task_id
    if size_bytes is None:
        return len(sample_bytes()) + DEFAULT_TAG_BOX_BYTES
    if size_bytes < min_video_size():
        raise ValueError(f"video size must be at least {min_video_size()} bytes, got {size_bytes}")
    return size_bytes


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


def _prefix(task_id: str, size_bytes: int | None) -> bytes:
    """The literal leading bytes of the video: sample clip plus the ``free`` box header."""
    sample = sample_bytes()
    return sample + box_header(b"free", video_size(task_id, size_bytes) - len(sample))


def iter_video_chunks(
    task_id: str,
    size_bytes: int | None,
    start: int = 0,
    end: int | None = None,
    chunk_size: int = CHUNK_BYTES,
) -> Iterator[bytes]:
    """Yield the bytes ``[start, end)`` of the task's video in chunks of at most ``chunk_size``.

    Memory use is bounded by ``chunk_size`` whatever the video size, which is what lets the
    emulator serve 1 GiB videos.
    """
    total = video_size(task_id, size_bytes)
    stop_at = total if end is None else end
    if not 0 <= start <= stop_at <= total:
        raise ValueError(f"range [{start}, {stop_at}) is outside a {total}-byte video")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    prefix = _prefix(task_id, size_bytes)
    position = start
    while position < stop_at:
        stop = min(stop_at, position + chunk_size)
        head = prefix[position:stop]
        padding_from = max(position, len(prefix))
        tail = (
            _padding(task_id, padding_from - len(prefix), stop - padding_from)
            if padding_from < stop
            else b""
        )
        yield head + tail
        position = stop


@functools.lru_cache(maxsize=256)
def video_sha256(task_id: str, size_bytes: int | None) -> str:
    """Hex SHA-256 of the task's whole video, computed by streaming and memoised per size."""
    digest = hashlib.sha256()
    for chunk in iter_video_chunks(task_id, size_bytes):
        digest.update(chunk)
    return digest.hexdigest()
