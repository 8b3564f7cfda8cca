"""A thin async client for the Omni-Flash-Ext API: the only module here that does network I/O.

It sends what :mod:`omniflash_prefect.core.protocol` builds, reads answers with it, retries as
:mod:`omniflash_prefect.core.retry` decides and polls as :mod:`omniflash_prefect.core.polling`
schedules.
The transport, the sleep and the clock are injectable, so tests wire it to the emulator or to a
fake clock without monkeypatching.

A submit is paid and the provider has no idempotency key: it is sent again only when the provider
certainly did not accept it, and any doubt raises :class:`SubmissionOutcomeUnknownError`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

import httpx
from pydantic import SecretStr

from omniflash_prefect.client.downloads import Logger, Sleep, VideoDownloader
from omniflash_prefect.client.images import read_image_file
from omniflash_prefect.client.transport import (
    Resolve,
    connection_error,
    http_timeout,
    read_sockets_in_bigger_pieces,
    resolve_host,
    verify_context,
    whole_call_seconds,
)
from omniflash_prefect.core import protocol
from omniflash_prefect.core.models import (
    KNOWN_STATUSES,
    Balance,
    DownloadedVideo,
    VideoTask,
    validate_task_id,
)
from omniflash_prefect.core.polling import PollSchedule
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.retry import (
    Operation,
    RetryPolicy,
    retry_after_of,
    submission_certainly_refused,
)
from omniflash_prefect.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    GenerationCancelledError,
    GenerationFailedError,
    OmniFlashError,
    PollTimeoutError,
    SubmissionOutcomeUnknownError,
    UnexpectedResponseError,
    UsageError,
)
from omniflash_prefect.settings import DEFAULT_BASE_URL, DEFAULTS, OmniFlashSettings

logger = logging.getLogger("omniflash_prefect")

Clock = Callable[[], float]
TaskCallback = Callable[[VideoTask], Awaitable[None]]

#: The largest API answer read; real ones are well under a kilobyte.
MAX_API_ANSWER_BYTES = 1024 * 1024


class OmniFlashClient:
    """Submit, poll, download: one async client per event loop, used as an async context manager.

    Example::

        async with OmniFlashClient(api_key) as client:
            task_id = await client.submit(VideoRequest(prompt="a paper boat on a pond"))
            task = await client.wait(task_id)
            video = await client.download(task.video_url, Path("boat.mp4"))
    """

    def __init__(
        self,
        api_key: str | SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: httpx.Timeout | float | None = None,
        retry_policy: RetryPolicy | None = None,
        poll_schedule: PollSchedule | None = None,
        max_download_bytes: int = DEFAULTS.max_download_bytes,
        download_attempts: int = DEFAULTS.download_attempts,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        resolve: Resolve | None = None,
    ) -> None:
        secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not secret or not secret.strip():
            raise UsageError("an API key is required (set OMNIFLASH_API_KEY or use a block)")
        self._api_key = secret
        self.base_url = base_url.rstrip("/")
        if timeout is None:
            timeout = http_timeout(
                DEFAULTS.request_timeout_seconds, DEFAULTS.connect_timeout_seconds
            )
        self.retry_policy = retry_policy or DEFAULTS.retry_policy()
        self.poll_schedule = poll_schedule or DEFAULTS.poll_schedule()
        self._sleep = sleep
        self._clock = clock
        # Video hosts are resolved and checked before connecting. An injected transport makes
        # its own connections, so then only an injected resolver is used.
        resolve = resolve if resolve is not None or transport is not None else resolve_host
        # httpx bounds each read; this bounds a whole answer, however it trickles in.
        self._call_seconds = whole_call_seconds(timeout)
        read_sockets_in_bigger_pieces()
        # No default Authorization header: the key is added to API calls only, so it never
        # travels to the CDN host a result URL points at.
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": protocol.user_agent(f"httpx/{httpx.__version__}")},
            follow_redirects=False,
            verify=verify_context(),
        )
        self.downloads = VideoDownloader(
            self._http,
            max_download_bytes=max_download_bytes,
            download_attempts=download_attempts,
            retry_policy=self.retry_policy,
            sleep=sleep,
            resolve=resolve,
        )

    @classmethod
    def from_settings(
        cls, settings: OmniFlashSettings | None = None, **overrides: Any
    ) -> OmniFlashClient:
        """A client configured from ``OMNIFLASH_*`` settings; keyword arguments win."""
        settings = settings or OmniFlashSettings()
        if settings.api_key is None and "api_key" not in overrides:
            raise UsageError(
                "no API key: set OMNIFLASH_API_KEY, name a credentials block, "
                "or try the emulator with 'omniflash demo'"
            )
        options: dict[str, Any] = {
            "api_key": settings.api_key,
            "base_url": settings.base_url,
            "timeout": http_timeout(
                settings.request_timeout_seconds, settings.connect_timeout_seconds
            ),
            "retry_policy": settings.retry_policy(),
            "poll_schedule": settings.poll_schedule(),
            "max_download_bytes": settings.max_download_bytes,
            "download_attempts": settings.download_attempts,
        }
        options.update(overrides)
        return cls(**options)

    def __repr__(self) -> str:
        return f"OmniFlashClient(base_url={self.base_url!r}, api_key=SecretStr('**********'))"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- API calls ---------------------------------------------------------------------------

    async def submit(self, request: VideoRequest, *, between_attempts: Sleep | None = None) -> str:
        """Submit ``request`` (a paid call) and return its task id.

        Retried only on connection refusal and 429, where the provider certainly did not accept
        it; any other failure after the body may have been sent raises
        :class:`SubmissionOutcomeUnknownError` carrying ``request.fingerprint()``.
        ``between_attempts`` waits out the back-off instead of a plain sleep, so a caller that
        records its submission can record the certain refusal for the length of the wait.
        """
        body = request.to_api_body()
        try:
            answer = await self._call(
                "POST", protocol.SUBMIT_PATH, "submit", pause=between_attempts, json=body
            )
            return protocol.parse_submit_response(answer, api_key=self._api_key)
        except OmniFlashError as exc:
            if submission_certainly_refused(exc):
                raise
            raise SubmissionOutcomeUnknownError(request.fingerprint(), exc) from exc

    async def get_task(self, task_id: str) -> VideoTask:
        """Read a task's status once (transient errors retried per the retry policy)."""
        body = await self._call("GET", protocol.task_path(task_id), "idempotent")
        task = protocol.parse_task_response(body, api_key=self._api_key)
        if task.id != task_id:
            raise UnexpectedResponseError(
                f"asked for task {task_id} but the API answered for task {task.id}", status_code=200
            )
        return task

    async def get_balance(self, *, account: bool = False) -> Balance:
        """The remaining balance of this key, or of the whole account with ``account=True``."""
        path = protocol.ACCOUNT_BALANCE_PATH if account else protocol.BALANCE_PATH
        return protocol.parse_balance_response(await self._call("GET", path, "idempotent"))

    async def upload_image(self, path: str | os.PathLike[str]) -> str:
        """Upload a local JPEG, PNG, WebP or GIF (up to 20 MB) and return its URL (lives 72 h).

        The file is checked first (:func:`~omniflash_prefect.client.images.read_image_file`), so
        a wrong file raises :class:`InvalidImageFileError` before anything is sent.
        """
        image = read_image_file(path)
        files = {"file": (image.path.name, image.content, image.content_type)}
        body = await self._call("POST", protocol.UPLOAD_IMAGE_PATH, "idempotent", files=files)
        return protocol.parse_upload_response(body).url

    async def wait(
        self,
        task_id: str,
        *,
        max_wait_seconds: float | None = None,
        first_poll_delay: float | None = None,
        on_update: TaskCallback | None = None,
    ) -> VideoTask:
        """Poll until the task completes and return it; raise if it fails, is cancelled or stalls.

        One loop per video, paced by the poll schedule, with an overall deadline that holds even
        when every call hangs. Transient errors while polling are logged and survived.
        ``first_poll_delay`` defaults to the schedule's (pass 0 when resuming an old task);
        ``on_update`` is awaited with every status read, e.g. to report progress.
        """
        task_id = validate_task_id(task_id)
        schedule = self.poll_schedule
        budget = schedule.timeout_seconds if max_wait_seconds is None else max_wait_seconds
        started = self._clock()
        deadline = started + budget
        delay = schedule.first_delay_seconds if first_poll_delay is None else first_poll_delay
        last_status: str | None = None
        unknown_seen: set[str] = set()
        while True:
            await self._sleep(max(min(delay, deadline - self._clock()), 0.0))
            task = await self._poll_once(task_id, deadline)
            if task is not None:
                _log_reading(task, last_status, unknown_seen)
                last_status = task.status
                if on_update is not None:
                    await on_update(task)
                if _ended(task):
                    return task
            elapsed = self._clock() - started
            if self._clock() >= deadline:
                raise PollTimeoutError(task_id, waited_seconds=elapsed, last_status=last_status)
            delay = (
                schedule.interval_after(task, elapsed)
                if task is not None
                else schedule.min_interval_seconds
            )

    async def _poll_once(self, task_id: str, deadline: float) -> VideoTask | None:
        """One status read bounded by the deadline; a transient failure gives None."""
        remaining = max(deadline - self._clock(), 0.0)
        try:
            return await asyncio.wait_for(self.get_task(task_id), timeout=max(remaining, 1.0))
        except TimeoutError:
            logger.warning("reading task %s hung past the poll deadline", task_id)
        except (APIConnectionError, UnexpectedResponseError) as exc:
            logger.warning("reading task %s failed, will poll again: %s", task_id, exc)
        except APIError as exc:
            if exc.status_code < 500 and exc.status_code != 429:
                raise
            logger.warning("reading task %s failed, will poll again: %s", task_id, exc)
        return None

    # -- downloads ---------------------------------------------------------------------------

    async def download(
        self, url: str, destination: str | os.PathLike[str], *, expected_size: int | None = None
    ) -> DownloadedVideo:
        """Stream the video at ``url`` to ``destination``: :meth:`VideoDownloader.download`."""
        return await self.downloads.download(url, destination, expected_size=expected_size)

    async def download_task(
        self, task: VideoTask, destination: str | os.PathLike[str], log: Logger = logger
    ) -> tuple[VideoTask, DownloadedVideo]:
        """Download a completed task's video, reading the task once more when its URL is missing,
        expired or refused; returns the task as last read (its URL, its expiry) and the video."""
        return await self.downloads.download_task(task, Path(destination), self.get_task, log)

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        operation: Operation,
        *,
        pause: Sleep | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send one API call with the retry policy (waiting with ``pause``, else the client's
        sleep); return the decoded JSON body."""
        headers = {"Authorization": f"Bearer {self._api_key}"}
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(self._call_seconds):
                    response = await self._send_capped(method, path, headers=headers, **kwargs)
            except TimeoutError:  # each read was quick, the whole answer was not
                error: OmniFlashError = APITimeoutError(
                    f"the API took over {self._call_seconds:g} s to answer {method} {path}",
                    request_sent=True,
                )
            except httpx.TransportError as exc:
                error = connection_error(exc, self._api_key)
            else:
                if response.is_success:
                    return protocol.decode_json(response)
                error = protocol.error_from_response(response, api_key=self._api_key)
            if not self.retry_policy.should_retry(error, operation, attempt):
                raise error
            delay = self.retry_policy.delay(attempt, retry_after=retry_after_of(error))
            logger.warning(
                "%s %s failed (%s); retry %d in %.1f s", method, path, error, attempt, delay
            )
            await (pause or self._sleep)(delay)

    async def _send_capped(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send an API call and read its answer, refusing one over ``MAX_API_ANSWER_BYTES``
        (an API answer is a few hundred bytes; a huge one must not fill the memory)."""
        request = self._http.build_request(method, path, **kwargs)
        response = await self._http.send(request, stream=True)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_API_ANSWER_BYTES:
                    raise UnexpectedResponseError(
                        f"the API answered {method} {path} with more than "
                        f"{MAX_API_ANSWER_BYTES} bytes; refusing to read it",
                        status_code=response.status_code,
                    )
        finally:
            await response.aclose()
        # The body is decoded already: hand it on without its transfer headers.
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=bytes(body), request=request
        )


def _log_reading(task: VideoTask, last_status: str | None, unknown_seen: set[str]) -> None:
    """A log line per status change, and a warning the first time a status is unknown."""
    if task.status != last_status:
        logger.info("task %s is %s (progress %s)", task.id, task.status, task.progress)
    if task.status not in KNOWN_STATUSES and task.status not in unknown_seen:
        unknown_seen.add(task.status)
        logger.warning(
            "task %s has status %r, unknown to this package: still waiting", task.id, task.status
        )


def _ended(task: VideoTask) -> bool:
    """True when the task completed; raises when it failed or was cancelled."""
    if task.phase == "failed":
        error = task.error
        raise GenerationFailedError(
            task.id,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
        )
    if task.phase == "cancelled":
        raise GenerationCancelledError(task.id)
    return task.phase == "completed"
