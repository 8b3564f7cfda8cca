"""Reusable Prefect tasks: submit, poll and archive one video; each usable alone in any flow.

They are thin: the client does the protocol, :mod:`omniflash_prefect.archive` the storage and
:mod:`omniflash_prefect.observability` what the UI shows. What they add is Prefect's memory:

* ``submit_video`` persists its task id under a key made of the request's fingerprint and an
  idempotency key (default: the flow run id), so a retried or resumed run reuses the task id
  instead of paying again. It also records an *intent* before sending and the task id as soon as
  the answer arrives; if a run dies with the request in flight, the next attempt refuses to
  guess and raises :class:`SubmissionOutcomeUnknownError` rather than possibly paying twice.
* ``poll_video`` never caches (a status must be read fresh) and runs one poll loop per video.
* ``archive_video`` caches its result by task id and destination, so a re-run never downloads
  a video that is already archived.

No Prefect-level retries are set: the client already retries what is safe to retry, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.results import ResultStore, get_result_store
from prefect.runtime import flow_run, task_run
from prefect.serializers import JSONSerializer

from omniflash_prefect.archive import (
    ArchivedVideo,
    check_is_mp4,
    destination_of,
    sidecar_key,
    staging_path,
    store_video,
    video_key,
    write_sidecar,
)
from omniflash_prefect.blocks import OmniFlashCredentials
from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.errors import (
    DownloadError,
    GenerationCancelledError,
    GenerationFailedError,
    OmniFlashError,
    PollTimeoutError,
    SubmissionOutcomeUnknownError,
    VideoExpiredError,
)
from omniflash_prefect.models import DownloadedVideo, VideoRequest, VideoTask, validate_task_id
from omniflash_prefect.observability import artifact_key, emit_video_event
from omniflash_prefect.retry import submission_certainly_refused
from omniflash_prefect.settings import OmniFlashSettings

RunLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]

#: The smallest rise of the API's progress (in points) that updates the progress artifact.
PROGRESS_STEP = 10
_IN_FLIGHT = "in-flight"
_REFUSED = "refused"


#: Reads of credentials blocks in the current ``generate_video`` (or batch) run, by name; see
#: :func:`credentials_read_once`. None outside such a run: every call reads the block.
_CREDENTIALS: ContextVar[dict[str, asyncio.Future[OmniFlashCredentials]] | None] = ContextVar(
    "omniflash_credentials", default=None
)


@contextlib.contextmanager
def credentials_read_once() -> Iterator[None]:
    """Within this block, each named credentials block is read from the API once.

    One video's submit, poll and archive tasks each need a client; without this each would read
    the same block (an API call) again. Tasks and subflows run in a copy of the caller's context,
    which shares the dict, so what one task read the next one reuses. Nested blocks share the
    outermost one's reads: a batch reads each block once for all its videos, even when they all
    start at the same moment (they wait for the one read in flight).
    """
    if _CREDENTIALS.get() is not None:
        yield
        return
    token = _CREDENTIALS.set({})
    try:
        yield
    finally:
        _CREDENTIALS.reset(token)


async def load_client(credentials_block: str | None = None) -> OmniFlashClient:
    """A client from the named credentials block, else from ``OMNIFLASH_*`` settings."""
    if credentials_block:
        return (await _load_credentials(credentials_block)).get_client()
    return OmniFlashClient.from_settings()


async def _load_credentials(name: str) -> OmniFlashCredentials:
    cache = _CREDENTIALS.get()
    read = cache.get(name) if cache is not None else None
    if cache is None or (read is not None and read.get_loop() is not asyncio.get_running_loop()):
        return await _read_credentials(name)  # no sharing across event loops
    if read is None or (read.done() and (read.cancelled() or read.exception() is not None)):
        read = cache[name] = asyncio.ensure_future(_read_credentials(name))  # a failure is retried
    # Shielded: one caller cancelled must not cancel the read the others wait for.
    return await asyncio.shield(read)


async def _read_credentials(name: str) -> OmniFlashCredentials:
    loaded: object = await OmniFlashCredentials.aload(name)
    if not isinstance(loaded, OmniFlashCredentials):
        raise TypeError(f"block {name!r} is not an OmniFlashCredentials block")
    return loaded


def default_storage() -> WritableFileSystem:
    """The local archive directory from ``OMNIFLASH_ARCHIVE_DIR`` (default ``./videos``)."""
    return LocalFileSystem(basepath=str(OmniFlashSettings().archive_dir.expanduser().resolve()))


def submission_key(request: VideoRequest, idempotency_key: str | None) -> str:
    """The persisted-result key of a submission: one paid video per (request, idempotency key).

    Without an explicit key the current flow run scopes it, so a retried run reuses its video
    while a new run makes a new one; outside any flow each task run is its own scope.
    """
    scope = idempotency_key or (
        f"flow-run-{flow_run.get_id()}" if flow_run.get_id() else f"task-run-{task_run.get_id()}"
    )
    digest = hashlib.sha256(f"{request.fingerprint()}|{scope}".encode()).hexdigest()
    return f"omniflash-submit-{digest}"


def record_store(storage: WritableFileSystem | None = None) -> ResultStore:
    """A JSON result store over ``storage``, default the current run's result storage.

    Built afresh because a flow run's own store writes no record metadata, so its ``aexists``
    never finds the records that tasks (and :class:`BatchRecords`) write.
    """
    return ResultStore(
        result_storage=storage or get_result_store().result_storage, serializer=JSONSerializer()
    )


async def submission_recorded(
    request: VideoRequest, idempotency_key: str, store: ResultStore | None = None
) -> bool:
    """Whether ``submit_video`` already holds a task id for this request and key (so running it
    again costs nothing and the video only needs polling)."""
    store = store or record_store()
    return await store.aexists(submission_key(request, idempotency_key))


def _submission_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return submission_key(parameters["request"], parameters.get("idempotency_key"))


@task(
    name="submit-video",
    task_run_name="submit-video",
    cache_key_fn=_submission_cache_key,
    persist_result=True,
    result_serializer="json",
)
async def submit_video(
    request: VideoRequest,
    credentials_block: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Submit one video (a paid call) and return its task id; at most once per idempotency key."""
    logger = get_run_logger()
    store = get_result_store()
    intent_key = submission_key(request, idempotency_key) + "-intent"
    if await store.aexists(intent_key):
        intent = (await store.aread(intent_key)).result
        if isinstance(intent, dict) and isinstance(intent.get("task_id"), str):
            # Accepted by an earlier attempt that died before its result was saved.
            task_id = validate_task_id(intent["task_id"])
            logger.info("Reusing task %s, submitted by an earlier attempt", task_id)
            return task_id
        if intent == _IN_FLIGHT:
            raise SubmissionOutcomeUnknownError(request.fingerprint())
    await store.awrite(_IN_FLIGHT, key=intent_key)
    async with await load_client(credentials_block) as client:
        try:
            task_id = await client.submit(request)
        except OmniFlashError as exc:
            if submission_certainly_refused(exc):
                await store.awrite(_REFUSED, key=intent_key)
            raise
    # Recorded at once: the task result is only saved after this function returns, and a
    # process killed in between must still find the paid task id.
    await store.awrite({"task_id": task_id}, key=intent_key)
    logger.info("Submitted task %s (request %s)", task_id, request.fingerprint()[:16])
    emit_video_event(
        "submitted",
        task_id,
        prompt=request.prompt,
        payload={"request": request.to_api_body(), "fingerprint": request.fingerprint()},
    )
    return task_id


