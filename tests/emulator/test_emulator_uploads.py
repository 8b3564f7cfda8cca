"""The image upload endpoint: accepted types by magic bytes, size limit, and serving back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.emulator.uploads import MAX_IMAGE_BYTES, sniff_image

from .helpers import START, error_code, http_client, tiny_png

UPLOAD = "/v1/uploads/images"


async def test_png_upload_is_stored_and_served_back(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """A PNG is accepted with the provider's answer fields, and its URL serves the same bytes."""
    png = tiny_png()
    response = await client.post(
        UPLOAD, files={"file": ("../../holiday photo.png", png, "application/octet-stream")}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["filename"] == "holiday photo.png"
    assert answer["content_type"] == "image/png"
    assert answer["bytes"] == len(png)
    assert answer["created_at"] == int(START)
    assert answer["url"].startswith(f"{emulator.base_url}/uploads/img_")
    assert answer["url"].endswith(".png")

    async with http_client() as anonymous:  # like a public URL: no key needed
        served = await anonymous.get(answer["url"])
    assert served.status_code == 200
    assert served.content == png
    assert served.headers["content-type"] == "image/png"
    assert emulator.state.snapshot()["uploads"][0]["bytes"] == len(png)


async def test_uploaded_url_can_be_used_as_image_url(client: httpx.AsyncClient) -> None:
    """The upload URL is a valid image_urls entry for a submit (the upload's purpose)."""
    url = (await client.post(UPLOAD, files={"file": ("a.png", tiny_png())})).json()["url"]
    response = await client.post(
        "/v1/videos/generations",
        json={"model": "Omni-Flash-Ext", "prompt": "animate it", "image_urls": [url]},
    )
    assert response.status_code == 200


async def test_text_file_is_refused(shared_client: httpx.AsyncClient) -> None:
    """A file that is not JPEG/PNG/WebP/GIF is refused, whatever type the client claims."""
    response = await shared_client.post(
        UPLOAD, files={"file": ("notes.png", b"just some text\n", "image/png")}
    )
    assert response.status_code == 400
    assert error_code(response) == "invalid_request_error"


@pytest.mark.parametrize(
    ("request_kwargs"),
    [
        {"files": {"image": ("a.png", b"\x89PNG\r\n\x1a\n")}},
        {"json": {"file": "a.png"}},
        {"content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
    ],
)
async def test_upload_needs_a_multipart_file_field(
    shared_client: httpx.AsyncClient, request_kwargs: dict[str, Any]
) -> None:
    """Without a multipart ``file`` field the upload is refused as invalid_request_error."""
    response = await shared_client.post(UPLOAD, **request_kwargs)
    assert response.status_code == 400
    assert error_code(response) == "invalid_request_error"


async def test_image_of_exactly_the_limit_is_accepted(shared_client: httpx.AsyncClient) -> None:
    """An image of exactly 20 MB (MiB) is within the limit."""
    image = tiny_png().ljust(MAX_IMAGE_BYTES, b"\x00")
    response = await shared_client.post(UPLOAD, files={"file": ("big.png", image)})
    assert response.status_code == 200
    assert response.json()["bytes"] == MAX_IMAGE_BYTES


@pytest.mark.parametrize("extra", [1, 1024 * 1024])
async def test_image_over_the_limit_is_413(
    shared_emulator: EmulatorServer, shared_client: httpx.AsyncClient, extra: int
) -> None:
    """An image over 20 MB answers 413, whether just over or far over the limit."""
    uploads = len(shared_emulator.state.snapshot()["uploads"])
    image = tiny_png().ljust(MAX_IMAGE_BYTES + extra, b"\x00")
    response = await shared_client.post(UPLOAD, files={"file": ("big.png", image)})
    assert response.status_code == 413
    assert error_code(response) == "invalid_request_error"
    assert len(shared_emulator.state.snapshot()["uploads"]) == uploads


async def test_unknown_upload_is_404(shared_client: httpx.AsyncClient) -> None:
    """A name that was never uploaded is not found."""
    response = await shared_client.get("/uploads/img_nothing.png")
    assert response.status_code == 404
    assert "<Code>NoSuchKey</Code>" in response.text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ("image/jpeg", "jpg")),
        (b"\x89PNG\r\n\x1a\n\x00\x00", ("image/png", "png")),
        (b"GIF87a\x01\x00", ("image/gif", "gif")),
        (b"GIF89a\x01\x00", ("image/gif", "gif")),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", ("image/webp", "webp")),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"%PDF-1.7", None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"", None),
    ],
)
def test_sniff_image(data: bytes, expected: tuple[str, str] | None) -> None:
    """The image type comes from the magic bytes; other formats are not images here."""
    assert sniff_image(data) == expected
