"""Which URLs may be fetched, and the small parsers the download loop relies on."""

from __future__ import annotations

import pytest

from omniflash_prefect import InvalidTaskIdError, UnsafeDownloadURLError
from omniflash_prefect.protocol import (
    check_download_url,
    is_loopback_host,
    parse_content_range,
    sniff_image_type,
    task_path,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/v.mp4?sig=1",
        "HTTPS://cdn.example.com/v.mp4",
        "http://127.0.0.1:8000/files/v.mp4",
        "http://127.5.6.7/v.mp4",
        "http://localhost:9/v.mp4",
        "http://[::1]:8000/v.mp4",
    ],
)
def test_https_and_loopback_http_are_allowed(url: str) -> None:
    """https anywhere; plain http only on loopback (local emulators)."""
    assert check_download_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/v.mp4",
        "http://10.0.0.1/v.mp4",
        "file:///etc/passwd",
        "ftp://cdn.example.com/v.mp4",
        "gopher://x/",
        "https:///nohost.mp4",
        "/relative/v.mp4",
        "https://[::1/v.mp4",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    """Other schemes, plain http off loopback and host-less URLs are refused."""
    with pytest.raises(UnsafeDownloadURLError):
        check_download_url(url)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("example.com", False),
        ("10.1.2.3", False),
        ("0.0.0.0", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """Only loopback names and addresses count."""
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"GIF89a....", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7", None),
        (b"", None),
    ],
)
def test_image_types_are_sniffed_from_bytes(head: bytes, kind: str | None) -> None:
    """The upload check trusts the bytes, not the file name."""
    assert sniff_image_type(head) == kind


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("bytes 100-199/1000", (100, 199, 1000)),
        ("bytes 0-0/*", (0, 0, None)),
        ("bytes 5-4/10", None),
        ("bytes 5-10/10", None),
        ("items 0-1/2", None),
        ("bytes x-y/z", None),
        (None, None),
    ],
)
def test_content_range(header: str | None, parsed: tuple[int, int, int | None] | None) -> None:
    """Content-Range is parsed strictly; nonsense gives None."""
    assert parse_content_range(header) == parsed


def test_task_path_validates_the_id() -> None:
    """A task id never reaches a URL path unchecked."""
    assert task_path("task_01ABC") == "/v1/tasks/task_01ABC"
    with pytest.raises(InvalidTaskIdError):
        task_path("../balance")
