"""The API's answers, as typed models (what may be sent is :mod:`omniflash_prefect.core.requests`).

The answer models are liberal: the provider's answers vary between its pages and models (a URL as a
string or a list, a task id in three places, unknown statuses and extra fields), so they read every
documented variant and ignore what they do not know.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from omniflash_prefect.errors import InvalidTaskIdError

TaskPhase = Literal["running", "completed", "failed", "cancelled"]
"""What a status means for a poll loop; unknown statuses are ``running``."""

KNOWN_STATUSES: Final = frozenset(
    {"submitted", "pending", "processing", "completed", "failed", "cancelled"}
)

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it is safe in a URL path and a storage key, else raise.

    Task ids come from a remote server and end up in paths (``/v1/tasks/<id>``, ``<id>.mp4``), so
    anything beyond ``[A-Za-z0-9_-]{1,128}`` is refused rather than escaped.
    """
    if isinstance(task_id, str) and _TASK_ID.fullmatch(task_id):
        return task_id
    raise InvalidTaskIdError(task_id)


def _number_or_none(value: Any) -> Any:
    """Read a number the liberal way: junk becomes None rather than a crash mid-poll."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


#: Unix seconds of 0001-01-01 and 9999-12-31: outside, a timestamp is junk (read as unknown).
_FIRST_UNIX_SECOND: Final = -62_135_596_800
_LAST_UNIX_SECOND: Final = 253_402_300_799


def _unix_seconds_or_none(value: Any) -> int | None:
    """A timestamp a ``datetime`` can hold, else None (junk, infinities, NaN, far-off years)."""
    number = _number_or_none(value)
    if number is None or not math.isfinite(number):
        return None
    seconds = int(number)
    return seconds if _FIRST_UNIX_SECOND <= seconds <= _LAST_UNIX_SECOND else None


class TaskError(BaseModel):
    """Why a task failed, as the API says it."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    code: str | None = None
    message: str | None = None


class ResultVideo(BaseModel):
    """One generated video: its download URLs (expiring) and when they expire."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # "url" as the API says it; "urls" so a dumped task reads back the same.
    urls: tuple[str, ...] = Field(default=(), validation_alias=AliasChoices("url", "urls"))
    expires_at: int | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _url_string_or_list(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list | tuple):
            return tuple(item for item in value if isinstance(item, str) and item)
        return ()

    @field_validator("expires_at", mode="before")
    @classmethod
    def _lenient_expiry(cls, value: Any) -> Any:
        return _unix_seconds_or_none(value)


class VideoTask(BaseModel):
    """A task's status answer (``GET /v1/tasks/{id}``), read liberally.

    Unknown statuses mean "still running"; ``progress`` is clamped to 0-100; the result's URL may
    be a string or a list; extra fields are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    status: str
    progress: int | None = None
    estimated_time: float | None = None
    cost: float | None = None
    created: int | None = None
    completed: int | None = None
    actual_time: float | None = None
    videos: tuple[ResultVideo, ...] = ()
    error: TaskError | None = None

    @model_validator(mode="before")
    @classmethod
    def _lift_result(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        fields = dict(data)
        if "id" not in fields and "task_id" in fields:
            fields["id"] = fields["task_id"]
        result = fields.get("result")
        if "videos" not in fields and isinstance(result, Mapping):
            videos = result.get("videos")
            fields["videos"] = videos if isinstance(videos, list) else ()
        if not isinstance(fields.get("error"), Mapping | None):
            fields["error"] = {"message": str(fields["error"])}
        return fields

    @field_validator("id", mode="after")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        try:
            return validate_task_id(value)
        except InvalidTaskIdError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("status", mode="before")
    @classmethod
    def _normalise_status(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("progress", mode="before")
    @classmethod
    def _clamp_progress(cls, value: Any) -> Any:
        number = _number_or_none(value)
        if number is None or math.isnan(number):
            return None
        return 100 if number >= 100 else 0 if number <= 0 else int(number)

    @field_validator("estimated_time", "cost", "actual_time", mode="before")
    @classmethod
    def _lenient_number(cls, value: Any) -> Any:
        number = _number_or_none(value)
        return number if number is None or math.isfinite(number) else None

    @field_validator("created", "completed", mode="before")
    @classmethod
    def _lenient_timestamp(cls, value: Any) -> Any:
        return _unix_seconds_or_none(value)

    @property
    def phase(self) -> TaskPhase:
        """What the status means for a waiting caller; unknown statuses still run."""
        if self.status == "completed":
            return "completed"
        if self.status == "failed":
            return "failed"
        if self.status in ("cancelled", "canceled"):
            return "cancelled"
        return "running"

    @property
    def is_terminal(self) -> bool:
        """True once the status will not change again."""
        return self.phase != "running"

    @property
    def video_url(self) -> str | None:
        """The first download URL of the first video, if the task has one."""
        for video in self.videos:
            if video.urls:
                return video.urls[0]
        return None

    @property
    def video_expires_at(self) -> int | None:
        """When :attr:`video_url` expires (Unix seconds), if the API said."""
        for video in self.videos:
            if video.urls:
                return video.expires_at
        return None


class Balance(BaseModel):
    """The answer of ``GET /v1/balance``: ``remain_balance`` is -1 when the quota is unlimited."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    remain_balance: float
    used_balance: float | None = None
    unlimited_quota: bool = False

    @property
    def unlimited(self) -> bool:
        """True when the key has no spending limit."""
        return self.unlimited_quota or self.remain_balance == -1


class UploadedImage(BaseModel):
    """The answer of ``POST /v1/uploads/images``; the URL lives 72 hours."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str
    filename: str | None = None
    content_type: str | None = None
    size_bytes: int | None = Field(default=None, validation_alias="bytes")
    created_at: int | None = None


class DownloadedVideo(BaseModel):
    """A video fully downloaded to ``path``, with the size and SHA-256 of the bytes written."""

    model_config = ConfigDict(frozen=True)

    path: Path
    size_bytes: int
    sha256: str
