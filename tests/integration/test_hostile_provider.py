"""The client against a hostile or broken provider: what it fetches, what it reads, what it keeps.

The client downloads from URLs a remote server chooses and writes them into users' storage,
unattended. Every test here plays a misbehaving server on loopback (``HostileServer``, scripted
byte by byte, or the emulator with a fault switched on) and checks that the client ends in a typed
:class:`OmniFlashError` or a sensible reading, within its deadlines, without leaving a file or a
``.part`` behind. Name resolution is always injected, so no test looks up a real name.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import socket
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from omniflash_prefect import (
    APITimeoutError,
    AuthenticationError,
    DownloadError,
    InvalidTaskIdError,
    NotFoundError,
    OmniFlashClient,
    OmniFlashError,
    PaymentRequiredError,
    PollSchedule,
    PollTimeoutError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    SubmissionOutcomeUnknownError,
    UnexpectedResponseError,
    UnsafeDownloadURLError,
    VideoRequest,
    VideoTask,
    VideoTooLargeError,
    protocol,
)
from omniflash_prefect.client import MAX_API_ANSWER_BYTES, resolve_host
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.tasks import _download_fresh
from tests.support.clock import FakeClock
from tests.support.fast_client import FAST_RETRIES, FAST_SCHEDULE
from tests.support.hostile_server import Exchange, Handler, HostileServer, Reply

KEY = "sk-hostile-provider-test"
TASK_ID = "task_01HOSTILEPROVIDER"
REQUEST = VideoRequest(prompt="a paper lantern drifting over a dark lake")
#: Bytes that are easy to check at any offset (a 251-byte cycle never lines up with 1 MiB).
VIDEO = (bytes(range(251)) * (3 * 1024 * 1024 // 251 + 1))[: 3 * 1024 * 1024]
SMALL_VIDEO = VIDEO[:50_000]
#: A generous bound that only catches an endless wait; never a speed assertion.
ENDLESS = 10.0


class Resolver:
    """An injected resolver: answers from a table and records each lookup.

    A name missing from the table fails the test, so no test ever reaches a real DNS server.
    """

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = {"127.0.0.1": ["127.0.0.1"], **(table or {})}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise AssertionError(f"the client looked up {host!r}, which no test should reach")
        return self.table[host]


def client_for(server: HostileServer, **options: Any) -> OmniFlashClient:
    """A client whose API is ``server``, with fast retries and an injected resolver."""
    options.setdefault("resolve", Resolver())
    options.setdefault("retry_policy", FAST_RETRIES)
    options.setdefault("poll_schedule", FAST_SCHEDULE)
    options.setdefault("download_attempts", 3)
    options.setdefault("timeout", 5.0)
    return OmniFlashClient(KEY, base_url=server.base_url, **options)


def assert_nothing_left(destination: Path) -> None:
    """Neither the file nor its ``.part`` exists, and nothing else was left beside them."""
    assert not destination.exists()
    assert not destination.with_name(destination.name + ".part").exists()
    if destination.parent.exists():
        assert list(destination.parent.iterdir()) == []


def status(**data: Any) -> dict[str, Any]:
    """A status answer for ``TASK_ID`` with ``data`` fields."""
    return {"code": 200, "data": {"id": TASK_ID, **data}}


def completed(*urls: str) -> dict[str, Any]:
    return status(status="completed", progress=100, result={"videos": [{"url": list(urls)}]})


def answer_json(value: Any, status_code: int = 200) -> Handler:
    """A handler answering every request with the same JSON."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.json(value, status_code)

    return handler


def answer_bytes(body: bytes, content_type: str = "application/json", code: int = 200) -> Handler:
    """A handler answering every request with the same raw body."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.send(code, body, content_type=content_type)

    return handler


def answer_in_turn(*answers: Any) -> Handler:
    """JSON answers in order, the last one repeated."""
    served: list[Exchange] = []

    async def handler(exchange: Exchange, reply: Reply) -> None:
        served.append(exchange)
        await reply.json(answers[min(len(served), len(answers)) - 1])

    return handler


def serve_video(body: bytes, content_type: str = "video/mp4") -> Handler:
    """A well-behaved video host: the whole body, or the asked ``Range`` as a 206."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        asked = exchange.headers.get("range")
        if asked is None:
            await reply.send(200, body, content_type=content_type)
            return
        start = int(asked.removeprefix("bytes=").removesuffix("-"))
        content_range = f"bytes {start}-{len(body) - 1}/{len(body)}"
        await reply.send(
            206, body[start:], [("Content-Range", content_range)], content_type=content_type
        )

    return handler


def redirect_to(location: str) -> Handler:
    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.send(302, headers=[("Location", location)])

    return handler


