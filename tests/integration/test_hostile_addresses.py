"""The client against a hostile provider. Where a URL resolves, and where the connection actually
lands: never a private or metadata address.

The scripted servers and answers are in :mod:`tests.support.hostile_answers`.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import httpx
import pytest

from omniflash_prefect import OmniFlashClient
from omniflash_prefect.client import resolve_host
from omniflash_prefect.core import protocol
from omniflash_prefect.errors import UnsafeDownloadURLError
from tests.support.hostile_answers import (
    KEY,
    SMALL_VIDEO,
    Resolver,
    assert_nothing_left,
    client_for,
    refuse_all,
    serve_video,
)
from tests.support.hostile_server import HostileServer


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