@task(name="poll-video", task_run_name="poll-video-{task_id}", cache_policy=NO_CACHE)
async def poll_video(
    task_id: str,
    credentials_block: str | None = None,
    max_wait_seconds: float | None = None,
    first_poll_delay: float | None = None,
    prompt: str | None = None,
) -> VideoTask:
    """Wait for a task to complete, showing its progress live; raise if it fails or stalls.

    One poll loop inside one task run, paced by the client's schedule. A progress artifact on the
    run follows the API's progress, each status change is logged, and ``completed``/``failed``
    events are emitted. Pass ``first_poll_delay=0`` when resuming an old task id.
    """
    task_id = validate_task_id(task_id)
    logger = get_run_logger()
    seen: dict[str, Any] = {"status": None, "progress": 0, "artifact": None}

    async def show(progress: float) -> None:
        # Created at the first reading, not at 0 before it: one write less per video, and a
        # resumed video shows its real progress at once.
        if seen["artifact"] is None:
            seen["artifact"] = await acreate_progress_artifact(
                progress=progress,
                key=artifact_key("progress", task_id),
                description=f"Generation progress of task {task_id}",
            )
        else:
            await aupdate_progress_artifact(seen["artifact"], progress)
        seen["progress"] = progress

    async def report(update: VideoTask) -> None:
        if update.status != seen["status"]:
            logger.info("Task %s is %s (progress %s%%)", task_id, update.status, update.progress)
            seen["status"] = update.status
        progress = update.progress if update.progress is not None else seen["progress"]
        # Steps of PROGRESS_STEP points: every update is a database write on the Prefect
        # server, which a batch of hundreds of videos must not flood.
        if (
            seen["artifact"] is None
            or progress >= seen["progress"] + PROGRESS_STEP
            or (progress == 100 != seen["progress"])
        ):
            await show(float(progress))

    async with await load_client(credentials_block) as client:
        try:
            done = await client.wait(
                task_id,
                max_wait_seconds=max_wait_seconds,
                first_poll_delay=first_poll_delay,
                on_update=report,
            )
        except (GenerationFailedError, GenerationCancelledError) as exc:
            code = exc.error_code if isinstance(exc, GenerationFailedError) else "cancelled"
            emit_video_event(
                "failed", task_id, prompt=prompt, payload={"error_code": code, "reason": str(exc)}
            )
            raise
        except PollTimeoutError:
            logger.error("Task %s is still running; resume with poll_video(%r)", task_id, task_id)
            raise
    if seen["artifact"] is None or seen["progress"] != 100:
        await show(100.0)
    emit_video_event(
        "completed",
        task_id,
        prompt=prompt,
        payload={"cost": done.cost, "api_seconds": done.actual_time},
    )
    return done


