"""The provider's documented submit rules and prices, applied strictly.

The emulator must refuse exactly what the provider documents as refused (with the same error
code), so that a client validating strictly on its side and this stand-in agree. Kept pure (a
dict in, a result or ``ApiError`` out) so every rule is unit-testable without a server.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError

MODEL = "Omni-Flash-Ext"
DURATIONS = (4, 6, 8, 10)
DEFAULT_DURATION = 6
#: Price per second of video, by (lower-case) resolution.
PRICE_PER_SECOND = {"720p": 0.04, "1080p": 0.06, "4k": 0.12}
DEFAULT_RESOLUTION = "720p"
#: What a submit naming neither ``aspect_ratio`` nor ``size`` gets.
DEFAULT_ASPECT_RATIO = "16:9"
IMAGE_COUNTS = (0, 1, 3)
KNOWN_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "duration",
        "resolution",
        "aspect_ratio",
        "size",
        "image_urls",
        "video_urls",
    }
)

_RATIO = re.compile(r"[1-9][0-9]*:[1-9][0-9]*")
_DATA_IMAGE = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,(?P<payload>.+)", re.DOTALL)


@dataclass(frozen=True)
class ValidSubmit:
    """What the emulator needs from an accepted submit body."""

    duration: int
    resolution: str
    price: float
    aspect_ratio: str = DEFAULT_ASPECT_RATIO


def _show(value: Any) -> str:
    """Render a rejected value as it appeared in the JSON body."""
    return json.dumps(value, ensure_ascii=False)


def _invalid(message: str, code: str = "invalid_request_error") -> ApiError:
    return ApiError(400, code, message)


def price_of(duration: int, resolution: str) -> float:
    """Price of one video: seconds times the per-second rate, rounded to 4 decimals."""
    return round(duration * PRICE_PER_SECOND[resolution.lower()], 4)


def is_http_url(value: object) -> bool:
    """True for an absolute http(s) URL that names a host and has no spaces or control bytes."""
    if not isinstance(value, str) or any(ch.isspace() or ord(ch) < 32 for ch in value):
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(host)


def is_image_data_uri(value: object) -> bool:
    """True for ``data:image/<subtype>;base64,<payload>`` with a payload that decodes."""
    if not isinstance(value, str):
        return False
    match = _DATA_IMAGE.fullmatch(value)
    if match is None:
        return False
    try:
        base64.b64decode(match["payload"], validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters in the payload
        return False
    return True


def _ratio(body: dict[str, Any], field: str) -> str | None:
    if field not in body:
        return None
    value = body[field]
    if not isinstance(value, str) or _RATIO.fullmatch(value) is None:
        raise _invalid(f"invalid {field} {_show(value)}, expected 'W:H' such as '16:9'")
    return value


def _urls(body: dict[str, Any], field: str) -> list[Any]:
    value = body.get(field, [])
    if not isinstance(value, list):
        raise _invalid(f"invalid {field} {_show(value)}, expected an array of URLs")
    return value


def validate_submit(body: object) -> ValidSubmit:
    """Check a parsed JSON submit body against the provider's rules; ``ApiError`` (400) if not."""
    if not isinstance(body, dict):
        raise _invalid(f"request body must be a JSON object, got {_show(body)}")
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        raise _invalid(f"unknown field(s) {', '.join(unknown)}")

    model = body.get("model")
    if model != MODEL:
        raise _invalid(f"invalid model {_show(model)}, must be {MODEL!r}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid(f"invalid prompt {_show(prompt)}, must be a non-empty string")

    duration = body.get("duration", DEFAULT_DURATION)
    if type(duration) is not int or duration not in DURATIONS:
        raise _invalid(
            f"invalid duration {_show(duration)}, must be one of 4/6/8/10", "invalid_duration"
        )
    resolution = body.get("resolution", DEFAULT_RESOLUTION)
    if not isinstance(resolution, str) or resolution.lower() not in PRICE_PER_SECOND:
        raise _invalid(
            f"invalid resolution {_show(resolution)}, must be one of 720p/1080p/4k",
            "invalid_resolution",
        )

    aspect_ratio = _ratio(body, "aspect_ratio")
    size = _ratio(body, "size")
    if aspect_ratio is not None and size is not None and aspect_ratio != size:
        raise _invalid(f"size {_show(size)} must equal aspect_ratio {_show(aspect_ratio)}")

    images = _urls(body, "image_urls")
    if len(images) not in IMAGE_COUNTS:
        raise _invalid(
            f"image_urls has {len(images)} images, must have 0, 1 or 3", "unsupported_image_count"
        )
    for image in images:
        if not (is_http_url(image) or is_image_data_uri(image)):
            raise _invalid(
                f"invalid image_urls item {_show(image)[:100]}, "
                "expected an http(s) URL or a data:image/...;base64 URI"
            )
    videos = _urls(body, "video_urls")
    if len(videos) > 1:
        raise _invalid(f"video_urls has {len(videos)} items, at most 1 is supported")
    for video in videos:
        if not is_http_url(video):
            raise _invalid(f"invalid video_urls item {_show(video)[:100]}, expected an http(s) URL")

    resolution = resolution.lower()
    return ValidSubmit(
        duration,
        resolution,
        price_of(duration, resolution),
        aspect_ratio or size or DEFAULT_ASPECT_RATIO,
    )
