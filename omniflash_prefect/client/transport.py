"""How the client connects: one TLS context per CA setting, bigger socket reads, the whole-call
deadline, name resolution and the address check of video hosts, and what a transport failure
means for a paid call (was the request possibly sent?)."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
from collections.abc import Awaitable, Callable

import httpcore  # httpx's own transport; see read_sockets_in_bigger_pieces
import httpx

from omniflash_prefect.core import protocol
from omniflash_prefect.errors import (
    APIConnectionError,
    APITimeoutError,
    UnsafeDownloadURLError,
    redact,
)

#: Host, port -> the IP addresses a connection to them may reach.
Resolve = Callable[[str, int], Awaitable[list[str]]]


def http_timeout(request_seconds: float, connect_seconds: float) -> httpx.Timeout:
    """httpx's timeouts from the two settings: each read or write, and connecting."""
    return httpx.Timeout(request_seconds, connect=connect_seconds)


#: Bytes read from a socket at once. httpcore reads 64 KiB at a time and every read is a trip
#: through h11, httpcore and httpx; on a fast link those trips, not the network, bound a
#: download (benchmarks/README.md, "Archive throughput").
SOCKET_READ_BYTES = 256 * 1024


@functools.cache
def read_sockets_in_bigger_pieces() -> None:
    """Let httpcore read up to :data:`SOCKET_READ_BYTES` per call (it never lowers a larger size).

    asyncio hands received data over in pieces of up to 256 KiB; reading them whole makes a
    download a quarter of the trips through the HTTP stack, which saves more CPU than the
    archive's SHA-256 costs. It is httpcore's class attribute, so it applies process-wide: only
    the size of a read changes, never what is read.
    """
    connection = httpcore.AsyncHTTP11Connection
    current = getattr(connection, "READ_NUM_BYTES", None)
    if isinstance(current, int) and current < SOCKET_READ_BYTES:
        connection.READ_NUM_BYTES = SOCKET_READ_BYTES


def verify_context() -> ssl.SSLContext:
    """The TLS context httpx would build for ``verify=True``, built once per CA setting.

    httpx builds a fresh context (loading the whole CA bundle, tens of milliseconds of CPU) for
    every client; a batch makes several clients per video, so they share one. Keyed by the
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` variables httpx reads, so changing them still applies.
    """
    return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    del cert_file, cert_dir  # the cache key: create_ssl_context reads them from the environment
    return httpx.create_ssl_context()


def whole_call_seconds(timeout: httpx.Timeout | float) -> float:
    """The longest one API call may take: connecting, plus twice the read timeout."""
    limits = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
    connect = limits.connect if limits.connect is not None else 10.0
    read = limits.read if limits.read is not None else 30.0
    return connect + 2 * read


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to; empty when it does not resolve (the connection then
    fails and says why)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(info[4][0]) for info in infos]


def refuse_forbidden(host: str, address: str) -> None:
    if protocol.is_forbidden_address(address):
        raise UnsafeDownloadURLError(
            f"refusing to download from {host}: it resolves to {address}, a link-local or cloud "
            "metadata address"
        )


def peer_address(response: httpx.Response) -> str | None:
    """The IP address the response came from, when the transport tells (real sockets do)."""
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    peer = stream.get_extra_info("server_addr")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def connection_error(exc: httpx.TransportError, api_key: str) -> APIConnectionError:
    """Classify a transport failure: was the request possibly sent?"""
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    message = redact(f"could not reach the API: {type(exc).__name__}: {exc}", api_key)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(message, request_sent=not not_sent)
    return APIConnectionError(message, request_sent=not not_sent)
