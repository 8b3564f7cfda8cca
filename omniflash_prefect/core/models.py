"""The API's data, as typed models: the request we send and the answers we read.

``VideoRequest`` is strict: it holds every rule of the provider's submit endpoint, checked locally,
so a value the API would refuse is never sent (and never paid for). Its refusals are
:class:`InvalidVideoRequestError` with the same error codes the API answers with.

The answer models are liberal: the provider's answers vary between its pages and models (a URL as a
string or a list, a task id in three places, unknown statuses and extra fields), so they read every
documented variant and ignore what they do not know.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from omniflash_prefect.core.errors import (
    InvalidTaskIdError,
    InvalidVideoRequestError,
    RequestProblem,
)

MODEL_NAME: Final = "Omni-Flash-Ext"
ALLOWED_DURATIONS: Final = (4, 6, 8, 10)
ALLOWED_RESOLUTIONS: Final = ("720p", "1080p", "4k")
ALLOWED_IMAGE_COUNTS: Final = (0, 1, 3)
MAX_VIDEO_URLS: Final = 1

TaskPhase = Literal["running", "completed", "failed", "cancelled"]
"""What a status means for a poll loop; unknown statuses are ``running``."""

KNOWN_STATUSES: Final = frozenset(
    {"submitted", "pending", "processing", "completed", "failed", "cancelled"}
)

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ASPECT_RATIO = re.compile(r"[1-9][0-9]*:[1-9][0-9]*")
_DATA_IMAGE_URI = re.compile(r"data:image/([A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
_REQUEST_FIELDS: Final = (
    "model",
    "prompt",
    "duration",
    "resolution",
    "aspect_ratio",
    "size",
    "image_urls",
    "video_urls",
)
#: Optional fields the API types as string or array: an explicit null is refused (as the provider
#: refuses it), never read as "omitted". Manifests drop null cells before they get here.
_NULL_REFUSED_FIELDS: Final = ("aspect_ratio", "size", "image_urls", "video_urls")


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it is safe in a URL path and a storage key, else raise.

    Task ids come from a remote server and end up in paths (``/v1/tasks/<id>``, ``<id>.mp4``), so
    anything beyond ``[A-Za-z0-9_-]{1,128}`` is refused rather than escaped.
    """
    if isinstance(task_id, str) and _TASK_ID.fullmatch(task_id):
        return task_id
    raise InvalidTaskIdError(task_id)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_http_url(value: str) -> bool:
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        return False
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(hostname)


def _is_data_image_uri(value: str) -> bool:
    match = _DATA_IMAGE_URI.fullmatch(value)
    if match is None:
        return False
    try:
        return bool(base64.b64decode(match.group(2), validate=True))
    except (binascii.Error, ValueError):
        return False


def _check_aspect_ratio(field: str, value: object, problems: list[RequestProblem]) -> str | None:
    if isinstance(value, str) and _ASPECT_RATIO.fullmatch(value):
        return value
    problems.append(
        RequestProblem(
            "invalid_request_error",
            field,
            value,
            f"{_show(value)} is not an aspect ratio",
            allowed="W:H with positive integers, e.g. 16:9 or 9:16",
        )
    )
    return None


def _check_url_list(
    field: str,
    value: object,
    *,
    allowed_counts: Sequence[int],
    count_code: str,
    allow_data_uri: bool,
    problems: list[RequestProblem],
) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        problems.append(
            RequestProblem("invalid_request_error", field, value, "must be a list of URLs")
        )
        return ()
    items = list(value)
    counts = ", ".join(str(n) for n in allowed_counts)
    if len(items) not in allowed_counts:
        problems.append(
            RequestProblem(
                count_code,
                field,
                len(items),
                f"{len(items)} URLs given",
                allowed=f"{counts} URLs",
            )
        )
    allowed = "an http(s) URL" + (
        " or a data:image/<type>;base64,<data> URI" if allow_data_uri else ""
    )
    for index, item in enumerate(items):
        ok = isinstance(item, str) and (
            _is_http_url(item) or (allow_data_uri and _is_data_image_uri(item))
        )
        if not ok:
            problems.append(
                RequestProblem(
                    "invalid_request_error",
                    f"{field}[{index}]",
                    item,
                    f"{_show(item)} is not {allowed}",
                    allowed=allowed,
                )
            )
    return tuple(item for item in items if isinstance(item, str))


