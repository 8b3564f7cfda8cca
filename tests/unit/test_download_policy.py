"""Which URLs may be fetched, and the small parsers the download loop relies on."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omniflash_prefect import OmniFlashClient, VideoTask
from omniflash_prefect.core.models import validate_task_id
from omniflash_prefect.core.protocol import (
    check_download_url,
    is_forbidden_address,
    is_loopback_host,
    parse_content_range,
    parse_task_response,
    sniff_image_type,
    task_path,
)
from omniflash_prefect.errors import (
    InvalidTaskIdError,
    UnexpectedResponseError,
    UnsafeDownloadURLError,
)
from omniflash_prefect.video.archive import video_key


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


# -- a hostile provider: URLs, addresses, task ids and storage keys ------------------------------


DANGEROUS_URLS = [
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "file://localhost/etc/passwd",
    "ftp://127.0.0.1/v.mp4",
    "gopher://127.0.0.1:70/_x",
    "data:video/mp4;base64,AAAAIGZ0eXBpc29t",
    "javascript:alert(document.cookie)",
    "dict://127.0.0.1:11211/stat",
    "ws://127.0.0.1:8000/v.mp4",
    "//cdn.example.com/v.mp4",
    "cdn.example.com/v.mp4",
    "v.mp4",
    "",
]


@pytest.mark.parametrize("url", DANGEROUS_URLS)
def test_non_http_and_scheme_less_urls_are_refused(url: str) -> None:
    """file:, ftp:, gopher:, data:, javascript: and other schemes, and scheme-less URLs, are
    never fetched, even on loopback."""
    with pytest.raises(UnsafeDownloadURLError):
        check_download_url(url)


@pytest.mark.parametrize("url", DANGEROUS_URLS)
async def test_refused_urls_are_refused_before_any_lookup_or_connection(
    url: str, tmp_path: Path
) -> None:
    """The client refuses such a URL before resolving or sending anything, and writes nothing."""
    sent: list[httpx.Request] = []
    looked_up: list[str] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=b"\x00\x00\x00\x20ftypisom")

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    destination = tmp_path / "out" / "v.mp4"
    async with OmniFlashClient(
        "k", transport=httpx.MockTransport(transport), resolve=resolve
    ) as client:
        with pytest.raises(UnsafeDownloadURLError):
            await client.download(url, destination)
    assert (sent, looked_up) == ([], [])
    assert not destination.exists()
    assert not destination.with_name("v.mp4.part").exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/",
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.170.2/v2/credentials",
        "https://[fe80::1]/",
        "https://[fe80::1%25eth0]/",
        "https://[::ffff:169.254.169.254]/",
        "https://[::ffff:a9fe:a9fe]/",
        "https://100.100.100.200/latest/meta-data/",
        "https://192.0.0.192/",
        "https://[fd00:ec2::254]/",
        "https://0.0.0.0/",
        "https://[::]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://METADATA.GOOGLE.INTERNAL./x",
        "https://metadata/x",
        "https://user:pass@169.254.169.254/",
    ],
)
def test_link_local_and_metadata_literals_are_refused(url: str) -> None:
    """Cloud metadata endpoints, by address (IPv4, IPv6, IPv4-mapped) or well-known name, are
    refused from the URL alone, whatever the scheme."""
    with pytest.raises(UnsafeDownloadURLError, match="metadata"):
        check_download_url(url)


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("169.254.169.254", True),
        ("169.254.0.1", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("[fe80::1]", True),
        ("::ffff:169.254.169.254", True),
        ("100.100.100.200", True),
        ("192.0.0.192", True),
        ("fd00:ec2::254", True),
        ("0.0.0.0", True),
        ("::", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("100.100.100.201", False),
        ("203.0.113.7", False),
        ("2001:db8::1", False),
        ("metadata.google.internal", False),
        ("not an address", False),
    ],
)
def test_forbidden_addresses(address: str, forbidden: bool) -> None:
    """Link-local, the known metadata endpoints and the unspecified address are forbidden;
    ordinary, private and loopback addresses are not (names are judged once resolved)."""
    assert is_forbidden_address(address) is forbidden


@pytest.mark.parametrize(
    "task_id",
    [
        "../x",
        "..",
        "/abs",
        "a/b",
        "a\\b",
        "a\x00b",
        "x\n",
        "a b",
        "a.b",
        "%2e%2e",
        "tâche",
        "x" * 129,
        "",
        None,
        42,
        b"task_1",
        ["task_1"],
    ],
)
def test_unsafe_task_ids_are_refused(task_id: object) -> None:
    """Anything but 1-128 characters of [A-Za-z0-9_-] is refused, non-strings included."""
    with pytest.raises(InvalidTaskIdError):
        validate_task_id(task_id)


@pytest.mark.parametrize("task_id", ["t", "task_01ABC", "A-b_9", "x" * 128])
def test_safe_task_ids_are_kept(task_id: str) -> None:
    """Ordinary ids, up to 128 characters, pass unchanged."""
    assert validate_task_id(task_id) == task_id


@settings(max_examples=300, deadline=None, database=None)
@given(
    task_id=st.one_of(
        st.text(max_size=140),
        st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True),
        st.sampled_from(["..", "../..", "/etc/passwd", "a/../../b", ".", "~", "a\x00"]),
    ),
    prefix=st.sampled_from(["", "omniflash", "a/b", "/renders/2026/", "x.y-z_1"]),
    completed=st.one_of(st.none(), st.integers(0, 253_402_300_799)),
)
def test_video_keys_never_leave_their_prefix(
    task_id: str, prefix: str, completed: int | None
) -> None:
    """Whatever task id a server sends, the archive key is ``<prefix>/<day>/<id>.mp4`` with no
    climbing segment, or the id is refused."""
    task = VideoTask.model_construct(id=task_id, status="completed", completed=completed)
    try:
        key = video_key(prefix, task)
    except InvalidTaskIdError:
        return
    head = [part for part in prefix.split("/") if part]
    parts = key.split("/")
    assert posixpath.normpath(key) == key
    assert not key.startswith("/")
    assert ".." not in parts
    assert parts[:-2] == head
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", parts[-2])
    assert parts[-1] == f"{task_id}.mp4"


@pytest.mark.parametrize(
    "fields",
    [{"completed": 1e20}, {"completed": -1e12}, {"created": 10**15}],
    ids=["completed-1e20", "completed-negative", "created-1e15"],
)
def test_out_of_range_timestamps_never_break_the_storage_key(fields: dict[str, float]) -> None:
    """A completed task whose timestamp no calendar holds still gets a key under the prefix (or
    the answer is refused as unreadable), never a raw OverflowError/ValueError."""
    body = {"code": 200, "data": {"id": "task_01ABC", "status": "completed", **fields}}
    try:
        task = parse_task_response(body)
    except UnexpectedResponseError:
        return
    key = video_key("omniflash", task)
    assert key.startswith("omniflash/")
    assert key.endswith("/task_01ABC.mp4")
