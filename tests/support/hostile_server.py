"""A tiny HTTP/1.1 server on 127.0.0.1 whose answers are scripted byte by byte.

The emulator behaves like the real provider; this server behaves like a broken or hostile one: it
lies about ``Content-Length``, stalls mid-body, streams forever, redirects anywhere or never
answers at all. It runs on the test's own event loop (``async with HostileServer(handler)``), reads
one request per connection, hands it to the test's handler with a :class:`Reply` to write the
answer with, and closes the connection when the handler returns. Each request is recorded as an
:class:`Exchange`, including whether the client left before the handler had finished writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

#: What ``asyncio`` raises when the peer has gone while we write or read.
_GONE = (ConnectionError, asyncio.IncompleteReadError)
_REASONS = {
    200: "OK",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass
class Exchange:
    """One request as received, and what became of the answer."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    bytes_sent: int = 0
    client_left: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    async def finished(self) -> None:
        """Wait (at most 5 s) until the handler of this request has returned."""
        async with asyncio.timeout(5.0):
            await self.done.wait()


class Reply:
    """The write side of one connection, with helpers for well- and ill-formed answers."""

    def __init__(
        self, exchange: Exchange, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._exchange = exchange
        self._reader = reader
        self._writer = writer

    async def raw(self, data: bytes) -> None:
        """Write ``data`` as is and wait until the socket took it."""
        self._writer.write(data)
        await self._writer.drain()
        self._exchange.bytes_sent += len(data)

    async def head(
        self,
        status: int = 200,
        headers: Iterable[tuple[str, str]] = (),
        *,
        content_type: str | None = "application/octet-stream",
        content_length: int | None = None,
        chunked: bool = False,
    ) -> None:
        """The status line and headers (always ``Connection: close``)."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Whatever')}", "Connection: close"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        if content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        lines += [f"{name}: {value}" for name, value in headers]
        await self.raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def send(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        *,
        content_type: str | None = "application/octet-stream",
    ) -> None:
        """A complete, well-framed answer."""
        await self.head(status, headers, content_type=content_type, content_length=len(body))
        await self.raw(body)

    async def json(self, value: Any, status: int = 200) -> None:
        """A JSON answer."""
        await self.send(status, json.dumps(value).encode(), content_type="application/json")

    async def chunk(self, data: bytes) -> None:
        """One chunk of a ``Transfer-Encoding: chunked`` body (empty data is skipped)."""
        if data:
            await self.raw(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    async def last_chunk(self) -> None:
        """The terminating zero-length chunk."""
        await self.raw(b"0\r\n\r\n")

    async def stall(self) -> None:
        """Send nothing more until the client goes away."""
        with contextlib.suppress(*_GONE):
            while await self._reader.read(65536):
                pass


Handler = Callable[[Exchange, Reply], Awaitable[None]]


class HostileServer:
    """Serves ``handler`` on ``127.0.0.1`` (a free port) for as long as the ``async with`` lasts."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None
        self.exchanges: list[Exchange] = []
        self.connections = 0

    @property
    def port(self) -> int:
        """The bound port (still known once the server has stopped)."""
        if self._port is None:
            raise RuntimeError("the server was never started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        return [exchange.path for exchange in self.exchanges]

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        exchange: Exchange | None = None
        try:
            exchange = await _read_request(reader)
            if exchange is None:
                return
            self.exchanges.append(exchange)
            try:
                await self._handler(exchange, Reply(exchange, reader, writer))
            except _GONE:
                exchange.client_left = True
        except _GONE:
            pass
        finally:
            if exchange is not None:
                exchange.done.set()
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(*_GONE):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> Exchange | None:
    """The next request on the connection, or None if the client closed it first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Exchange(method, target, headers, body)