async def refuse_all(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request may be sent, but {request.url} was")


# -- result URLs and redirects ---------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "http://example.com/v.mp4",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/latest/meta-data/",
        "gopher://127.0.0.1:70/_x",
        "ftp://127.0.0.1/v.mp4",
    ],
)
async def test_redirects_outside_the_url_rules_are_refused(location: str, tmp_path: Path) -> None:
    """A redirect to another scheme, plain http off loopback or a metadata address is not
    followed: UnsafeDownloadURLError, no lookup of the new host, nothing written."""
    destination = tmp_path / "out" / "v.mp4"
    resolver = Resolver()
    async with (
        HostileServer(redirect_to(location)) as server,
        client_for(server, resolve=resolver) as client,
    ):
        with pytest.raises(UnsafeDownloadURLError):
            await client.download(server.url("/v.mp4"), destination)
    assert server.paths == ["/v.mp4"]
    assert resolver.lookups == ["127.0.0.1"]
    assert_nothing_left(destination)


async def test_redirect_to_a_name_resolving_to_metadata_is_refused(tmp_path: Path) -> None:
    """Each hop is resolved and checked: a redirect to a name that resolves to 169.254.169.254
    is refused before connecting to it."""
    destination = tmp_path / "out" / "v.mp4"
    resolver = Resolver({"localhost": ["169.254.169.254"]})
    async with HostileServer(serve_video(SMALL_VIDEO)) as target:
        location = f"http://localhost:{target.port}/v.mp4"
        async with (
            HostileServer(redirect_to(location)) as server,
            client_for(server, resolve=resolver) as client,
        ):
            with pytest.raises(UnsafeDownloadURLError, match=r"169\.254\.169\.254"):
                await client.download(server.url("/start"), destination)
    assert resolver.lookups == ["127.0.0.1", "localhost"]
    assert target.connections == 0
    assert_nothing_left(destination)


async def test_redirect_chains_past_the_hop_limit_are_refused(tmp_path: Path) -> None:
    """An endless chain of redirects on the same host ends in DownloadError after the hop limit
    (the first request and 5 redirects), without retrying the chain."""

    async def hop(exchange: Exchange, reply: Reply) -> None:
        number = int(exchange.path.rsplit("/", 1)[-1])
        await reply.send(302, headers=[("Location", f"/hop/{number + 1}")])

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(hop) as server, client_for(server) as client:
        with pytest.raises(DownloadError, match="redirects") as info:
            await client.download(server.url("/hop/0"), destination)
    assert not isinstance(info.value, UnsafeDownloadURLError)
    assert server.paths == [f"/hop/{n}" for n in range(6)]
    assert_nothing_left(destination)


@pytest.mark.parametrize("relative", [True, False], ids=["relative", "absolute"])
async def test_redirects_within_the_rules_are_followed(relative: bool, tmp_path: Path) -> None:
    """A redirect to the same loopback host is followed to the exact bytes, and no hop carries
    the API key."""
    video = serve_video(SMALL_VIDEO)

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if exchange.path == "/v.mp4":
            await video(exchange, reply)
        else:
            prefix = "" if relative else f"http://127.0.0.1:{server.port}"
            await reply.send(301, headers=[("Location", f"{prefix}/v.mp4")])

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        downloaded = await client.download(server.url("/start"), destination)
    assert server.paths == ["/start", "/v.mp4"]
    assert destination.read_bytes() == SMALL_VIDEO
    assert downloaded.sha256 == hashlib.sha256(SMALL_VIDEO).hexdigest()
    assert all("authorization" not in exchange.headers for exchange in server.exchanges)


async def test_a_location_that_is_not_a_url_ends_in_download_error(tmp_path: Path) -> None:
    """A Location header httpx cannot parse (``http://[::1``) ends in DownloadError."""
    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(redirect_to("http://[::1")) as server, client_for(server) as client:
        with pytest.raises(DownloadError):
            await client.download(server.url("/v.mp4"), destination)
    assert_nothing_left(destination)


async def test_a_location_urllib_cannot_split_is_a_download_error(tmp_path: Path) -> None:
    """A Location httpx accepts but urllib cannot split (``http://x]y/``) is a DownloadError,
    not a raw ValueError."""
    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(redirect_to("http://x]y/v.mp4")) as server,
        client_for(server) as client,
    ):
        with pytest.raises(DownloadError):
            await client.download(server.url("/v.mp4"), destination)
    assert_nothing_left(destination)


@pytest.mark.parametrize(
    ("url", "redirect"),
    [
        ("{base}/v\n.mp4", False),
        ("{base}/v\t.mp4", False),
        ("https://xn--a.com/v.mp4", False),
        ("https://0251.0376.0251.0376/latest/meta-data/", False),
        ("https://xn--a.com/v.mp4", True),
    ],
    ids=["newline", "tab", "bad-idna", "octal-ipv4", "redirect-to-bad-idna"],
)
async def test_result_urls_httpx_cannot_build_are_refused(
    url: str, redirect: bool, tmp_path: Path
) -> None:
    """A result URL (or a redirect to one) with a control character, an invalid IDNA label or
    an unparseable IPv4 form is refused with a DownloadError, never looked up or fetched."""
    destination = tmp_path / "out" / "v.mp4"
    handler = redirect_to(url) if redirect else serve_video(SMALL_VIDEO)
    async with HostileServer(handler) as server, client_for(server) as client:
        start = server.url("/start") if redirect else url.format(base=server.base_url)
        with pytest.raises(DownloadError):
            await client.download(start, destination)
    assert server.paths == (["/start"] if redirect else [])
    assert_nothing_left(destination)


