"""Reading the image upload: the ``file`` part of a multipart body, and what image it really is.

python-multipart is not a dependency, and the emulator only needs one field, so the body is
parsed with the standard library's MIME parser (``email``), which handles binary parts once the
request's Content-Type header is put in front of the body. The image type is taken from the
file's magic bytes, not from what the client claims, as the provider accepts only JPEG, PNG,
WebP and GIF.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import PurePosixPath

from .errors import ApiError

#: The provider's documented limit ("up to 20 MB"), taken as MiB.
MAX_IMAGE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class ImageFile:
    """The uploaded file: its client-side name, detected type and bytes."""

    filename: str
    content_type: str
    extension: str
    data: bytes


def sniff_image(data: bytes) -> tuple[str, str] | None:
    """``(content_type, extension)`` from the magic bytes, or None if not an accepted image."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif", "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def _file_part(content_type: str, body: bytes) -> EmailMessage:
    """The part of a multipart/form-data body whose field name is ``file``."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(400, "invalid_request_error", "expected a multipart/form-data body")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if isinstance(message, EmailMessage) and message.is_multipart():
        for part in message.iter_parts():
            if (
                isinstance(part, EmailMessage)
                and part.get_param("name", header="content-disposition") == "file"
            ):
                return part
    raise ApiError(400, "invalid_request_error", "multipart field 'file' is missing")


def read_image_upload(content_type: str, body: bytes) -> ImageFile:
    """Extract and check the ``file`` field; ``ApiError`` 400 (not an image) or 413 (too big)."""
    part = _file_part(content_type, body)
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError(
            413,
            "invalid_request_error",
            f"file is {len(data)} bytes, larger than the {MAX_IMAGE_BYTES}-byte (20 MB) limit",
        )
    kind = sniff_image(data)
    if kind is None:
        raise ApiError(400, "invalid_request_error", "file is not a JPEG, PNG, WebP or GIF image")
    content_type_found, extension = kind
    client_name = PurePosixPath((part.get_filename() or "").replace("\\", "/")).name
    return ImageFile(client_name or f"image.{extension}", content_type_found, extension, data)
