"""Counting the Prefect API calls a process makes, by method and path (ids masked), and the
error a busy Prefect API answers with.

Shared by the tests (a batch video must stay within a few calls) and the batch benchmark (which
prints them by endpoint). Counts what goes through ``httpx.AsyncClient``, i.e. every Prefect
API call except the events, which travel over one websocket.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
from prefect.exceptions import PrefectHTTPStatusError

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class PrefectApiCalls:
    """The Prefect API calls made while :meth:`counting` is active, by endpoint."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @contextlib.contextmanager
    def counting(self) -> Iterator[PrefectApiCalls]:
        """Count every ``/api/`` request sent by any ``httpx.AsyncClient`` in this process."""
        original = httpx.AsyncClient.send
        counts = self.counts

        async def send(
            client: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
        ) -> httpx.Response:
            if request.url.path.startswith("/api/"):
                counts[f"{request.method} {_UUID.sub('{id}', request.url.path)}"] += 1
            return await original(client, request, **kwargs)

        httpx.AsyncClient.send = send  # type: ignore[method-assign,assignment]
        try:
            yield self
        finally:
            httpx.AsyncClient.send = original  # type: ignore[method-assign]

    def summary(self, videos: int) -> dict[str, Any]:
        """Total, per video, and by endpoint (most called first)."""
        return {
            "total": self.total,
            "per_video": round(self.total / max(videos, 1), 2),
            "by_endpoint": dict(self.counts.most_common()),
        }


def prefect_503(path: str = "/api/artifacts/") -> PrefectHTTPStatusError:
    """What a busy Prefect server (SQLite under load) answers a write with."""
    request = httpx.Request("POST", f"http://127.0.0.1{path}")
    response = httpx.Response(503, request=request)
    return PrefectHTTPStatusError.from_httpx_error(
        httpx.HTTPStatusError("busy", request=request, response=response)
    )
