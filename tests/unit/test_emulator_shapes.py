"""The emulator's frame sizes, their cap, and the frames it draws: pure, nothing encoded."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniflash_prefect.core.media import frame_size
from omniflash_prefect.emulator.clips import (
    CACHE_DIR_ENV,
    MAX_LONG_SIDE,
    SHORT_SIDES,
    ClipFormat,
    VideoShape,
    clip_cache_dir,
    clip_file_name,
    draw_frame,
    requested_frame_size,
)

RESOLUTIONS = sorted(SHORT_SIDES)


@settings(max_examples=300, deadline=None, database=None)
@given(
    resolution=st.sampled_from(RESOLUTIONS),
    ratio_width=st.integers(1, 400),
    ratio_height=st.integers(1, 400),
)
def test_the_emulator_asks_for_the_frames_the_client_checks_for(
    resolution: str, ratio_width: int, ratio_height: int
) -> None:
    """The emulator works its frame size out on its own (it plays the provider); it must be the
    size the client's media check expects, for any resolution and ratio."""
    ratio = f"{ratio_width}:{ratio_height}"
    assert requested_frame_size(resolution, ratio) == frame_size(resolution, ratio)


@pytest.mark.parametrize(
    ("shape", "delivered"),
    [
        (VideoShape(), (1280, 720)),
        (VideoShape(6, "1080p", "9:16"), (1080, 1920)),
        (VideoShape(10, "4k", "16:9"), (3840, 2160)),
        (VideoShape(4, "720p", "1:1"), (720, 720)),
        (VideoShape(4, "720p", "21:9"), (1680, 720)),
    ],
)
def test_sensible_shapes_are_delivered_as_asked(
    shape: VideoShape, delivered: tuple[int, int]
) -> None:
    assert shape.frame_size == shape.requested_frame_size == delivered
    assert not shape.capped
    assert shape.clip_format == ClipFormat(*delivered, shape.duration)


@pytest.mark.parametrize(
    ("shape", "asked", "delivered"),
    [
        (VideoShape(10, "4k", "100:1"), (216_000, 2160), (MAX_LONG_SIDE, 2160)),
        (VideoShape(4, "720p", "1:100"), (720, 72_000), (720, MAX_LONG_SIDE)),
    ],
)
def test_absurd_aspect_ratios_are_cut_to_the_longest_side(
    shape: VideoShape, asked: tuple[int, int], delivered: tuple[int, int]
) -> None:
    """The short side stays as asked and the long side stops at 7680: never a gigantic frame,
    and a delivered aspect ratio that no longer matches the request."""
    assert shape.requested_frame_size == asked
    assert shape.frame_size == delivered
    assert shape.capped


def test_a_shape_normalises_its_resolution_and_refuses_nonsense() -> None:
    assert VideoShape(4, "4K", "16:9").resolution == "4k"
    assert VideoShape(4, "4K", "16:9") == VideoShape(4, "4k", "16:9")
    with pytest.raises(ValueError, match="resolution"):
        VideoShape(4, "480p", "16:9")
    with pytest.raises(ValueError, match="aspect ratio"):
        VideoShape(4, "720p", "16x9")
    with pytest.raises(ValueError, match="duration"):
        VideoShape(0, "720p", "16:9")


def test_frames_show_the_time_the_frame_and_a_moving_bar() -> None:
    """Consecutive frames differ (bar, time, frame number), each holds its background colour and
    white text, and drawing is deterministic."""
    clip = ClipFormat(1280, 720, 6)
    first, later = draw_frame(clip, 0), draw_frame(clip, 28)
    assert first.size == later.size == (1280, 720)
    assert first.tobytes() != later.tobytes()
    assert draw_frame(clip, 28).tobytes() == later.tobytes()
    colours = {colour for _, colour in later.getcolors(maxcolors=1280 * 720) or []}
    assert (28, 52, 94) in colours  # 720p's background
    assert (255, 255, 255) in colours  # the text
    assert (240, 190, 40) in colours  # the bar
    assert later.getpixel((0, 0)) == (28, 52, 94)  # the bar has moved on from the left edge
    assert first.getpixel((0, 0)) == (240, 190, 40)  # where it starts


def test_the_clip_cache_lives_under_the_user_cache_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert clip_cache_dir() == tmp_path / "xdg" / "omniflash-prefect" / "emulator-clips"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert clip_cache_dir() == Path.home() / ".cache" / "omniflash-prefect" / "emulator-clips"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "clips"))
    assert clip_cache_dir() == tmp_path / "clips"


def test_a_cached_clip_is_named_by_its_format_and_encoder() -> None:
    """Another frame size, duration, encoder version or PyAV build is another file."""
    name = clip_file_name(ClipFormat(1080, 1920, 6))
    assert name.startswith("clip-v")
    assert name.endswith("-1080x1920-6s.mp4")
    assert "-av" in name
    assert name != clip_file_name(ClipFormat(1920, 1080, 6))
    assert name != clip_file_name(ClipFormat(1080, 1920, 8))