# -- where a URL resolves, and where the connection lands --------------------------------------


@pytest.mark.parametrize(
    "addresses",
    [
        ["169.254.169.254"],
        ["::ffff:169.254.169.254"],
        ["127.0.0.1", "169.254.169.254"],
        ["fe80::1%eth0"],
        ["100.100.100.200"],
        ["fd00:ec2::254"],
    ],
)
async def test_a_host_resolving_to_metadata_is_refused_before_any_request(
    addresses: list[str], tmp_path: Path
) -> None:
    """When the resolver says the host is (also) a link-local or metadata address, the download
    is refused before the server sees a connection."""
    destination = tmp_path / "out" / "v.mp4"
    resolver = Resolver({"127.0.0.1": addresses})
    async with (
        HostileServer(serve_video(SMALL_VIDEO)) as server,
        client_for(server, resolve=resolver) as client,
    ):
        with pytest.raises(UnsafeDownloadURLError, match="resolves to"):
            await client.download(server.url("/v.mp4"), destination)
    assert resolver.lookups == ["127.0.0.1"]
    assert server.connections == 0
    assert server.exchanges == []
    assert_nothing_left(destination)


async def test_the_address_actually_connected_to_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the connection lands on a forbidden address although the resolver vouched for a safe
    one (DNS rebinding), the answer is dropped: UnsafeDownloadURLError and nothing written."""
    original = protocol.is_forbidden_address

    def loopback_is_forbidden(address: str) -> bool:
        try:
            if ipaddress.ip_address(address.strip("[]")).is_loopback:
                return True
        except ValueError:
            pass
        return original(address)

    monkeypatch.setattr(protocol, "is_forbidden_address", loopback_is_forbidden)
    destination = tmp_path / "out" / "v.mp4"
    resolver = Resolver({"localhost": ["203.0.113.7"]})
    async with (
        HostileServer(serve_video(SMALL_VIDEO)) as server,
        # A real transport (no ``transport=``), so the peer address is known.
        OmniFlashClient(KEY, base_url=server.base_url, resolve=resolver) as client,
    ):
        with pytest.raises(UnsafeDownloadURLError, match=r"resolves to 127\.0\.0\.1"):
            await client.download(f"http://localhost:{server.port}/v.mp4", destination)
    assert resolver.lookups == ["localhost"]
    assert_nothing_left(destination)


@pytest.mark.parametrize("host", ["2852039166", "0xa9fea9fe"])
async def test_numeric_forms_of_the_metadata_address_are_refused_once_resolved(
    host: str, tmp_path: Path
) -> None:
    """``https://2852039166/`` is not an address to the literal check, but the default resolver
    turns it into 169.254.169.254, so it is refused before any request."""
    try:
        socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pytest.skip("this platform's resolver does not read the numeric form without DNS")
    url = f"https://{host}/latest/meta-data/"
    assert protocol.check_download_url(url) == url
    destination = tmp_path / "out" / "v.mp4"
    async with OmniFlashClient(
        KEY, transport=httpx.MockTransport(refuse_all), resolve=resolve_host
    ) as client:
        with pytest.raises(UnsafeDownloadURLError, match=r"169\.254\.169\.254"):
            await client.download(url, destination)
    assert_nothing_left(destination)


# -- task ids --------------------------------------------------------------------------------


async def test_hostile_task_ids_are_refused_before_any_request() -> None:
    """A task id that could escape a URL path never reaches the server."""
    async with (
        HostileServer(answer_json(status(status="pending"))) as server,
        client_for(server) as client,
    ):
        for task_id in ["../balance", "/v1/balance", "a/b", "x\x00", "x" * 129, ""]:
            with pytest.raises(InvalidTaskIdError):
                await client.get_task(task_id)
            with pytest.raises(InvalidTaskIdError):
                await client.wait(task_id, max_wait_seconds=1)
    assert server.exchanges == []


@pytest.mark.parametrize(
    "hostile_id", ["../../etc/passwd", "/abs", "a/b", "x\x00y", "x" * 129, "", 42, None, ["a"]]
)
async def test_a_status_answer_with_a_hostile_task_id_is_refused(hostile_id: Any) -> None:
    """A completed status whose id could reach a path or a storage key is an
    UnexpectedResponseError, never a task."""
    body = {"code": 200, "data": {"id": hostile_id, "status": "completed", "result": {}}}
    async with HostileServer(answer_json(body)) as server, client_for(server) as client:
        with pytest.raises(UnexpectedResponseError):
            await client.get_task(TASK_ID)


@pytest.mark.parametrize("hostile_id", ["../x", "/abs", "a/b", "x\x00", "x" * 129, "", 7])
async def test_a_submit_answer_with_a_hostile_task_id_is_not_taken(hostile_id: Any) -> None:
    """A submit answered with an unsafe task id: one POST, SubmissionOutcomeUnknownError whose
    cause is InvalidTaskIdError (the request may have been paid, so it is never resent)."""
    body = {"code": 200, "data": [{"task_id": hostile_id, "status": "submitted"}]}
    async with HostileServer(answer_json(body)) as server, client_for(server) as client:
        with pytest.raises(SubmissionOutcomeUnknownError) as info:
            await client.submit(REQUEST)
    assert isinstance(info.value.cause, InvalidTaskIdError)
    assert server.paths == ["/v1/videos/generations"]
    assert server.exchanges[0].headers["authorization"] == f"Bearer {KEY}"


# -- bodies of API answers -------------------------------------------------------------------


async def test_a_status_answer_of_megabytes_is_refused() -> None:
    """5 MB of valid-looking JSON with a Content-Length: UnexpectedResponseError at the cap,
    asked once (not retried)."""
    padding = "x" * (5 * 1024 * 1024)
    body = json.dumps(status(status="processing", padding=padding)).encode()
    async with HostileServer(answer_bytes(body)) as server, client_for(server) as client:
        with pytest.raises(UnexpectedResponseError, match=str(MAX_API_ANSWER_BYTES)):
            await client.get_task(TASK_ID)
    assert len(server.exchanges) == 1


async def test_an_endless_chunked_answer_is_cut_off_at_the_cap() -> None:
    """A chunked answer with no length that never ends: UnexpectedResponseError, and the client
    hangs up instead of reading on (the server sees it leave mid-stream)."""

    async def endless(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="application/json", chunked=True)
        await reply.chunk(b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "pad": "')
        while True:
            await reply.chunk(b"x" * 65536)

    async with HostileServer(endless) as server, client_for(server) as client:
        async with asyncio.timeout(ENDLESS):
            with pytest.raises(UnexpectedResponseError, match=str(MAX_API_ANSWER_BYTES)):
                await client.get_task(TASK_ID)
        await server.exchanges[0].finished()
    assert server.exchanges[0].client_left
    assert len(server.exchanges) == 1


async def test_a_compressed_answer_that_inflates_past_the_cap_is_refused() -> None:
    """A gzip answer of 50 KB that inflates to 50 MB is refused at the cap like a large one."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "pad": "'
    bomb = packer.compress(head + b"x" * (50 * 1024 * 1024)) + packer.flush()

    async def handler(exchange: Exchange, reply: Reply) -> None:
        headers = [("Content-Encoding", "gzip")]
        await reply.send(200, bomb, headers, content_type="application/json")

    async with HostileServer(handler) as server, client_for(server) as client:
        with pytest.raises(UnexpectedResponseError, match=str(MAX_API_ANSWER_BYTES)):
            await client.get_task(TASK_ID)


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html", "not JSON"),
        (b"", "application/json", "not JSON"),
        (b'{"code": 200, "data": {"id": "', "application/json", "not JSON"),
        (b"\xff\xfe\x00{}", "application/json", "not JSON"),
        (b"[1, 2, 3]", "application/json", "list"),
        (b'"ok"', "application/json", "str"),
        (b"NaN", "application/json", "float"),
        (b'{"code": 200}', "application/json", "no 'data'"),
        (b'{"code": 200, "data": "nope"}', "application/json", "unexpected shape"),
        (b'{"code": 200, "data": [{"id": "x"}]}', "application/json", "unexpected shape"),
        (b'{"code": 200, "data": {"status": "completed"}}', "application/json", "id"),
        (
            b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'"}}',
            "application/json",
            "status",
        ),
        (
            b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "status": null}}',
            "application/json",
            "status",
        ),
        (
            b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "status": 5}}',
            "application/json",
            "status",
        ),
        (
            b'{"code": 200, "data": {"id": "task_other", "status": "completed"}}',
            "application/json",
            "task_other",
        ),
    ],
    ids=[
        "html",
        "empty",
        "truncated",
        "not-utf8",
        "list",
        "string",
        "nan",
        "no-data",
        "data-string",
        "data-list",
        "no-id",
        "no-status",
        "null-status",
        "number-status",
        "other-task",
    ],
)
async def test_unreadable_status_answers_are_typed_errors(
    body: bytes, content_type: str, match: str
) -> None:
    """Whatever the body of an HTTP 200, get_task raises UnexpectedResponseError saying why,
    never a KeyError, TypeError or AttributeError."""
    async with (
        HostileServer(answer_bytes(body, content_type)) as server,
        client_for(server) as client,
    ):
        with pytest.raises(UnexpectedResponseError, match=match):
            await client.get_task(TASK_ID)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (402, PaymentRequiredError),
        (404, NotFoundError),
        (429, RateLimitedError),
        (500, ServerError),
        (999, ServerError),
    ],
)
async def test_an_error_code_inside_an_http_200_maps_like_its_status(
    code: int, error: type[OmniFlashError]
) -> None:
    """``{"code": 401, ...}`` in an HTTP 200 is an AuthenticationError, 429 a RateLimitedError,
    and so on; a code outside 4xx/5xx is a gateway failure."""
    body = {"code": code, "message": "from inside the envelope", "data": None}
    async with HostileServer(answer_json(body)) as server, client_for(server) as client:
        with pytest.raises(error, match="from inside the envelope"):
            await client.get_task(TASK_ID)


