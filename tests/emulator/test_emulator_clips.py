"""Encoding clips: real H.264 of the asked shape, the same bytes in every process, once per shape.

Encoding is the slow part of the emulator, so each test here encodes a small clip or one most of
the suite needs anyway (4 s at 720p, what ``VideoRequest(duration=4)`` asks for).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import pytest

import omniflash_prefect
from omniflash_prefect.emulator.clips import (
    FRAME_RATE,
    ClipFormat,
    VideoShape,
    clip_bytes,
    clip_file_name,
    encodes_in_this_process,
    load_or_encode_clip,
)

from .helpers import top_level_boxes

PACKAGE = Path(omniflash_prefect.__file__).parent
#: A clip that is cheap to encode, for the cache's mechanics.
TINY = ClipFormat(160, 90, 1)


def test_a_clip_is_a_faststart_h264_mp4_of_its_shape_with_a_keyframe_every_second() -> None:
    """Read from headers and packets only (nothing decoded): 1280x720, 4 s, 8 fps, H.264, the
    index before the media, and a keyframe at each whole second."""
    data = clip_bytes(VideoShape(duration=4))
    kinds = [kind for kind, _ in top_level_boxes(data)]
    assert kinds[0] == "ftyp"
    assert kinds.index("moov") < kinds.index("mdat")
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1280, 720)
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == FRAME_RATE
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(4.0, abs=0.05)
        keyframes = [packet.is_keyframe for packet in container.demux(stream) if packet.size]
    assert len(keyframes) == 4 * FRAME_RATE
    assert [index for index, key in enumerate(keyframes) if key] == [0, 8, 16, 24]


def test_the_same_shape_gives_the_same_bytes_in_another_process(tmp_path: Path) -> None:
    """Encoded afresh here and in a child process (each into its own empty cache), the clip of
    a shape is byte for byte the same: what lets a test predict a video's SHA-256."""
    clip = VideoShape(duration=4).clip_format
    # The package root imports Prefect (seconds); the emulator needs none of it, so the child
    # registers a bare package object and imports the emulator alone.
    script = textwrap.dedent(
        f"""
        import hashlib, pathlib, sys, types
        root = types.ModuleType("omniflash_prefect")
        root.__path__ = [{str(PACKAGE)!r}]
        sys.modules["omniflash_prefect"] = root
        from omniflash_prefect.emulator.clips import ClipFormat, load_or_encode_clip
        clip = ClipFormat(*{tuple(clip)!r})
        data = load_or_encode_clip(clip, pathlib.Path({str(tmp_path / "child")!r}))
        print(hashlib.sha256(data).hexdigest())
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr
    here = load_or_encode_clip(clip, tmp_path / "here")
    assert child.stdout.strip() == hashlib.sha256(here).hexdigest()
    assert clip_bytes(VideoShape(duration=4)) == here  # and the shared cache holds the same


def test_a_cached_clip_is_read_back_not_encoded_again(tmp_path: Path) -> None:
    """The first call encodes into the cache directory; the next one reads the file, which it
    leaves untouched, and no temporary file is left behind."""
    before = encodes_in_this_process()
    first = load_or_encode_clip(TINY, tmp_path)
    assert encodes_in_this_process() == before + 1
    cached = tmp_path / clip_file_name(TINY)
    assert cached.read_bytes() == first
    written = cached.stat().st_mtime_ns

    again = load_or_encode_clip(TINY, tmp_path)
    assert again == first
    assert encodes_in_this_process() == before + 1
    assert cached.stat().st_mtime_ns == written
    assert [path.name for path in tmp_path.iterdir()] == [cached.name]


def test_a_clip_in_memory_is_handed_out_again() -> None:
    """Within a process, asking for a shape again returns the very same bytes object."""
    shape = VideoShape(duration=4)
    first = clip_bytes(shape)
    before = encodes_in_this_process()
    assert clip_bytes(shape) is first
    assert encodes_in_this_process() == before


def test_an_unusable_cache_directory_still_gives_the_clip(tmp_path: Path) -> None:
    """A cache path that is a file (or read-only) costs an encode per call, never a failure."""
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("not a directory")
    data = load_or_encode_clip(TINY, not_a_directory)
    assert data == load_or_encode_clip(TINY, tmp_path / "fresh")
    assert not_a_directory.read_text() == "not a directory"
