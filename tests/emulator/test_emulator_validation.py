"""The provider's submit rules: every refused value (HTTP status and code) and accepted edge."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.emulator.errors import ApiError
from omniflash_prefect.emulator.validation import (
    is_http_url,
    is_image_data_uri,
    price_of,
    validate_submit,
)

from .helpers import PROMPT, body, error_code

MISSING = object()
IMG = "https://example.com/character.jpg"
DATA_URI = "data:image/png;base64,iVBORw0KGgo="

REFUSED: list[tuple[str, object, str]] = [
    ("model", MISSING, "invalid_request_error"),
    ("model", "omni-flash-ext", "invalid_request_error"),
    ("model", "Omni-Flash", "invalid_request_error"),
    ("model", 1, "invalid_request_error"),
    ("prompt", MISSING, "invalid_request_error"),
    ("prompt", "", "invalid_request_error"),
    ("prompt", " \n\t ", "invalid_request_error"),
    ("prompt", None, "invalid_request_error"),
    ("prompt", ["a cat"], "invalid_request_error"),
    ("duration", 5, "invalid_duration"),
    ("duration", 7, "invalid_duration"),
    ("duration", 0, "invalid_duration"),
    ("duration", 12, "invalid_duration"),
    ("duration", -6, "invalid_duration"),
    ("duration", 6.0, "invalid_duration"),
    ("duration", "6", "invalid_duration"),
    ("duration", True, "invalid_duration"),
    ("duration", None, "invalid_duration"),
    ("resolution", "480p", "invalid_resolution"),
    ("resolution", "2k", "invalid_resolution"),
    ("resolution", "1080", "invalid_resolution"),
    ("resolution", "", "invalid_resolution"),
    ("resolution", 1080, "invalid_resolution"),
    ("resolution", None, "invalid_resolution"),
    ("aspect_ratio", "16x9", "invalid_request_error"),
    ("aspect_ratio", "0:9", "invalid_request_error"),
    ("aspect_ratio", "16:0", "invalid_request_error"),
    ("aspect_ratio", "16:", "invalid_request_error"),
    ("aspect_ratio", "-16:9", "invalid_request_error"),
    ("aspect_ratio", " 16:9", "invalid_request_error"),
    ("aspect_ratio", "1.5:1", "invalid_request_error"),
    ("aspect_ratio", 1.78, "invalid_request_error"),
    ("size", "landscape", "invalid_request_error"),
    ("size", "1280x720", "invalid_request_error"),
    ("image_urls", [IMG, IMG], "unsupported_image_count"),
    ("image_urls", [IMG] * 4, "unsupported_image_count"),
    ("image_urls", [IMG] * 5, "unsupported_image_count"),
    ("image_urls", IMG, "invalid_request_error"),
    ("image_urls", None, "invalid_request_error"),
    ("image_urls", ["ftp://example.com/a.jpg"], "invalid_request_error"),
    ("image_urls", ["https://"], "invalid_request_error"),
    ("image_urls", ["example.com/a.jpg"], "invalid_request_error"),
    ("image_urls", ["http://[::1/a.jpg"], "invalid_request_error"),
    ("image_urls", [7], "invalid_request_error"),
    ("image_urls", ["https://example.com/a b.jpg"], "invalid_request_error"),
    ("image_urls", ["data:image/png;base64,not*base64!"], "invalid_request_error"),
    ("image_urls", ["data:image/png;base64,"], "invalid_request_error"),
    ("image_urls", ["data:text/plain;base64,aGVsbG8="], "invalid_request_error"),
    ("image_urls", ["data:image/png,iVBORw0KGgo="], "invalid_request_error"),
    ("image_urls", [IMG, IMG, "file:///etc/passwd"], "invalid_request_error"),
    (
        "video_urls",
        ["https://example.com/a.mp4", "https://example.com/b.mp4"],
        "invalid_request_error",
    ),
    ("video_urls", ["file:///tmp/a.mp4"], "invalid_request_error"),
    ("video_urls", [DATA_URI], "invalid_request_error"),
    ("video_urls", "https://example.com/a.mp4", "invalid_request_error"),
    ("seed", 1, "invalid_request_error"),
    ("callback_url", "https://example.com/hook", "invalid_request_error"),
]

ACCEPTED: list[dict[str, Any]] = [
    {"resolution": "4K"},
    {"resolution": "4k"},
    {"resolution": "1080P"},
    {"resolution": "720p"},
    {"duration": 4},
    {"duration": 6},
    {"duration": 8},
    {"duration": 10},
    {"image_urls": []},
    {"image_urls": [IMG]},
    {"image_urls": [IMG, "http://example.com/b.png", DATA_URI]},
    {"image_urls": [DATA_URI]},
    {"aspect_ratio": "9:16"},
    {"aspect_ratio": "21:9", "size": "21:9"},
    {"size": "1:1"},
    {"video_urls": []},
    {"video_urls": ["https://example.com/motion.mp4"]},
    {"prompt": "  padded prompt  "},
    {
        "duration": 10,
        "resolution": "1080p",
        "aspect_ratio": "9:16",
        "image_urls": [IMG, IMG, IMG],
    },
]


def _refused_body(field: str, value: object) -> dict[str, Any]:
    fields = body()
    if value is MISSING:
        del fields[field]
    else:
        fields[field] = value
    return fields


@pytest.mark.parametrize(("field", "value", "code"), REFUSED)
async def test_refused_values_answer_400_with_their_code(
    shared_emulator: EmulatorServer,
    shared_client: httpx.AsyncClient,
    field: str,
    value: object,
    code: str,
) -> None:
    """Each value the provider documents as invalid is refused with HTTP 400 and its code."""
    accepted = shared_emulator.state.submission_count
    response = await shared_client.post("/v1/videos/generations", json=_refused_body(field, value))
    assert response.status_code == 400
    assert error_code(response) == code
    assert field in response.json()["error"]["message"]
    assert shared_emulator.state.submission_count == accepted


@pytest.mark.parametrize("fields", ACCEPTED)
async def test_accepted_edges(
    shared_emulator: EmulatorServer, shared_client: httpx.AsyncClient, fields: dict[str, Any]
) -> None:
    """Documented edge values are accepted and the body is recorded as sent."""
    response = await shared_client.post("/v1/videos/generations", json=body(**fields))
    assert response.status_code == 200, response.text
    task_id = response.json()["data"][0]["task_id"]
    assert shared_emulator.state.task(task_id).request == body(**fields)


@pytest.mark.parametrize("payload", [[], "text", 5, None, [body()]])
async def test_body_must_be_a_json_object(
    shared_client: httpx.AsyncClient, payload: object
) -> None:
    """Valid JSON that is not an object is refused as invalid_request_error."""
    response = await shared_client.post("/v1/videos/generations", json=payload)
    assert response.status_code == 400
    assert error_code(response) == "invalid_request_error"


def test_error_message_names_the_rejected_value() -> None:
    """The message says which value was wrong, as the provider's examples do."""
    with pytest.raises(ApiError) as caught:
        validate_submit(body(duration=7))
    assert caught.value.status == 400
    assert caught.value.message == "invalid duration 7, must be one of 4/6/8/10"
    assert caught.value.body() == {
        "error": {
            "message": caught.value.message,
            "type": "invalid_duration",
            "code": "invalid_duration",
        }
    }


