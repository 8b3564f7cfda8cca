"""The wire protocol, without I/O: paths, answer parsing, error mapping and the download URL policy.

Everything here takes bytes, headers or decoded JSON and returns models or errors, so every shape
the provider (or a broken gateway) can answer is unit-tested without a network. The async client
calls these and does nothing clever itself.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import platform
from collections.abc import Mapping
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from omniflash_prefect.core.models import Balance, UploadedImage, VideoTask, validate_task_id
from omniflash_prefect.core.retry import parse_retry_after
from omniflash_prefect.errors import (
    APIError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
    UnsafeDownloadURLError,
    redact,
)

SUBMIT_PATH: Final = "/v1/videos/generations"
BALANCE_PATH: Final = "/v1/balance"
ACCOUNT_BALANCE_PATH: Final = "/v1/user/balance"
UPLOAD_IMAGE_PATH: Final = "/v1/uploads/images"
MAX_IMAGE_UPLOAD_BYTES: Final = 20 * 1024 * 1024

_MAX_SERVER_TEXT: Final = 500
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})
#: Cloud instance-metadata endpoints outside the link-local ranges (which are refused whole):
#: Alibaba Cloud, Oracle Cloud, and AWS's IPv6 endpoint.
_METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a) for a in ("100.100.100.200", "192.0.0.192", "fd00:ec2::254")
)
#: Names that point at metadata services inside clouds, refused before any lookup.
_METADATA_NAMES: Final = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data"}
)

_ModelT = TypeVar("_ModelT", bound=BaseModel)


def task_path(task_id: str) -> str:
    """The status path of a task; the id is validated before it is put in a URL."""
    return f"/v1/tasks/{validate_task_id(task_id)}"


@functools.cache
def package_version() -> str:
    """This package's installed version, or ``0+unknown`` when run from a bare source tree
    (read once: the metadata lookup costs milliseconds, and every client sends it)."""
    try:
        return version("omniflash-prefect")
    except PackageNotFoundError:
        return "0+unknown"


def user_agent(http_library: str) -> str:
    """The ``User-Agent`` sent with every call, naming the package so the provider can tell it."""
    return (
        f"omniflash-prefect/{package_version()} {http_library} python/{platform.python_version()}"
    )


class HTTPAnswer(Protocol):
    """What this module reads of an HTTP answer (an ``HTTPAnswer`` is one), so parsing needs
    no network library."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