async def test_polling_survives_a_429_inside_an_http_200_but_stops_on_a_401() -> None:
    """While polling, a rate limit inside the envelope is waited out; a refused key is not."""
    done = completed("https://cdn.test/v.mp4")
    limited = {"code": 429, "message": "slow down"}
    async with (
        HostileServer(answer_in_turn(limited, limited, done)) as server,
        client_for(server) as client,
    ):
        task = await client.wait(TASK_ID, first_poll_delay=0)
    assert task.video_url == "https://cdn.test/v.mp4"
    assert len(server.exchanges) == 3

    refused = {"code": 401, "message": "key revoked"}
    async with HostileServer(answer_json(refused)) as server, client_for(server) as client:
        with pytest.raises(AuthenticationError):
            await client.wait(TASK_ID, first_poll_delay=0)
    assert len(server.exchanges) == 1


async def test_odd_progress_values_are_read_sensibly() -> None:
    """Progress going backwards, above 100, negative, a string or junk is clamped or dropped,
    and the poll goes on to the completed task."""
    answers = [
        status(status="processing", progress=50),
        status(status="processing", progress=20),
        status(status="processing", progress=150),
        status(status="processing", progress=-5),
        status(status="processing", progress="abc"),
        status(status="processing", progress="60"),
        status(status="processing", progress=[1]),
        completed("https://cdn.test/v.mp4"),
    ]
    seen: list[int | None] = []

    async def on_update(task: VideoTask) -> None:
        seen.append(task.progress)

    async with HostileServer(answer_in_turn(*answers)) as server, client_for(server) as client:
        task = await client.wait(TASK_ID, first_poll_delay=0, on_update=on_update)
    assert task.status == "completed"
    assert seen == [50, 20, 100, 0, None, 60, None, 100]


@pytest.mark.parametrize(
    "data",
    [
        b'"progress": Infinity, "result": {"videos": [{"url": ["https://cdn.test/v.mp4"]}]}',
        b'"progress": 1e999, "result": {"videos": [{"url": ["https://cdn.test/v.mp4"]}]}',
        b'"result": {"videos": [{"url": ["https://cdn.test/v.mp4"], "expires_at": 1e999}]}',
    ],
    ids=["progress-Infinity", "progress-1e999", "expires_at-1e999"],
)
async def test_infinite_numbers_in_a_status_answer_are_read_sensibly(data: bytes) -> None:
    """An infinite progress or expiry is junk read as 100 or None: the completed video is still
    noticed, never an OverflowError out of the poll loop."""
    body = b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "status": "completed", '
    async with (
        HostileServer(answer_bytes(body + data + b"}}")) as server,
        client_for(server) as client,
    ):
        task = await client.wait(TASK_ID, first_poll_delay=0)
    assert task.video_url == "https://cdn.test/v.mp4"
    assert task.progress in (None, 100)
    assert task.video_expires_at is None


@pytest.mark.parametrize("code", [200, 400])
async def test_deeply_nested_json_is_an_unreadable_answer(code: int) -> None:
    """100,000 nested arrays (200 KB, under the size cap) are an unreadable answer: a typed
    APIError, never a RecursionError."""
    body = b"[" * 100_000 + b"]" * 100_000
    async with (
        HostileServer(answer_bytes(body, code=code)) as server,
        client_for(server) as client,
    ):
        with pytest.raises(UnexpectedResponseError if code == 200 else OmniFlashError):
            await client.get_task(TASK_ID)