def test_size_must_equal_aspect_ratio() -> None:
    """``size`` is an alias: given with a different aspect_ratio it is refused."""
    with pytest.raises(ApiError) as caught:
        validate_submit(body(aspect_ratio="16:9", size="9:16"))
    assert caught.value.code == "invalid_request_error"
    assert "size" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "duration", "resolution", "price"),
    [
        ({}, 6, "720p", 0.24),
        ({"duration": 10, "resolution": "1080p"}, 10, "1080p", 0.6),
        ({"duration": 4, "resolution": "4K"}, 4, "4k", 0.48),
        ({"duration": 8, "resolution": "4k"}, 8, "4k", 0.96),
    ],
)
def test_validated_submit_has_defaults_and_price(
    fields: dict[str, Any], duration: int, resolution: str, price: float
) -> None:
    """Defaults are 6 s at 720p; resolution is normalised; price = seconds x rate per second."""
    valid = validate_submit(body(**fields))
    assert (valid.duration, valid.resolution, valid.price) == (duration, resolution, price)
    assert price_of(duration, resolution.upper()) == price


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com/a.jpg", True),
        ("HTTP://EXAMPLE.COM/A.JPG", True),
        ("http://127.0.0.1:8765/uploads/img.png", True),
        ("https:///a.jpg", False),
        ("mailto:someone@example.com", False),
        (None, False),
    ],
)
def test_http_url_predicate(value: object, expected: bool) -> None:
    """Only absolute http(s) URLs naming a host count as URLs."""
    assert is_http_url(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DATA_URI, True),
        ("data:image/svg+xml;base64,PHN2Zz4=", True),
        ("data:image/png;base64,iVBORw0KGgo", False),
        ("data:;base64,iVBORw0KGgo=", False),
        (f"{PROMPT}", False),
    ],
)
def test_image_data_uri_predicate(value: object, expected: bool) -> None:
    """A data URI must be an image type with a base64 payload that decodes."""
    assert is_image_data_uri(value) is expected