def decode_json(response: HTTPAnswer) -> Any:
    """The JSON body of a successful answer; a non-JSON body is an unexpected answer."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        raise UnexpectedResponseError(
            f"the API answered HTTP {response.status_code} with a body that is not JSON "
            f"({_describe_body(response)})",
            status_code=response.status_code,
        ) from None


def _describe_body(response: HTTPAnswer) -> str:
    content_type = response.headers.get("content-type", "no content type")
    return f"{content_type}, {len(response.content)} bytes"


def _unwrap(body: Any, *, api_key: str | None) -> Any:
    """The ``data`` of a ``{"code": 200, "data": ...}`` envelope.

    Some gateways answer HTTP 200 with an error inside (``code`` != 200): that becomes the same
    error an HTTP answer with that status would.
    """
    if not isinstance(body, Mapping):
        raise UnexpectedResponseError(
            f"the API answered with {type(body).__name__} where an object was expected",
            status_code=200,
        )
    code = body.get("code", 200)
    if isinstance(code, int) and not isinstance(code, bool) and code != 200:
        error_code, message = _error_fields(body)
        raise error_for_status(
            code if 400 <= code < 600 else 502,
            error_code=error_code,
            message=message,
            api_key=api_key,
        )
    if "data" not in body:
        raise UnexpectedResponseError("the API answer has no 'data'", status_code=200)
    return body["data"]


def parse_submit_response(body: Any, *, api_key: str | None = None) -> str:
    """The task id of a submit answer: ``data[0].task_id``, ``data.task_id`` or ``data.id``."""
    data = _unwrap(body, api_key=api_key)
    if isinstance(data, list) and data:
        data = data[0]
    task_id = None
    if isinstance(data, Mapping):
        task_id = data.get("task_id", data.get("id"))
    if task_id is None:
        raise UnexpectedResponseError("the submit answer holds no task id", status_code=200)
    return validate_task_id(task_id)


def parse_task_response(body: Any, *, api_key: str | None = None) -> VideoTask:
    """A :class:`VideoTask` from a status answer, or :class:`UnexpectedResponseError`."""
    return _parse_model(VideoTask, _unwrap(body, api_key=api_key), "task status")


def parse_balance_response(body: Any) -> Balance:
    """A :class:`Balance` from ``{"success": true, "remain_balance": ...}``."""
    if isinstance(body, Mapping) and body.get("success") is False:
        raise UnexpectedResponseError(
            f"the balance query failed: {_text(body.get('message')) or 'no reason given'}",
            status_code=200,
        )
    if isinstance(body, Mapping) and "data" in body and "remain_balance" not in body:
        body = body["data"]
    return _parse_model(Balance, body, "balance")


def parse_upload_response(body: Any) -> UploadedImage:
    """An :class:`UploadedImage` from the upload answer (bare or inside ``data``)."""
    if isinstance(body, Mapping) and "url" not in body and isinstance(body.get("data"), Mapping):
        body = body["data"]
    return _parse_model(UploadedImage, body, "image upload")


def _parse_model(model: type[_ModelT], data: Any, what: str) -> _ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()[:3]
        )
        raise UnexpectedResponseError(
            f"the {what} answer has an unexpected shape ({problems})", status_code=200
        ) from None


def error_from_response(response: HTTPAnswer, *, api_key: str | None = None) -> APIError:
    """Map an HTTP error answer to its :class:`APIError` leaf.

    The error body's shape is undocumented, and gateways send HTML or empty bodies, so the HTTP
    status decides the leaf first; the ``code``/``type`` string and the message are taken from a
    JSON body when there is one, in any of the shapes seen from this provider family.
    """
    error_code, message = _read_error_body(response)
    return error_for_status(
        response.status_code,
        error_code=error_code,
        message=message,
        api_key=api_key,
        request_id=response.headers.get("x-request-id") or response.headers.get("request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def error_for_status(
    status: int,
    *,
    error_code: str | None,
    message: str | None,
    api_key: str | None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIError:
    """The leaf for an HTTP status; every server-given text is scrubbed of the API key."""
    text = redact(message or _status_phrase(status), api_key)
    kwargs: dict[str, Any] = {
        "status_code": status,
        "code": redact(error_code, api_key) if error_code else None,
        "request_id": redact(request_id, api_key) if request_id else None,
    }
    if status in (400, 422):
        return InvalidRequestError(
            f"the API refused the request: {text}; fix the request", **kwargs
        )
    if status in (401, 403):
        return AuthenticationError(
            f"the API key was refused: {text}; check the key in the credentials block "
            "or OMNIFLASH_API_KEY",
            **kwargs,
        )
    if status == 402:
        return PaymentRequiredError(
            f"the balance is too low: {text}; top up the account, then retry", **kwargs
        )
    if status == 404:
        return NotFoundError(f"not found: {text}", **kwargs)
    if status == 429:
        return RateLimitedError(
            f"rate limited: {text}; lower the concurrency or retry later",
            retry_after=retry_after,
            **kwargs,
        )
    if status >= 500:
        return ServerError(f"the provider failed: {text}; retry later", **kwargs)
    return UnexpectedResponseError(f"unexpected answer: {text}", **kwargs)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _read_error_body(response: HTTPAnswer) -> tuple[str | None, str | None]:
    """An error code and message from any JSON error shape; ``(None, None)`` for anything else."""
    try:
        body = json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(body, Mapping):
        return None, None
    return _error_fields(body)


def _error_fields(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    error = body.get("error")
    source: Mapping[str, Any] = error if isinstance(error, Mapping) else body
    code = _text(source.get("code")) or _text(source.get("type"))
    message = _text(source.get("message")) or _text(source.get("msg"))
    if message is None and isinstance(error, str):
        message = _text(error)
    return code, message


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()[:_MAX_SERVER_TEXT]
    return None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_forbidden_address(address: str) -> bool:
    """True for an IP address a video must never be fetched from: link-local (169.254.0.0/16,
    where cloud metadata services answer, and fe80::/10), the other known metadata endpoints,
    and the unspecified address. IPv4-mapped IPv6 addresses are judged by their IPv4 part."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or ip.is_unspecified or ip in _METADATA_ADDRESSES


def check_download_url(url: str) -> str:
    """Return ``url`` if this package may fetch a video from it, else raise.

    Only ``https`` is fetched, except plain ``http`` from loopback hosts so local emulators work;
    every other scheme (``file:``, ``ftp:``...), host-less URLs, metadata host names and
    forbidden literal addresses (:func:`is_forbidden_address`) are refused. Names are checked
    again once resolved, and the address actually connected to, by the client.
    """
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise UnsafeDownloadURLError(
            f"refusing to download from a URL with spaces or control characters: {url!r}"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except (ValueError, UnicodeError):
        raise UnsafeDownloadURLError(f"refusing to download from a malformed URL {url!r}") from None
    scheme = parts.scheme.lower()
    if not host:
        raise UnsafeDownloadURLError(f"refusing to download from a URL without a host: {url!r}")
    if is_forbidden_address(host) or host.rstrip(".").lower() in _METADATA_NAMES:
        raise UnsafeDownloadURLError(
            f"refusing to download from {host}: a link-local or cloud metadata address"
        )
    if scheme == "https" or (scheme == "http" and is_loopback_host(host)):
        return url
    raise UnsafeDownloadURLError(
        f"refusing to download over {scheme or 'no scheme'!s} from {host}: only https "
        "(or http on loopback, for local emulators) is allowed"
    )


def sniff_image_type(head: bytes) -> str | None:
    """The MIME type of an image the upload endpoint accepts, from its first bytes."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``(first, last, total)`` from ``Content-Range: bytes first-last/total``; None if unreadable.

    ``total`` is None for ``/*``. Used to check that a resumed download continues where it broke.
    """
    if not value:
        return None
    unit, _, spec = value.strip().partition(" ")
    if unit.lower() != "bytes":
        return None
    span, _, total_text = spec.partition("/")
    first_text, _, last_text = span.partition("-")
    try:
        first, last = int(first_text), int(last_text)
        total = None if total_text.strip() == "*" else int(total_text)
    except ValueError:
        return None
    if first < 0 or last < first or (total is not None and total <= last):
        return None
    return first, last, total