@pytest.mark.parametrize(
    "result",
    [
        None,
        {},
        {"videos": []},
        {"videos": [{"url": []}]},
        {"videos": [{"url": None}]},
        {"videos": [{"url": 5}]},
        {"videos": [{"url": ["", 3, None]}]},
        {"videos": "nope"},
    ],
)
async def test_completed_without_a_video_url_is_a_download_error(
    result: dict[str, Any] | None, tmp_path: Path
) -> None:
    """A completed task with no usable URL reads with ``video_url`` None; archiving it reads the
    task once more, then raises DownloadError (nothing staged)."""
    body = status(status="completed", progress=100)
    if result is not None:
        body["data"]["result"] = result
    staged = tmp_path / "staged.mp4"
    async with HostileServer(answer_json(body)) as server, client_for(server) as client:
        task = await client.get_task(TASK_ID)
        assert task.phase == "completed"
        assert task.video_url is None
        with pytest.raises(DownloadError, match="no video URL"):
            await _download_fresh(client, task, staged, logging.getLogger("test"))
    assert server.paths == [f"/v1/tasks/{TASK_ID}"] * 2
    assert not staged.exists()


async def test_of_two_videos_the_first_url_of_the_first_video_with_one_is_archived(
    tmp_path: Path,
) -> None:
    """With several videos (and several URLs), the first URL of the first video that has one is
    downloaded; the others are never fetched."""
    video = serve_video(SMALL_VIDEO)

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if exchange.path.startswith("/v1/tasks/"):
            first, second, third = (server.url(f"/{n}.mp4") for n in ("first", "second", "third"))
            result = {"videos": [{"url": []}, {"url": [first, second]}, {"url": third}]}
            await reply.json(status(status="completed", result=result))
        else:
            await video(exchange, reply)

    staged = tmp_path / "staged.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        task = await client.get_task(TASK_ID)
        source, downloaded = await _download_fresh(client, task, staged, logging.getLogger("test"))
    assert source.video_url == server.url("/first.mp4")
    assert len(source.videos) == 3
    assert server.paths == [f"/v1/tasks/{TASK_ID}", "/first.mp4"]
    assert downloaded.sha256 == hashlib.sha256(SMALL_VIDEO).hexdigest()


async def test_polling_a_server_that_only_answers_garbage_ends_at_the_deadline(
    fake_clock: FakeClock,
) -> None:
    """Garbage on every poll (wrong shapes, hostile or foreign ids claiming completion, 5xx, error
    codes in the envelope) neither ends nor extends the wait: PollTimeoutError at the deadline."""
    hostile_done = {
        "code": 200,
        "data": {"id": "../../x", "status": "completed", "result": {"videos": [{"url": "x"}]}},
    }
    other_done = {"code": 200, "data": {"id": "task_other", "status": "completed"}}
    garbage: list[tuple[int, str, bytes]] = [
        (200, "text/html", b"<html>maintenance</html>"),
        (200, "application/json", b"[]"),
        (200, "application/json", b'"ok"'),
        (200, "application/json", b'{"code": 200}'),
        (200, "application/json", b'{"code": 200, "data": 7}'),
        (200, "application/json", json.dumps(hostile_done).encode()),
        (200, "application/json", json.dumps(other_done).encode()),
        (200, "application/json", b'{"code": 200, "data": {'),
        (200, "application/json", b""),
        (502, "text/html", b"<html>Bad Gateway</html>"),
        (200, "application/json", b'{"code": 503, "message": "busy"}'),
        (200, "application/json", b'{"code": 429, "message": "slow"}'),
    ]
    served: list[int] = []

    async def handler(exchange: Exchange, reply: Reply) -> None:
        index = len(served) % len(garbage)
        served.append(index)
        code, content_type, body = garbage[index]
        await reply.send(code, body, content_type=content_type)

    schedule = PollSchedule(
        first_delay_seconds=5, min_interval_seconds=5, max_interval_seconds=10, timeout_seconds=300
    )
    async with (
        HostileServer(handler) as server,
        client_for(
            server,
            poll_schedule=schedule,
            retry_policy=RetryPolicy(max_attempts=2),
            sleep=fake_clock.sleep,
            clock=fake_clock,
        ) as client,
    ):
        with pytest.raises(PollTimeoutError) as info:
            await client.wait(TASK_ID)
    assert info.value.last_status is None
    assert fake_clock.now == pytest.approx(300, abs=10)
    assert set(served) == set(range(len(garbage)))
    assert len(server.exchanges) <= 2 * (300 / 5 + 1)


# -- downloads -------------------------------------------------------------------------------


async def test_bytes_beyond_the_announced_length_are_never_written(tmp_path: Path) -> None:
    """A server that writes more than its Content-Length: the body is the announced bytes (HTTP
    framing), so exactly those are kept and hashed; the surplus never reaches the file."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="video/mp4", content_length=len(SMALL_VIDEO))
        await reply.raw(SMALL_VIDEO + b"SURPLUS" * 10_000)

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        downloaded = await client.download(server.url("/v.mp4"), destination)
    assert destination.read_bytes() == SMALL_VIDEO
    assert (downloaded.size_bytes, downloaded.sha256) == (
        len(SMALL_VIDEO),
        hashlib.sha256(SMALL_VIDEO).hexdigest(),
    )
    assert not destination.with_name("v.mp4.part").exists()


async def test_a_body_longer_than_the_expected_size_is_refused(tmp_path: Path) -> None:
    """A chunked body longer than the size the caller expects: DownloadError, nothing kept."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="video/mp4", chunked=True)
        await reply.chunk(SMALL_VIDEO + b"SURPLUS")
        await reply.last_chunk()

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        with pytest.raises(DownloadError, match="announced"):
            await client.download(server.url("/v.mp4"), destination, expected_size=len(SMALL_VIDEO))
    assert_nothing_left(destination)


