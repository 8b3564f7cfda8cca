"""Is the delivered video the one that was paid for? The comparison, apart from reading files.

A request asks for a duration (4-10 s), a resolution named by the frame's short side (720p,
1080p, 4k) and an aspect ratio (``W:H``). What a file holds is read elsewhere
(:mod:`omniflash_prefect.media.inspection`) into :class:`MediaFacts`; :func:`judge` compares the two
with the tolerances below and gives a :class:`MediaCheck`, which the sidecar, the archive record,
the summary and the batch table all show.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from omniflash_prefect.core.requests import VideoRequest

#: How far the delivered duration may be from the asked one. Encoders end a clip on a frame or
#: an audio packet boundary, so a 6 s request may well be 6.04 s long; half a second is not that.
DURATION_TOLERANCE_SECONDS: Final = 0.5
#: How far the delivered width/height ratio may be from the asked one, relative: 1%, which
#: forgives rounding to even pixel counts and nothing a viewer would notice.
ASPECT_RATIO_TOLERANCE: Final = 0.01
#: The short side of the frame each resolution names.
SHORT_SIDES: Final = {"720p": 720, "1080p": 1080, "4k": 2160}

Orientation = Literal["landscape", "portrait", "square"]
Verdict = Literal["ok", "mismatch", "unreadable", "unchecked"]
"""``ok``: as asked. ``mismatch``: read, and something differs. ``unreadable``: the file could not
be read as a video. ``unchecked``: read, but the request is not known, so nothing to compare."""
CheckedField = Literal["duration", "resolution", "orientation", "aspect_ratio"]


class MediaFacts(BaseModel):
    """What a video file holds, read from its container and streams (never decoded whole)."""

    model_config = ConfigDict(frozen=True)

    duration_seconds: float | None = Field(description="Container duration, when stated.")
    width: int = Field(description="Frame width in pixels, as displayed.")
    height: int = Field(description="Frame height in pixels, as displayed.")
    codec: str = Field(description="The video stream's codec, e.g. h264.")
    frame_rate: float | None = Field(default=None, description="Average frames per second.")
    has_audio: bool = Field(default=False, description="Whether there is an audio stream.")

    @property
    def orientation(self) -> Orientation:
        return orientation_of(self.width, self.height)

    @property
    def resolution_label(self) -> str:
        """``1080x1920``: how a frame size is shown."""
        return f"{self.width}x{self.height}"


class Mismatch(BaseModel):
    """One way the delivered video differs from the request: what was asked, what came."""

    model_config = ConfigDict(frozen=True)

    field: CheckedField
    asked: str
    delivered: str

    def __str__(self) -> str:
        return f"{self.field}: asked {self.asked}, delivered {self.delivered}"


class MediaCheck(BaseModel):
    """The verdict on one video, with the facts it rests on."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    facts: MediaFacts | None = None
    mismatches: tuple[Mismatch, ...] = ()
    reason: str | None = Field(default=None, description="Why an unreadable file is unreadable.")

    @property
    def flagged(self) -> bool:
        """True when someone should look: a mismatch or a file that could not be read."""
        return self.verdict in ("mismatch", "unreadable")

    def describe(self) -> str:
        """One line for logs, summaries and tables: ``ok``, or what is wrong."""
        if self.verdict == "mismatch":
            return "mismatch: " + "; ".join(str(mismatch) for mismatch in self.mismatches)
        if self.verdict == "unreadable":
            return f"unreadable: {self.reason}"
        return self.verdict


def orientation_of(width: int, height: int) -> Orientation:
    if width == height:
        return "square"
    return "landscape" if width > height else "portrait"


def parse_aspect_ratio(aspect_ratio: str) -> tuple[int, int]:
    """``"9:16"`` -> ``(9, 16)``; requests are validated, so this only splits."""
    width, _, height = aspect_ratio.partition(":")
    return int(width), int(height)


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """The width and height a request asks for: the short side from the resolution, the long
    side from the aspect ratio, rounded to an even number of pixels (what H.264 in 4:2:0 needs).

    ``frame_size("1080p", "9:16") == (1080, 1920)``.
    """
    short = SHORT_SIDES[resolution.lower()]
    ratio_width, ratio_height = parse_aspect_ratio(aspect_ratio)
    long_side = 2 * round(
        short * max(ratio_width, ratio_height) / min(ratio_width, ratio_height) / 2
    )
    return (long_side, short) if ratio_width >= ratio_height else (short, long_side)


def judge(facts: MediaFacts, request: VideoRequest | None) -> MediaCheck:
    """Compare what a file holds with what was asked for.

    Duration within :data:`DURATION_TOLERANCE_SECONDS`; resolution by the short side, exactly;
    orientation exactly; aspect ratio within :data:`ASPECT_RATIO_TOLERANCE`.
    """
    if request is None:
        return MediaCheck(verdict="unchecked", facts=facts)
    mismatches: list[Mismatch] = []
    asked_seconds = float(request.duration)
    if (
        facts.duration_seconds is None
        or abs(facts.duration_seconds - asked_seconds) > DURATION_TOLERANCE_SECONDS
    ):
        delivered = "unknown" if facts.duration_seconds is None else f"{facts.duration_seconds:g} s"
        mismatches.append(
            Mismatch(field="duration", asked=f"{request.duration} s", delivered=delivered)
        )
    asked_width, asked_height = frame_size(request.resolution, request.aspect_ratio)
    short_side = min(facts.width, facts.height)
    if short_side != min(asked_width, asked_height):
        mismatches.append(
            Mismatch(
                field="resolution",
                asked=f"{request.resolution} ({asked_width}x{asked_height})",
                delivered=f"{short_side}p ({facts.resolution_label})",
            )
        )
    asked_orientation = orientation_of(asked_width, asked_height)
    if facts.orientation != asked_orientation:
        mismatches.append(
            Mismatch(field="orientation", asked=asked_orientation, delivered=facts.orientation)
        )
    ratio_width, ratio_height = parse_aspect_ratio(request.aspect_ratio)
    asked_ratio = ratio_width / ratio_height
    delivered_ratio = facts.width / facts.height if facts.height else 0.0
    if abs(delivered_ratio / asked_ratio - 1) > ASPECT_RATIO_TOLERANCE:
        mismatches.append(
            Mismatch(
                field="aspect_ratio",
                asked=request.aspect_ratio,
                delivered=f"{facts.resolution_label} ({delivered_ratio:.3f}:1)",
            )
        )
    if mismatches:
        return MediaCheck(verdict="mismatch", facts=facts, mismatches=tuple(mismatches))
    return MediaCheck(verdict="ok", facts=facts)


def unreadable(reason: str) -> MediaCheck:
    """The verdict on a file that could not be read as a video (it is archived all the same)."""
    return MediaCheck(verdict="unreadable", reason=reason)