def check_request_fields(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[RequestProblem]]:
    """Apply every rule of the submit endpoint to raw fields.

    Returns the normalised fields (resolution lower-cased, ``size`` folded into ``aspect_ratio``)
    and every rule broken, each with the API's error code. Pure, so the rules are tested alone.
    """
    problems: list[RequestProblem] = []
    for name in sorted(set(data) - set(_REQUEST_FIELDS)):
        problems.append(
            RequestProblem(
                "invalid_request_error",
                name,
                data[name],
                "is not a field of the API",
                allowed=", ".join(_REQUEST_FIELDS),
            )
        )

    for name in _NULL_REFUSED_FIELDS:
        if name in data and data[name] is None:
            problems.append(
                RequestProblem(
                    "invalid_request_error",
                    name,
                    None,
                    "null is not a value of this field: omit the field to use its default",
                )
            )

    model = data.get("model", MODEL_NAME)
    if model != MODEL_NAME:
        problems.append(
            RequestProblem(
                "invalid_request_error",
                "model",
                model,
                f"{_show(model)} is not supported",
                allowed=MODEL_NAME,
            )
        )

    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(
            RequestProblem(
                "invalid_request_error",
                "prompt",
                prompt,
                "is required and must not be empty or whitespace",
                allowed="a non-empty description of the video",
            )
        )

    duration = data.get("duration", 6)
    # type() rather than isinstance(): bool is an int subclass, and True must not mean 1 second.
    if type(duration) is not int or duration not in ALLOWED_DURATIONS:
        problems.append(
            RequestProblem(
                "invalid_duration",
                "duration",
                duration,
                f"{_show(duration)} seconds is not supported",
                allowed="4, 6, 8 or 10 (integer seconds)",
            )
        )

    resolution = data.get("resolution", "720p")
    if not isinstance(resolution, str) or resolution.lower() not in ALLOWED_RESOLUTIONS:
        problems.append(
            RequestProblem(
                "invalid_resolution",
                "resolution",
                resolution,
                f"{_show(resolution)} is not supported",
                allowed="720p, 1080p or 4k (any case)",
            )
        )
        resolution = "720p"

    aspect_given = data.get("aspect_ratio")
    size_given = data.get("size")
    aspect_ratio = "16:9"
    if aspect_given is not None:
        aspect_ratio = _check_aspect_ratio("aspect_ratio", aspect_given, problems) or aspect_ratio
    if size_given is not None:
        size = _check_aspect_ratio("size", size_given, problems)
        if size is not None and aspect_given is None:
            aspect_ratio = size
        elif size is not None and size != aspect_ratio:
            problems.append(
                RequestProblem(
                    "invalid_request_error",
                    "size",
                    size_given,
                    f"{_show(size_given)} differs from aspect_ratio {_show(aspect_given)}",
                    allowed="the same value as aspect_ratio (size is its alias)",
                )
            )

    image_urls = _check_url_list(
        "image_urls",
        data.get("image_urls"),
        allowed_counts=ALLOWED_IMAGE_COUNTS,
        count_code="unsupported_image_count",
        allow_data_uri=True,
        problems=problems,
    )
    video_urls = _check_url_list(
        "video_urls",
        data.get("video_urls"),
        allowed_counts=tuple(range(MAX_VIDEO_URLS + 1)),
        count_code="invalid_request_error",
        allow_data_uri=False,
        problems=problems,
    )
    fields = {
        "model": MODEL_NAME,
        "prompt": prompt,
        "duration": duration,
        "resolution": resolution.lower() if isinstance(resolution, str) else resolution,
        "aspect_ratio": aspect_ratio,
        "image_urls": image_urls,
        "video_urls": video_urls,
    }
    return fields, problems


class VideoRequest(BaseModel):
    """One video to generate: text-to-video, image-to-video (1 image) or reference fusion (3).

    Constructing it checks every rule of the API and raises :class:`InvalidVideoRequestError`
    (with the API's error code, the field, the value and what is allowed) for anything the API
    would refuse. ``size`` is accepted as the API's alias of ``aspect_ratio`` and folded into it;
    only ``aspect_ratio`` is sent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["Omni-Flash-Ext"] = Field(
        default=MODEL_NAME, description="Always Omni-Flash-Ext."
    )
    prompt: str = Field(description="Scene, people, action, camera, style and sound hints.")
    duration: int = Field(default=6, description="Seconds: 4, 6, 8 or 10.")
    resolution: str = Field(default="720p", description="720p, 1080p or 4k (sent lower-case).")
    aspect_ratio: str = Field(default="16:9", description="W:H, e.g. 16:9 or 9:16.")
    size: str | None = Field(
        default=None,
        exclude=True,
        description="The API's alias of aspect_ratio: accepted, folded into it, then None.",
    )
    image_urls: tuple[str, ...] = Field(
        default=(), description="0 (text-to-video), 1 (image-to-video) or 3 (reference fusion)."
    )
    video_urls: tuple[str, ...] = Field(default=(), description="0 or 1 motion reference video.")

    @model_validator(mode="wrap")
    @classmethod
    def _check_api_rules(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(data, Mapping):
            fields, problems = check_request_fields(data)
            if problems:
                raise InvalidVideoRequestError(problems)
            data = fields
        try:
            return handler(data)
        except ValidationError as exc:
            raise InvalidVideoRequestError(
                [
                    RequestProblem(
                        "invalid_request_error",
                        ".".join(str(part) for part in error["loc"]) or "request",
                        error.get("input"),
                        error["msg"],
                    )
                    for error in exc.errors()
                ]
            ) from None

    def to_api_body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/videos/generations``, every default sent explicitly."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "duration": self.duration,
            "resolution": self.resolution,
            "aspect_ratio": self.aspect_ratio,
        }
        if self.image_urls:
            body["image_urls"] = list(self.image_urls)
        if self.video_urls:
            body["video_urls"] = list(self.video_urls)
        return body

    def fingerprint(self) -> str:
        """SHA-256 of the canonical request body: the same video request, the same fingerprint."""
        canonical = json.dumps(self.to_api_body(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def mode(self) -> Literal["text-to-video", "image-to-video", "reference-fusion"]:
        """Which generation mode the number of images selects."""
        if not self.image_urls:
            return "text-to-video"
        return "image-to-video" if len(self.image_urls) == 1 else "reference-fusion"


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