async def test_a_body_shorter_than_announced_is_retried_then_refused(tmp_path: Path) -> None:
    """A server that announces N bytes, sends half and closes: each attempt is retried, then
    DownloadError after ``download_attempts``, and nothing is kept."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="video/mp4", content_length=len(SMALL_VIDEO))
        await reply.raw(SMALL_VIDEO[: len(SMALL_VIDEO) // 2])

    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(handler) as server,
        client_for(server, download_attempts=3) as client,
    ):
        with pytest.raises(DownloadError, match="gave up after 3 attempts"):
            await client.download(server.url("/v.mp4"), destination)
    assert len(server.exchanges) == 3
    assert_nothing_left(destination)


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
async def test_a_body_without_a_length_is_downloaded_and_hashed(
    framing: str, tmp_path: Path
) -> None:
    """No Content-Length (chunked in uneven pieces, or read until the server closes): the exact
    bytes are kept and hashed, no ``.part`` remains and the download carries no API key."""
    body = VIDEO[: 1536 * 1024 + 7]

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if framing == "chunked":
            await reply.head(200, content_type="video/mp4", chunked=True)
            offset = 0
            for size in [1, 7, 4096, 65_535, 1024 * 1024]:
                await reply.chunk(body[offset : offset + size])
                offset += size
            await reply.chunk(body[offset:])
            await reply.last_chunk()
        else:
            await reply.head(200, content_type="video/mp4")
            await reply.raw(body)

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        downloaded = await client.download(server.url("/v.mp4"), destination)
    assert destination.read_bytes() == body
    assert downloaded.size_bytes == len(body)
    assert downloaded.sha256 == hashlib.sha256(body).hexdigest()
    assert list(destination.parent.iterdir()) == [destination]
    assert "authorization" not in server.exchanges[0].headers


async def test_a_download_stalling_mid_body_is_resumed(tmp_path: Path) -> None:
    """A server that stalls after 2.5 MiB: the read timeout fires, the download resumes with a
    Range request and the result is byte-exact."""
    stall_at = 5 * 512 * 1024
    video = serve_video(VIDEO)

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if "range" in exchange.headers or len(server.exchanges) > 1:
            await video(exchange, reply)
            return
        await reply.head(200, content_type="video/mp4", content_length=len(VIDEO))
        await reply.raw(VIDEO[:stall_at])
        await reply.stall()

    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(handler) as server,
        client_for(server, timeout=httpx.Timeout(1.0, read=0.3)) as client,
    ):
        downloaded = await client.download(server.url("/v.mp4"), destination)
    assert downloaded.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert destination.read_bytes() == VIDEO
    assert len(server.exchanges) == 2
    resumed_at = int(server.exchanges[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= stall_at
    assert not destination.with_name("v.mp4.part").exists()


async def test_a_server_ignoring_range_after_a_cut_restarts_from_byte_zero(
    tmp_path: Path,
) -> None:
    """The first answer is cut after 1 MiB; the resume asks for a Range but gets the whole file
    as a 200: the client starts over, and the file and hash are the video, not 1 MiB twice."""
    cut_at = 1024 * 1024

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="video/mp4", content_length=len(VIDEO))
        if len(server.exchanges) == 1:
            await reply.raw(VIDEO[:cut_at])  # then the connection closes: a cut transfer
            return
        await reply.raw(VIDEO)

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        downloaded = await client.download(server.url("/v.mp4"), destination)
    assert [e.headers.get("range") for e in server.exchanges] == [None, f"bytes={cut_at}-"]
    assert destination.read_bytes() == VIDEO
    assert (downloaded.size_bytes, downloaded.sha256) == (
        len(VIDEO),
        hashlib.sha256(VIDEO).hexdigest(),
    )
    assert list(destination.parent.iterdir()) == [destination]


async def test_a_download_that_always_stalls_gives_up(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The emulator's stall fault on every attempt: DownloadError after ``download_attempts``
    read timeouts, and nothing is kept."""
    emulator.config.download_stall_seconds = 60
    destination = tmp_path / "out" / "v.mp4"
    async with OmniFlashClient(
        emulator.api_key,
        base_url=emulator.base_url,
        timeout=httpx.Timeout(1.0, read=0.3),
        download_attempts=3,
        retry_policy=FAST_RETRIES,
        poll_schedule=FAST_SCHEDULE,
        resolve=Resolver(),
    ) as client:
        task = await client.wait(await client.submit(REQUEST))
        assert task.video_url is not None
        with pytest.raises(DownloadError, match="gave up after 3 attempts"):
            await client.download(task.video_url, destination)
    assert emulator.state.downloads(task.id) == 3
    assert_nothing_left(destination)


