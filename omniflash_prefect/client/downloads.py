"""Videos from the provider's CDN: streamed to disk, resumed, checked, never half-named.

A :class:`VideoDownloader` streams one URL to ``<destination>.part`` and renames it into place
when complete; a broken transfer resumes with an HTTP ``Range`` request. Each hop of a redirect
is checked (scheme, host, the address actually connected to) and no API key is ever sent along.
:meth:`VideoDownloader.download_task` adds what a task's video needs: a fresh URL when the one in
hand is missing or expired.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import urljoin

import httpx

from omniflash_prefect.client.transport import Resolve, peer_address, refuse_forbidden
from omniflash_prefect.core import protocol
from omniflash_prefect.core.models import DownloadedVideo, VideoTask
from omniflash_prefect.core.retry import RetryPolicy
from omniflash_prefect.errors import (
    DownloadError,
    UnsafeDownloadURLError,
    VideoExpiredError,
    VideoTooLargeError,
)

logger = logging.getLogger("omniflash_prefect")

Sleep = Callable[[float], Awaitable[None]]
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
#: Reads a task's status once (the client's ``get_task``), for a fresh URL.
ReadTask = Callable[[str], Awaitable[VideoTask]]

_MAX_REDIRECTS: Final = 5
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_EXPIRED_STATUSES: Final = frozenset({403, 410})
#: Content types that are never a video (``text/*`` neither): an error page or API answer.
_NOT_VIDEO_TYPES: Final = frozenset(
    {"application/json", "application/xml", "application/xhtml+xml"}
)


class VideoDownloader:
    """Downloads for one client: its connection pool, size cap, attempts and retry pacing."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        max_download_bytes: int,
        download_attempts: int,
        retry_policy: RetryPolicy,
        sleep: Sleep,
        resolve: Resolve | None,
    ) -> None:
        self._http = http
        self.max_download_bytes = max_download_bytes
        self.download_attempts = download_attempts
        self.retry_policy = retry_policy
        self._sleep = sleep
        self._resolve = resolve

    async def download_task(
        self, task: VideoTask, destination: Path, read_task: ReadTask, log: Logger = logger
    ) -> tuple[VideoTask, DownloadedVideo]:
        """Download a completed task's video; read the task once more (``read_task``) if its URL
        is missing or expired, or refused. Returns the task as last read, and the video."""
        source = task
        renewed = False
        expires_at = task.video_expires_at
        if task.video_url is None or (expires_at is not None and expires_at <= time.time()):
            log.info("The URL of task %s is missing or expired; reading the task again", task.id)
            source, renewed = await read_task(task.id), True
        while True:
            if source.video_url is None:
                raise DownloadError(f"task {task.id} is {source.status} but has no video URL")
            try:
                return source, await self.download(source.video_url, destination)
            except VideoExpiredError:
                if renewed:
                    raise
                log.warning("The URL of task %s was refused; reading the task again", task.id)
                source, renewed = await read_task(task.id), True

    async def download(
        self, url: str, destination: str | os.PathLike[str], *, expected_size: int | None = None
    ) -> DownloadedVideo:
        """Stream the video at ``url`` to ``destination`` and return its size and SHA-256.

        Never holds the video in memory. Bytes go to ``<destination>.part`` and are renamed into
        place only when complete, so a partial file never carries the final name. A broken
        transfer resumes with an HTTP ``Range`` request (restarting when the server ignores it);
        a refused URL (403/410) raises :class:`VideoExpiredError`.
        """
        target = Path(destination)
        part = target.with_name(target.name + ".part")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with part.open("wb") as sink:
                size, digest = await self._download_into(url, sink, expected_size)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return DownloadedVideo(path=target, size_bytes=size, sha256=digest)

    async def _download_into(
        self, url: str, sink: BinaryIO, expected_size: int | None
    ) -> tuple[int, str]:
        hasher = hashlib.sha256()
        written = 0
        total = expected_size
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._open_download(url, written) as response:
                    if written and response.status_code == 200:
                        # The server ignored the Range header: start over from byte 0.
                        sink.seek(0)
                        sink.truncate()
                        hasher = hashlib.sha256()
                        written = 0
                    total = self._announced_total(response, written, total)
                    # Chunks as they arrive: re-buffering into fixed sizes cost more CPU than
                    # the SHA-256 (about 1 s per GiB, measured in benchmarks/).
                    async for chunk in response.aiter_raw():
                        written += len(chunk)
                        if written > self.max_download_bytes:
                            raise VideoTooLargeError(
                                f"the video exceeds the {self.max_download_bytes}-byte cap"
                            )
                        hasher.update(chunk)
                        sink.write(chunk)
                if total is None or written == total:
                    sink.flush()
                    return written, hasher.hexdigest()
                if written > total:
                    raise DownloadError(
                        f"the server sent {written} bytes but announced {total}; refusing"
                    )
                problem = f"the transfer ended after {written} of {total} bytes"
            except (httpx.TransportError, _TransientDownloadError) as exc:
                problem = f"the transfer broke after {written} bytes ({exc or type(exc).__name__})"
            if attempt >= self.download_attempts:
                raise DownloadError(f"{problem}; gave up after {attempt} attempts")
            logger.warning("download of %s: %s; resuming", _safe_url(url), problem)
            await self._sleep(self.retry_policy.delay(attempt))

    def _open_download(self, url: str, offset: int) -> _DownloadStream:
        return _DownloadStream(self._http, url, offset, self._resolve)

    def _announced_total(
        self, response: httpx.Response, offset: int, known: int | None
    ) -> int | None:
        """The full size the server announces, checked against the cap and what we know."""
        total: int | None = None
        if response.status_code == 206:
            content_range = protocol.parse_content_range(response.headers.get("content-range"))
            if content_range is None or content_range[0] != offset:
                raise DownloadError(
                    "the server resumed the download at the wrong offset "
                    f"({response.headers.get('content-range')!r}, expected byte {offset})"
                )
            total = content_range[2]
        length = response.headers.get("content-length")
        if total is None and length is not None and length.isdigit():
            total = offset + int(length)
        if total is not None and total > self.max_download_bytes:
            raise VideoTooLargeError(
                f"the video is {total} bytes, over the {self.max_download_bytes}-byte cap"
            )
        if known is not None and total is not None and known != total:
            raise DownloadError(f"the video is {total} bytes where {known} were expected")
        return total if total is not None else known


