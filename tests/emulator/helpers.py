"""Shared test helpers: a hand-driven clock, request shortcuts and an MP4 box walker."""

from __future__ import annotations

import ssl
import struct
import zlib
from typing import Any

import httpx

#: The fake clock's starting time (the provider's own example ``created`` value).
START = 1_779_246_294.0
PROMPT = "a cat surfing a wave at sunset, slow dolly-in"


#: One TLS context for every test client: httpx builds a new one (loading the CA bundle, about
#: 30 ms) per client otherwise, and the emulator only ever speaks plain HTTP on loopback.
_TLS = ssl.create_default_context()


def http_client(base_url: str = "", api_key: str | None = None) -> httpx.AsyncClient:
    """An async client for the emulator, sending ``api_key`` as bearer token when given."""
    headers = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
    return httpx.AsyncClient(base_url=base_url, headers=headers, verify=_TLS, timeout=10.0)


class FakeClock:
    """A clock tests move by hand, so task progress and URL expiry need no waiting."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def body(**fields: Any) -> dict[str, Any]:
    """A valid submit body with ``fields`` added or replaced."""
    return {"model": "Omni-Flash-Ext", "prompt": PROMPT, **fields}


async def submit(client: httpx.AsyncClient, **fields: Any) -> str:
    """Submit a valid body (plus ``fields``), assert it is accepted, return the task id."""
    response = await client.post("/v1/videos/generations", json=body(**fields))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["code"] == 200
    assert answer["data"][0]["status"] == "submitted"
    task_id: str = answer["data"][0]["task_id"]
    return task_id


async def task_data(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The ``data`` object of a successful status read."""
    response = await client.get(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def video_url(client: httpx.AsyncClient, task_id: str) -> str:
    """A fresh download URL of a completed task."""
    data = await task_data(client, task_id)
    assert data["status"] == "completed", data
    url: str = data["result"]["videos"][0]["url"][0]
    return url


def error_code(response: httpx.Response) -> str:
    """The provider error code of a JSON error answer (``type`` and ``code`` must agree)."""
    error: dict[str, str] = response.json()["error"]
    assert error["type"] == error["code"]
    assert error["message"]
    return error["code"]


def top_level_boxes(data: bytes) -> list[tuple[str, int]]:
    """``(type, size)`` of each top-level ISO-BMFF box; asserts they tile the file exactly."""
    boxes: list[tuple[str, int]] = []
    offset = 0
    while offset < len(data):
        assert offset + 8 <= len(data), f"truncated box header at {offset}"
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:
            size = len(data) - offset
        assert size >= header, f"box {kind!r} at {offset} is smaller than its header"
        assert offset + size <= len(data), f"box {kind!r} at {offset} runs past the end"
        boxes.append((kind.decode("latin-1"), size))
        offset += size
    assert offset == len(data)
    return boxes


def tiny_png() -> bytes:
    """A real 1x1 grey PNG."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )
