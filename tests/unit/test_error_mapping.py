"""HTTP error answers -> the right leaf of the error tree, whatever the body looks like."""

from __future__ import annotations

import json

import httpx
import pytest

from omniflash_prefect import OmniFlashError
from omniflash_prefect.core.protocol import error_from_response
from omniflash_prefect.errors import (
    APIError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)

KEY = "sk-test-secret-key-123"

BODIES: dict[str, bytes] = {
    "nested": json.dumps(
        {"error": {"message": "bad thing", "type": "invalid_duration", "code": "invalid_duration"}}
    ).encode(),
    "flat": json.dumps({"code": "invalid_duration", "message": "bad thing"}).encode(),
    "type-only": json.dumps(
        {"error": {"message": "bad thing", "type": "invalid_duration"}}
    ).encode(),
    "html": b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "empty": b"",
    "not-json": b"oops{",
    "json-list": b"[1, 2]",
    "error-string": json.dumps({"error": "bad thing"}).encode(),
}


def response(status: int, body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "leaf"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (429, RateLimitedError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (418, UnexpectedResponseError),
    ],
)
@pytest.mark.parametrize("shape", sorted(BODIES))
def test_status_decides_the_leaf_for_every_body_shape(
    status: int, leaf: type[APIError], shape: str
) -> None:
    """Each row of the error table maps to its leaf for JSON, HTML, empty and broken bodies."""
    error = error_from_response(response(status, BODIES[shape]))
    assert type(error) is leaf
    assert isinstance(error, OmniFlashError)
    assert error.status_code == status


@pytest.mark.parametrize("shape", ["nested", "flat", "type-only"])
def test_api_code_and_message_are_kept(shape: str) -> None:
    """The API's error code and message are read from any known JSON shape."""
    error = error_from_response(response(400, BODIES[shape]))
    assert error.code == "invalid_duration"
    assert "bad thing" in str(error)


def test_error_string_body_gives_its_message() -> None:
    """``{"error": "..."}`` is read as the message."""
    assert "bad thing" in str(error_from_response(response(400, BODIES["error-string"])))


def test_html_body_gets_the_status_phrase() -> None:
    """A gateway's HTML page never reaches the message; the status phrase does."""
    error = error_from_response(response(502, BODIES["html"]))
    assert "Bad Gateway" in str(error)
    assert "<html>" not in str(error)
    assert error.code is None


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (401, "OMNIFLASH_API_KEY"),
        (402, "top up"),
        (429, "lower the concurrency"),
        (400, "fix the request"),
    ],
)
def test_messages_say_what_to_do_next(status: int, advice: str) -> None:
    """The message of each actionable error names the next step."""
    assert advice in str(error_from_response(response(status, b"")))


def test_retry_after_seconds_and_request_id_are_carried() -> None:
    """429 keeps the server's Retry-After; any error keeps the request id."""
    error = error_from_response(response(429, b"", **{"Retry-After": "7", "X-Request-Id": "r-1"}))
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 7.0
    assert error.request_id == "r-1"
    assert "r-1" in str(error)


def test_429_without_retry_after_has_none() -> None:
    """No header, no hint."""
    error = error_from_response(response(429, b"{}"))
    assert isinstance(error, RateLimitedError)
    assert error.retry_after is None


def test_echoed_api_key_is_scrubbed() -> None:
    """A server that echoes the key back never gets it into an exception's text."""
    body = json.dumps(
        {"error": {"message": f"invalid token Bearer {KEY}", "code": f"bad-{KEY}"}}
    ).encode()
    error = error_from_response(response(401, body, **{"X-Request-Id": KEY}), api_key=KEY)
    assert KEY not in str(error)
    assert KEY not in repr(error.__dict__)
    assert "[REDACTED]" in str(error)


def test_long_server_messages_are_truncated() -> None:
    """A megabyte error message does not become a megabyte exception."""
    body = json.dumps({"error": {"message": "x" * 1_000_000}}).encode()
    assert len(str(error_from_response(response(400, body)))) < 1000