class _TransientDownloadError(Exception):
    """A video host answer worth retrying (5xx, 429), handled like a broken transfer."""


class _DownloadStream:
    """An async context manager around one streamed GET, following safe redirects only.

    Each hop is checked with :func:`protocol.check_download_url`, so a redirect cannot lead to
    another scheme or an internal host, and no API key is ever sent along.
    """

    def __init__(
        self, http: httpx.AsyncClient, url: str, offset: int, resolve: Resolve | None
    ) -> None:
        self._http = http
        self._url = url
        self._offset = offset
        self._resolve = resolve
        self._response: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        url = self._url
        # identity: the bytes on disk must be the file itself, and Content-Length must count them.
        headers = {"Accept-Encoding": "identity"}
        if self._offset:
            headers["Range"] = f"bytes={self._offset}-"
        for _ in range(_MAX_REDIRECTS + 1):
            request = await self._checked_request(url, headers)
            try:
                response = await self._http.send(request, stream=True)
            except (httpx.InvalidURL, UnicodeError) as exc:  # e.g. a Location httpx cannot parse
                raise UnsafeDownloadURLError(f"refusing an unusable redirect: {exc}") from None
            peer = peer_address(response)
            if peer is not None and protocol.is_forbidden_address(peer):
                await response.aclose()  # connected after all (a DNS change): read nothing
                refuse_forbidden(request.url.host, peer)
            if response.status_code in _REDIRECT_STATUSES and "location" in response.headers:
                await response.aclose()
                try:
                    url = urljoin(url, response.headers["location"])
                except ValueError:
                    raise UnsafeDownloadURLError(
                        f"refusing a redirect to a malformed URL {response.headers['location']!r}"
                    ) from None
                continue
            if response.status_code in _EXPIRED_STATUSES:
                await response.aclose()
                raise VideoExpiredError(
                    f"the video URL was refused (HTTP {response.status_code}): result URLs expire "
                    "about 24 hours after the task completes; read the task again for a fresh URL"
                )
            if response.status_code not in (200, 206):
                await response.aclose()
                if response.status_code >= 500 or response.status_code == 429:
                    raise _TransientDownloadError(f"HTTP {response.status_code}")
                raise DownloadError(f"the video URL answered HTTP {response.status_code}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type.startswith("text/") or content_type in _NOT_VIDEO_TYPES:
                await response.aclose()
                raise DownloadError(
                    f"the video URL answered {content_type!r} content, not a video "
                    "(an error page?); nothing was archived"
                )
            self._response = response
            return response
        raise DownloadError(f"more than {_MAX_REDIRECTS} redirects for the video URL")

    async def _checked_request(self, url: str, headers: dict[str, str]) -> httpx.Request:
        """The GET of one hop, once its URL and every address its host resolves to are allowed."""
        protocol.check_download_url(url)
        try:
            request = self._http.build_request("GET", url, headers=headers)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise UnsafeDownloadURLError(f"refusing a URL httpx cannot use: {exc}") from None
        if self._resolve is not None:
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            for address in await self._resolve(request.url.host, port):
                refuse_forbidden(request.url.host, address)
        return request

    async def __aexit__(self, *exc_info: object) -> None:
        if self._response is not None:
            await self._response.aclose()


def _safe_url(url: str) -> str:
    """A URL for logs, without its query (signed URLs carry credentials-like tokens there)."""
    return url.split("?", 1)[0]