@pytest.mark.parametrize(
    "content_type",
    ["text/html", "text/html; charset=utf-8", "TEXT/PLAIN", "application/json", "application/xml"],
)
async def test_an_error_page_is_never_archived(content_type: str, tmp_path: Path) -> None:
    """A 200 whose Content-Type is a page or an API answer is refused at once (DownloadError,
    not retried), and nothing is kept."""
    page = b"<html><body>Your link has expired</body></html>"
    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(answer_bytes(page, content_type)) as server,
        client_for(server) as client,
    ):
        with pytest.raises(DownloadError, match="not a video"):
            await client.download(server.url("/v.mp4"), destination)
    assert len(server.exchanges) == 1
    assert_nothing_left(destination)


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked-endless"])
async def test_a_video_over_the_cap_is_refused(announced: bool, tmp_path: Path) -> None:
    """Over ``max_download_bytes``: refused from the Content-Length before reading the body, or
    while streaming an endless chunked body (the client hangs up); nothing is kept."""
    cap = 256 * 1024

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if announced:
            await reply.head(200, content_type="video/mp4", content_length=cap + 1)
            await reply.stall()  # the client must decide from the header alone
            return
        await reply.head(200, content_type="video/mp4", chunked=True)
        while True:
            await reply.chunk(SMALL_VIDEO)

    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(handler) as server,
        client_for(server, max_download_bytes=cap, timeout=ENDLESS) as client,
    ):
        async with asyncio.timeout(ENDLESS):
            with pytest.raises(VideoTooLargeError):
                await client.download(server.url("/v.mp4"), destination)
        await server.exchanges[0].finished()
    assert len(server.exchanges) == 1
    assert server.exchanges[0].client_left or announced
    assert_nothing_left(destination)


# -- slow and hung API -----------------------------------------------------------------------


async def never_answer(exchange: Exchange, reply: Reply) -> None:
    await reply.stall()


Call = Callable[[OmniFlashClient], Awaitable[object]]


@pytest.mark.parametrize(
    "call",
    [lambda client: client.get_task(TASK_ID), lambda client: client.get_balance()],
    ids=["get_task", "get_balance"],
)
async def test_an_api_that_never_answers_times_out(call: Call) -> None:
    """A server that accepts the request and never answers: APITimeoutError after the
    configured read timeout on each attempt."""
    policy = RetryPolicy(max_attempts=2, backoff_base_seconds=0.01)
    async with (
        HostileServer(never_answer) as server,
        client_for(server, timeout=0.3, retry_policy=policy) as client,
    ):
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await call(client)
        elapsed = time.monotonic() - started
    assert len(server.exchanges) == 2
    assert elapsed < ENDLESS


async def test_a_submit_that_is_never_answered_is_an_unknown_outcome() -> None:
    """The body was sent and no answer came: SubmissionOutcomeUnknownError (cause
    APITimeoutError, request sent), after exactly one POST."""
    async with (
        HostileServer(never_answer) as server,
        client_for(server, timeout=0.3) as client,
    ):
        with pytest.raises(SubmissionOutcomeUnknownError) as info:
            await client.submit(REQUEST)
    assert isinstance(info.value.cause, APITimeoutError)
    assert info.value.cause.request_sent
    assert server.paths == ["/v1/videos/generations"]
    assert json.loads(server.exchanges[0].body) == REQUEST.to_api_body()


async def test_the_poll_deadline_holds_when_the_api_never_answers() -> None:
    """Status reads that hang for longer than the whole wait: PollTimeoutError once the
    2-second deadline passes, not after the 30-second call timeout."""
    async with (
        HostileServer(never_answer) as server,
        client_for(server, timeout=30.0) as client,
    ):
        started = time.monotonic()
        with pytest.raises(PollTimeoutError) as info:
            await client.wait(TASK_ID, max_wait_seconds=2, first_poll_delay=0)
        elapsed = time.monotonic() - started
    assert info.value.waited_seconds >= 2
    assert elapsed < ENDLESS
    assert len(server.exchanges) >= 1


async def test_an_answer_trickled_byte_by_byte_still_times_out() -> None:
    """An answer whose bytes arrive one every 50 ms (each read within the 0.3 s timeout, the
    body never ending) still ends in APITimeoutError within a bounded time."""

    async def trickle(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="application/json", chunked=True)
        while True:
            await reply.chunk(b" ")
            await asyncio.sleep(0.05)

    async with (
        HostileServer(trickle) as server,
        client_for(server, timeout=0.3, retry_policy=RetryPolicy(max_attempts=1)) as client,
    ):
        async with asyncio.timeout(3.0):
            with pytest.raises(APITimeoutError):
                await client.get_balance()
