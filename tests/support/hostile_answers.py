"""A hostile provider's answers, for the client tests of ``tests/integration/test_hostile_*``.

Each test plays a misbehaving server on loopback (``HostileServer``, scripted byte by byte, or the
emulator with a fault switched on) and checks that the client ends in a typed
:class:`OmniFlashError` or a sensible reading, within its deadlines, without leaving a file or a
``.part`` behind. Name resolution is always injected, so no test looks up a real name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from omniflash_prefect import (
    OmniFlashClient,
    VideoRequest,
)
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
