"""The verdict on a delivered video, pure: what a request asks of the frame and the length, and
each way a file can differ from it, at the edges of the documented tolerances."""

from __future__ import annotations

import pytest

from omniflash_prefect.core.media import (
    ASPECT_RATIO_TOLERANCE,
    DURATION_TOLERANCE_SECONDS,
    MediaFacts,
    frame_size,
    judge,
    unreadable,
)
from omniflash_prefect.core.requests import VideoRequest


def facts(width: int, height: int, seconds: float | None = 6.0) -> MediaFacts:
    return MediaFacts(duration_seconds=seconds, width=width, height=height, codec="h264")


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "size"),
    [
        ("720p", "16:9", (1280, 720)),
        ("720p", "9:16", (720, 1280)),
        ("1080p", "9:16", (1080, 1920)),
        ("1080p", "1:1", (1080, 1080)),
        ("4k", "16:9", (3840, 2160)),
        ("4K", "4:3", (2880, 2160)),
        ("1080p", "21:9", (2520, 1080)),
        ("720p", "5:4", (900, 720)),
    ],
)
def test_frame_size_is_the_short_side_by_resolution_and_the_long_by_ratio(
    resolution: str, aspect_ratio: str, size: tuple[int, int]
) -> None:
    assert frame_size(resolution, aspect_ratio) == size


def test_the_long_side_is_rounded_to_an_even_number_of_pixels() -> None:
    width, height = frame_size("720p", "7:5")  # 1008 exactly; 720 * 7/5
    assert (width, height) == (1008, 720)
    width, _ = frame_size("1080p", "13:9")  # 1560 exactly
    assert width % 2 == 0
    width, _ = frame_size("720p", "11:7")  # 1131.4 -> 1132
    assert width == 1132


def test_a_video_as_asked_is_ok() -> None:
    request = VideoRequest(prompt="p", duration=6, resolution="1080p", aspect_ratio="9:16")
    check = judge(facts(1080, 1920, 6.04), request)
    assert check.verdict == "ok"
    assert not check.flagged
    assert check.mismatches == ()
    assert check.describe() == "ok"


def test_duration_within_the_tolerance_and_just_outside() -> None:
    request = VideoRequest(prompt="p", duration=6)
    edge = 6 + DURATION_TOLERANCE_SECONDS
    assert judge(facts(1280, 720, edge), request).verdict == "ok"
    assert judge(facts(1280, 720, 6 - DURATION_TOLERANCE_SECONDS), request).verdict == "ok"
    late = judge(facts(1280, 720, edge + 0.01), request)
    assert late.verdict == "mismatch"
    assert [(m.field, m.asked, m.delivered) for m in late.mismatches] == [
        ("duration", "6 s", "6.51 s")
    ]


def test_an_unknown_duration_is_a_mismatch() -> None:
    check = judge(facts(1280, 720, None), VideoRequest(prompt="p"))
    assert [(m.field, m.delivered) for m in check.mismatches] == [("duration", "unknown")]


def test_resolution_is_judged_by_the_short_side() -> None:
    request = VideoRequest(prompt="p", resolution="1080p")
    check = judge(facts(1280, 720), request)
    assert check.verdict == "mismatch"
    (mismatch,) = check.mismatches
    assert mismatch.field == "resolution"
    assert mismatch.asked == "1080p (1920x1080)"
    assert mismatch.delivered == "720p (1280x720)"


def test_a_landscape_video_for_a_portrait_request_differs_in_orientation() -> None:
    """The user's case: 6 s, 1080p, 9:16 asked; a 1080p landscape clip delivered."""
    request = VideoRequest(prompt="p", duration=6, resolution="1080p", aspect_ratio="9:16")
    check = judge(facts(1920, 1080), request)
    fields = [m.field for m in check.mismatches]
    assert fields == ["orientation", "aspect_ratio"]
    assert str(check.mismatches[0]) == "orientation: asked portrait, delivered landscape"
    assert check.flagged
    assert check.describe().startswith("mismatch: orientation: asked portrait")


def test_aspect_ratio_within_one_percent_and_just_outside() -> None:
    request = VideoRequest(prompt="p", resolution="720p", aspect_ratio="16:9")
    # 1292 / 720 is 0.94% wider than 16:9; 1294 / 720 is 1.09% wider.
    assert judge(facts(1292, 720), request).verdict == "ok"
    wide = judge(facts(1294, 720), request)
    assert [m.field for m in wide.mismatches] == ["aspect_ratio"]
    assert abs(1294 / 720 / (16 / 9) - 1) > ASPECT_RATIO_TOLERANCE


def test_square_is_an_orientation_of_its_own() -> None:
    check = judge(facts(720, 720), VideoRequest(prompt="p", aspect_ratio="16:9"))
    assert (check.mismatches[0].field, check.mismatches[0].delivered) == ("orientation", "square")


def test_every_difference_is_listed_at_once() -> None:
    """The user's case on the old emulator: a 1 s 320x180 clip for 6 s 1080p 9:16."""
    request = VideoRequest(prompt="p", duration=6, resolution="1080p", aspect_ratio="9:16")
    check = judge(facts(320, 180, 1.0), request)
    assert [m.field for m in check.mismatches] == [
        "duration",
        "resolution",
        "orientation",
        "aspect_ratio",
    ]


def test_without_a_request_the_facts_are_kept_and_nothing_is_compared() -> None:
    check = judge(facts(320, 180, 1.0), None)
    assert check.verdict == "unchecked"
    assert not check.flagged
    assert check.facts is not None
    assert check.facts.resolution_label == "320x180"


def test_an_unreadable_file_is_flagged_with_its_reason() -> None:
    check = unreadable("InvalidDataError: Invalid data found when processing input")
    assert check.flagged
    assert check.facts is None
    assert (
        check.describe() == "unreadable: InvalidDataError: Invalid data found when processing input"
    )


def test_a_check_survives_a_json_round_trip() -> None:
    """It is stored in records and sidecars as JSON and read back by later runs."""
    request = VideoRequest(prompt="p", duration=6, resolution="1080p", aspect_ratio="9:16")
    check = judge(facts(1920, 1080, 4.0), request)
    again = type(check).model_validate_json(check.model_dump_json())
    assert again == check
    assert again.flagged
