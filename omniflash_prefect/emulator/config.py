"""Knobs of the emulator: timing, prices and the faults it injects.

One mutable, validated model, read by the running app on every request, so a test can switch a
fault on or off while the server runs (``emu.config.rate_limit_rate = 1.0``) and a bad value is
refused at assignment rather than discovered mid-request. The clock is not here: it is not data
that serialises, so it is given to ``EmulatorState`` / ``EmulatorServer`` instead.

The ``omniflash emulator`` command builds one option per field, named after the field and
helped by its description; :class:`CommandLineFlag` names the few whose flag is shorter than
the field (units go without saying on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .videos import min_video_size


@dataclass(frozen=True)
class CommandLineFlag:
    """The ``omniflash emulator`` flag of a field, when it is not the field's name (e.g.
    ``--latency`` for ``latency_seconds``); put in the field's ``Annotated`` metadata."""

    flag: str


#: A fraction of calls or tasks, from 0 to 1.
Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class EmulatorConfig(BaseModel):
    """Behaviour of one emulated provider; every field may be changed while the server runs."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid", allow_inf_nan=False)

    api_key: str = Field(
        default="emulator-key",
        min_length=1,
        description="The only bearer token accepted; any other or missing token answers 401.",
    )
    job_seconds: float = Field(
        default=3.0,
        ge=0.0,
        description="Time from submit to a terminal status: pending for the first 10%, then "
        "processing with rising progress. Fixed per task at submit time.",
    )
    task_failure_rate: Rate = Field(
        default=0.0,
        description="Fraction of tasks that end 'failed' (cost refunded), decided at submit time "
        "from the seeded RNG.",
    )
    rate_limit_rate: Rate = Field(
        default=0.0,
        description="Fraction of API calls answered 429 rate_limit_error.",
    )
    retry_after_seconds: Annotated[float | None, CommandLineFlag("--retry-after")] = Field(
        default=None,
        ge=0.0,
        description="When set, 429 answers carry 'Retry-After' with this many seconds, rounded up.",
    )
    server_error_rate: Rate = Field(
        default=0.0,
        description="Fraction of API calls answered 502 with an HTML body, as a gateway would; a "
        "submit answered so creates no task.",
    )
    latency_seconds: Annotated[float, CommandLineFlag("--latency")] = Field(
        default=0.0,
        ge=0.0,
        description="Delay added before every API answer (not before 401s or video downloads).",
    )
    submit_answer_delay_seconds: Annotated[float, CommandLineFlag("--submit-delay")] = Field(
        default=0.0,
        ge=0.0,
        description="Delay between accepting a submit (the task exists and is paid for) and "
        "sending its answer: the window in which a client that dies never learns its task id.",
    )
    drop_first_downloads: int = Field(
        default=0,
        ge=0,
        description="The first N download attempts of each video send the headers and about half "
        "of the body, then abort the connection.",
    )
    download_drop_rate: Rate = Field(
        default=0.0,
        description="Fraction of further download attempts cut the same way.",
    )
    download_stall_seconds: Annotated[float, CommandLineFlag("--download-stall")] = Field(
        default=0.0,
        ge=0.0,
        description="Every download sends about half of the body, then stalls this long (or until "
        "the client goes away) before sending the rest.",
    )
    ignore_range: bool = Field(
        default=False,
        description="Answer every download with the whole file (200), ignoring any Range header, "
        "as some CDNs do: a resumed download must start over from byte 0.",
    )
    serve_non_mp4: bool = Field(
        default=False,
        description="Serve videos whose first box is renamed ('ftyp' -> 'junk'): the announced "
        "size and a video/mp4 type, but not an MP4 (a provider with a broken store).",
    )
    serve_wrong_shape: bool = Field(
        default=False,
        description="Deliver the packaged 1 s 320x180 (16:9) sample clip, padded as usual, "
        "whatever was asked: its duration and resolution always differ from the request, its "
        "orientation and aspect ratio too unless 16:9 was asked. Fixed per task at submit time.",
    )
    serve_unreadable_mp4: bool = Field(
        default=False,
        description="Deliver a file that starts with a valid 'ftyp' box followed by task-specific "
        "garbage (64 KiB, or video_size_bytes in all): it passes a signature check, yet no "
        "demuxer can read it. Wins over serve_wrong_shape. Fixed per task at submit time.",
    )
    url_ttl_seconds: Annotated[float, CommandLineFlag("--url-ttl")] = Field(
        default=86400.0,
        ge=0.0,
        description="Lifetime of a video URL, counted from the status read that handed it out; an "
        "expired URL answers 403 with an S3-like XML body.",
    )
    balance: float = Field(
        default=100.0,
        ge=0.0,
        description="Account credit; each submit reserves its price and a submit costing more "
        "than what remains answers 402. Failed tasks are refunded.",
    )
    unlimited_balance: bool = Field(
        default=False,
        description="Never answer 402 and report remain_balance as -1, like an unlimited key.",
    )
    video_size_bytes: Annotated[int | None, CommandLineFlag("--video-size")] = Field(
        default=None,
        description="None: the clip of the asked duration, resolution and aspect ratio plus a "
        "small task-specific box. N: a valid MP4 of exactly N bytes (that clip padded with one "
        "top-level 'free' box); a submit whose clip is larger than N - 16 bytes is refused (400, "
        "nothing charged). Fixed per task at submit time.",
    )
    seed: int = Field(
        default=0,
        description="Seed of the RNG that decides injected faults and task ids; read at start.",
    )

    @field_validator("video_size_bytes")
    @classmethod
    def _video_fits_sample(cls, value: int | None) -> int | None:
        """No video is smaller than the sample clip (what ``serve_wrong_shape`` delivers) and a
        task-specific ``free`` box; whether a size holds the clip of a requested shape is only
        known once that clip is encoded, so it is checked per submit."""
        if value is not None and value < min_video_size():
            raise ValueError(f"must be at least {min_video_size()} bytes (sample clip + 16)")
        return value