def _archive_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    video: VideoTask = parameters["task"]
    storage = parameters.get("storage") or default_storage()
    destination = destination_of(storage, video_key(parameters.get("prefix", "omniflash"), video))
    digest = hashlib.sha256(f"{video.id}|{destination}".encode()).hexdigest()
    return f"omniflash-archive-{digest}"


@task(
    name="archive-video",
    task_run_name="archive-video-{task.id}",
    cache_key_fn=_archive_cache_key,
    persist_result=True,
    result_serializer="json",
)
async def archive_video(
    task: VideoTask,
    storage: WritableFileSystem | None = None,
    prefix: str = "omniflash",
    request: VideoRequest | None = None,
    credentials_block: str | None = None,
) -> ArchivedVideo:
    """Stream a completed video into ``storage`` (default: the local archive directory).

    The key is ``<prefix>/<YYYY-MM-DD>/<task_id>.mp4`` with a sidecar JSON beside it. An expired
    URL is renewed by reading the task once more; if that URL fails too,
    :class:`VideoExpiredError` is raised. The video never appears half-written under its key.
    """
    logger = get_run_logger()
    target = storage if storage is not None else default_storage()
    key = video_key(prefix, task)
    started = time.monotonic()
    async with await load_client(credentials_block) as client:
        with TemporaryDirectory(prefix="omniflash-") as scratch:
            staged = staging_path(target, key, Path(scratch))
            try:
                source, downloaded = await _download_fresh(client, task, staged, logger)
                check_is_mp4(staged)
                location = await store_video(target, staged, key)
            finally:
                staged.unlink(missing_ok=True)
    archived = ArchivedVideo(
        task_id=task.id,
        location=location,
        storage_key=key,
        sidecar_location=destination_of(target, sidecar_key(key)),
        sha256=downloaded.sha256,
        size_bytes=downloaded.size_bytes,
        cost=task.cost,
        prompt=request.prompt if request is not None else None,
        created=task.created,
        completed=task.completed,
        api_seconds=task.actual_time,
        download_seconds=round(time.monotonic() - started, 3),
        source_expires_at=source.video_expires_at,
    )
    await write_sidecar(target, sidecar_key(key), task=source, request=request, archived=archived)
    logger.info("Archived task %s to %s (%d bytes)", task.id, location, archived.size_bytes)
    emit_video_event(
        "archived",
        task.id,
        prompt=archived.prompt,
        payload={
            "location": location,
            "sha256": archived.sha256,
            "size_bytes": archived.size_bytes,
        },
    )
    return archived


async def _download_fresh(
    client: OmniFlashClient, task: VideoTask, staged: Path, logger: RunLogger
) -> tuple[VideoTask, DownloadedVideo]:
    """Download the task's video, reading the task once more if its URL is missing or expired."""
    source = task
    renewed = False
    expires_at = task.video_expires_at
    if task.video_url is None or (expires_at is not None and expires_at <= time.time()):
        logger.info("The URL of task %s is missing or expired; reading the task again", task.id)
        source, renewed = await client.get_task(task.id), True
    while True:
        if source.video_url is None:
            raise DownloadError(f"task {task.id} is {source.status} but has no video URL")
        try:
            return source, await client.download(source.video_url, staged)
        except VideoExpiredError:
            if renewed:
                raise
            logger.warning("The URL of task %s was refused; reading the task again", task.id)
            source, renewed = await client.get_task(task.id), True
