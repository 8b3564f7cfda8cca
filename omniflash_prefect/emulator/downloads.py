"""Serving a video as a CDN would: byte ranges, S3-style refusals and deliberately cut transfers.

The archiver under test must cope with what real object stores do to downloads, so this module
implements ``Range`` (206 / 416), XML ``AccessDenied`` answers for expired or forged signed URLs,
and a "cut" download: the full ``Content-Length`` is announced, about half the bytes are sent,
then the connection is aborted, so the client sees an incomplete body rather than a short file.

ASGI has no "abort" message; the way to make uvicorn drop a connection after the headers went
out is to raise from the app. uvicorn then logs "Exception in ASGI application" at ERROR, which
would be noise for an intended fault, so :func:`hide_download_cut_logs` filters out exactly those
records (and nothing else) from the ``uvicorn.error`` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from xml.sax.saxutils import escape

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .videos import CHUNK_BYTES, VideoLayout

#: Where an MP4's first box type (``ftyp``) sits, and what ``serve_non_mp4`` puts there.
_SIGNATURE_START, _SIGNATURE_END, _SPOILED = 4, 8, b"junk"
_RANGE = re.compile(r"bytes=(?P<first>[0-9]*)-(?P<last>[0-9]*)", re.IGNORECASE)


class RangeNotSatisfiableError(Exception):
    """The requested range starts at or past the end of the file (HTTP 416)."""


class DownloadCutError(Exception):
    """Raised on purpose to make the server abort a download mid-body (an injected fault)."""


class _HideDownloadCuts(logging.Filter):
    """Drop uvicorn's error record for a deliberately cut download; keep every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DownloadCutError))


_HIDE_CUTS = _HideDownloadCuts()


def hide_download_cut_logs() -> None:
    """Install the filter on uvicorn's error logger (once; calling again changes nothing)."""
    logger = logging.getLogger("uvicorn.error")
    if _HIDE_CUTS not in logger.filters:
        logger.addFilter(_HIDE_CUTS)


def s3_error(status: int, code: str, message: str) -> Response:
    """An error answer shaped like S3's, as the provider's CDN would send."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


def parse_byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` a ``Range`` header asks for, or None to send the whole file.

    Supports one range in the ``N-``, ``N-M`` and ``-N`` (suffix) forms. Headers this server does
    not understand (other units, several ranges, ``M < N``) are ignored, as RFC 9110 allows.
    Raises ``RangeNotSatisfiableError`` when the range starts past the end (or is ``-0``).
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or (not match["first"] and not match["last"]):
        return None
    if not match["first"]:
        suffix = int(match["last"])
        if suffix == 0:
            raise RangeNotSatisfiableError(header)
        return max(0, size - suffix), size
    start = int(match["first"])
    if match["last"] and int(match["last"]) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiableError(header)
    last = int(match["last"]) if match["last"] else size - 1
    return start, min(last, size - 1) + 1


class VideoResponse(Response):
    """Streams ``[start, end)`` of a task's video in chunks, optionally cutting it half way.

    Takes the video's layout ready made: working it out may encode a clip, which must happen off
    the event loop, before the response is built."""

    def __init__(
        self,
        layout: VideoLayout,
        byte_range: tuple[int, int],
        *,
        partial: bool,
        cut: bool,
        on_complete: Callable[[], None],
        stall_seconds: float = 0.0,
        not_mp4: bool = False,
    ) -> None:
        self.layout = layout
        self.task_id = layout.task_id
        self.not_mp4 = not_mp4
        self.stall_seconds = stall_seconds
        self.start, self.end = byte_range
        self.cut = cut
        self.on_complete = on_complete
        headers = {
            "accept-ranges": "bytes",
            "content-length": str(self.end - self.start),
            "content-type": "video/mp4",
        }
        if partial:
            headers["content-range"] = f"bytes {self.start}-{self.end - 1}/{layout.total}"
        super().__init__(status_code=206 if partial else 200, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send headers, then the body; HEAD gets headers only."""
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        disconnected = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, disconnected))
        try:
            await self._send_body(send, disconnected)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _send_body(self, send: Send, disconnected: asyncio.Event) -> None:
        length = self.end - self.start
        half = length // 2
        budget = half if self.cut else length
        stall_at = half if self.stall_seconds > 0 else None
        sent = 0
        chunks = self.layout.chunks(self.start, self.end, CHUNK_BYTES)
        if self.not_mp4:
            chunks = spoil_mp4_signature(chunks, self.start)
        for chunk in chunks:
            while chunk:
                if disconnected.is_set():
                    return  # the client went away: this download did not complete
                limit = budget if stall_at is None else min(budget, stall_at)
                piece, chunk = chunk[: limit - sent], chunk[limit - sent :]
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    sent += len(piece)
                if self.cut and sent >= budget:
                    raise DownloadCutError(f"download of {self.task_id} cut after {sent} bytes")
                if stall_at is not None and sent >= stall_at:
                    stall_at = None  # hold the rest back once, unless the client leaves first
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(disconnected.wait(), self.stall_seconds)
        if disconnected.is_set():
            return
        # Counted before the closing message: once it is sent, uvicorn reports a disconnect.
        self.on_complete()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def spoil_mp4_signature(chunks: Iterator[bytes], start: int) -> Iterator[bytes]:
    """The same chunks (of a file from byte ``start`` on) with the ``ftyp`` box type at bytes
    4-8 overwritten by ``junk``: still the announced size, no longer an MP4."""
    position = start
    for chunk in chunks:
        low, high = max(_SIGNATURE_START, position), min(_SIGNATURE_END, position + len(chunk))
        if low < high:
            spoiled = bytearray(chunk)
            spoiled[low - position : high - position] = _SPOILED[
                low - _SIGNATURE_START : high - _SIGNATURE_START
            ]
            chunk = bytes(spoiled)
        position += len(chunk)
        yield chunk


async def _watch_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    """Set ``disconnected`` when the server reports that the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass
    disconnected.set()
