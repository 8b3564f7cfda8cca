"""The client against a hostile provider. Result URLs and redirects: which the client follows, and
which it refuses before a byte moves.

The scripted servers and answers are in :mod:`tests.support.hostile_answers`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from omniflash_prefect.errors import DownloadError, UnsafeDownloadURLError
from tests.support.hostile_answers import (
    SMALL_VIDEO,
    Resolver,
    assert_nothing_left,
    client_for,
    redirect_to,
    serve_video,
)
from tests.support.hostile_server import Exchange, HostileServer, Reply


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
