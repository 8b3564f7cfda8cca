"""What may be sent: ``VideoRequest`` and every rule of the provider's submit endpoint.

``VideoRequest`` is strict: constructing one checks each rule locally, so a value the API would
refuse is never sent (and never paid for). Its refusals are :class:`InvalidVideoRequestError`,
with the same error codes the API answers with. Each field has its own checker, so a rule is
read (and unit-tested) in one place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from omniflash_prefect.errors import InvalidVideoRequestError, RequestProblem

MODEL_NAME: Final = "Omni-Flash-Ext"
ALLOWED_DURATIONS: Final = (4, 6, 8, 10)
ALLOWED_RESOLUTIONS: Final = ("720p", "1080p", "4k")
ALLOWED_IMAGE_COUNTS: Final = (0, 1, 3)
MAX_VIDEO_URLS: Final = 1

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
#: The request's fields among the ``generate_video`` flow's parameters.
_FLOW_FIELDS: Final = tuple(name for name in _REQUEST_FIELDS if name not in ("model", "size"))


def _invalid(field: str, value: object, message: str, allowed: str | None = None) -> RequestProblem:
    """A problem the API answers with its generic ``invalid_request_error`` code."""
    return RequestProblem("invalid_request_error", field, value, message, allowed)


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
    allowed = "W:H with positive integers, e.g. 16:9 or 9:16"
    problems.append(_invalid(field, value, f"{_show(value)} is not an aspect ratio", allowed))
    return None


def _check_url_list(
    field: str,
    data: Mapping[str, Any],
    allowed_counts: Sequence[int],
    count_code: str,
    allow_data_uri: bool,
    problems: list[RequestProblem],
) -> tuple[str, ...]:
    value = data.get(field)
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        problems.append(_invalid(field, value, "must be a list of URLs"))
        return ()
    items = list(value)
    counts = ", ".join(str(n) for n in allowed_counts)
    if len(items) not in allowed_counts:
        problems.append(
            RequestProblem(
                count_code, field, len(items), f"{len(items)} URLs given", allowed=f"{counts} URLs"
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
                _invalid(f"{field}[{index}]", item, f"{_show(item)} is not {allowed}", allowed)
            )
    return tuple(item for item in items if isinstance(item, str))


#: A rule of the submit endpoint: reads the raw fields, adds what it finds wrong to ``problems``
#: and returns the normalised fields it owns.
FieldChecker = Callable[[Mapping[str, Any], list[RequestProblem]], dict[str, Any]]


def _check_known_fields(data: Mapping[str, Any], problems: list[RequestProblem]) -> dict[str, Any]:
    allowed = ", ".join(_REQUEST_FIELDS)
    for name in sorted(set(data) - set(_REQUEST_FIELDS)):
        problems.append(_invalid(name, data[name], "is not a field of the API", allowed))
    return {}


def _check_no_nulls(data: Mapping[str, Any], problems: list[RequestProblem]) -> dict[str, Any]:
    for name in _NULL_REFUSED_FIELDS:
        if name in data and data[name] is None:
            message = "null is not a value of this field: omit the field to use its default"
            problems.append(_invalid(name, None, message))
    return {}


def _check_model(data: Mapping[str, Any], problems: list[RequestProblem]) -> dict[str, Any]:
    model = data.get("model", MODEL_NAME)
    if model != MODEL_NAME:
        problems.append(_invalid("model", model, f"{_show(model)} is not supported", MODEL_NAME))
    return {"model": MODEL_NAME}


def _check_prompt(data: Mapping[str, Any], problems: list[RequestProblem]) -> dict[str, Any]:
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        message = "is required and must not be empty or whitespace"
        problems.append(_invalid("prompt", prompt, message, "a non-empty description of the video"))
    return {"prompt": prompt}


def _check_duration(data: Mapping[str, Any], problems: list[RequestProblem]) -> dict[str, Any]:
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
    return {"duration": duration}


def _check_resolution(data: Mapping[str, Any], problems: list[RequestProblem]) -> dict[str, Any]:
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
    return {"resolution": resolution.lower()}


def _check_aspect_ratio_and_size(
    data: Mapping[str, Any], problems: list[RequestProblem]
) -> dict[str, Any]:
    """``aspect_ratio``, with the API's alias ``size`` folded into it (they must agree)."""
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
            message = f"{_show(size_given)} differs from aspect_ratio {_show(aspect_given)}"
            allowed = "the same value as aspect_ratio (size is its alias)"
            problems.append(_invalid("size", size_given, message, allowed))
    return {"aspect_ratio": aspect_ratio}


def _check_image_urls(data: Mapping[str, Any], problems: list[RequestProblem]) -> dict[str, Any]:
    counts, code = ALLOWED_IMAGE_COUNTS, "unsupported_image_count"
    return {"image_urls": _check_url_list("image_urls", data, counts, code, True, problems)}


def _check_video_urls(data: Mapping[str, Any], problems: list[RequestProblem]) -> dict[str, Any]:
    counts, code = tuple(range(MAX_VIDEO_URLS + 1)), "invalid_request_error"
    return {"video_urls": _check_url_list("video_urls", data, counts, code, False, problems)}


#: Every rule, in the order their problems are reported (and their fields appear).
FIELD_CHECKERS: Final[tuple[FieldChecker, ...]] = (
    _check_known_fields,
    _check_no_nulls,
    _check_model,
    _check_prompt,
    _check_duration,
    _check_resolution,
    _check_aspect_ratio_and_size,
    _check_image_urls,
    _check_video_urls,
)


def check_request_fields(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[RequestProblem]]:
    """Apply every rule of the submit endpoint to raw fields.

    Returns the normalised fields (resolution lower-cased, ``size`` folded into ``aspect_ratio``)
    and every rule broken, each with the API's error code. Pure, so the rules are tested alone.
    """
    problems: list[RequestProblem] = []
    fields: dict[str, Any] = {}
    for check in FIELD_CHECKERS:
        fields.update(check(data, problems))
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
                    _invalid(
                        ".".join(str(part) for part in error["loc"]) or "request",
                        error.get("input"),
                        error["msg"],
                    )
                    for error in exc.errors()
                ]
            ) from None

    def to_api_body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/videos/generations``, every default sent explicitly."""
        body = self.model_dump(exclude={"image_urls", "video_urls"})
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

    def flow_parameters(self) -> dict[str, Any]:
        """The request as parameters of the ``generate_video`` flow, which builds this same
        request back from them: the one place the request-to-flow mapping is spelled out (the
        command line and the batch runners add only their blocks and keys)."""
        return {
            **self.model_dump(include={"prompt", "duration", "resolution", "aspect_ratio"}),
            "image_urls": list(self.image_urls) or None,
            "video_urls": list(self.video_urls) or None,
        }

    @classmethod
    def from_flow_parameters(cls, parameters: Mapping[str, Any]) -> VideoRequest:
        """The request a ``generate_video`` run was given (the inverse of
        :meth:`flow_parameters`); other parameters, such as blocks, are ignored."""
        fields = {name: parameters[name] for name in _FLOW_FIELDS if name in parameters}
        for name in ("image_urls", "video_urls"):
            fields[name] = tuple(fields.get(name) or ())
        return cls(**fields)
