"""One video's three steps, submit, poll and archive, as plain coroutines inside any Prefect run.

Each step does the work and what people see of it (log lines, ``omniflash.video.*`` events,
progress) in whatever run or task run is current, and is told where the records live. The tasks
of :mod:`omniflash_prefect.video.tasks` wrap them with Prefect's memory (submission takes,
caching by task id, retries, result storage); a video that is itself a task run
(``generate_video_task``, a batch's rows) calls them directly, because a nested task run costs
the Prefect server about as much as the video's own run.

Every guarantee lives here, not in the wrappers: a submission is sent at most once per key (the
claim in :func:`~omniflash_prefect.video.submissions.submit_once`), and a task's video is
downloaded at most once per destination (the claimed ``-archived`` record).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Final

import httpx
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext
from prefect.exceptions import PrefectHTTPStatusError
from prefect.filesystems import WritableFileSystem
from prefect.results import ResultStore

from omniflash_prefect.core.models import VideoTask, validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.errors import (
    GenerationCancelledError,
    GenerationFailedError,
    PollTimeoutError,
)
from omniflash_prefect.media.inspection import inspect_video
from omniflash_prefect.video.archive import (
    ArchivedVideo,
    check_is_mp4,
    check_prefix,
    destination_of,
    sidecar_key,
    staging_path,
    store_previews,
    store_video,
    video_key,
    write_sidecar,
)
from omniflash_prefect.video.claims import claim, record_store
from omniflash_prefect.video.credentials import load_client
from omniflash_prefect.video.observability import RunLogger, TaskProgress, emit_video_event
from omniflash_prefect.video.setup import VideoSetup, default_storage
from omniflash_prefect.video.submissions import call_take, submission_key, submit_once

#: How long a poll stopped by the Prefect API being briefly unavailable waits before each of
#: its next tries (``poll_video``'s Prefect retries, and the one body of a video's own).
POLL_RETRY_DELAYS: Final = (5.0, 30.0)


def prefect_api_unavailable(error: BaseException) -> bool:
    """A failure to talk to the Prefect API (a 5xx from a busy server, a dropped connection):
    nothing of the provider's went wrong, so the same work may simply run again."""
    if isinstance(error, PrefectHTTPStatusError):
        return error.response.status_code in (502, 503, 504)
    return isinstance(error, httpx.TransportError)


def poll_record_key(task_id: str) -> str:
    """Where a task polled to completion is remembered (``poll_video``'s cache key too)."""
    return f"omniflash-poll-{hashlib.sha256(task_id.encode()).hexdigest()}"


def call_submission_key(
    request: VideoRequest, idempotency_key: str | None, run: TaskRun | None
) -> str:
    """The submission key of a call made in task run ``run``: the request and
    ``idempotency_key``, else the request and the call's take in its flow run (each call its own
    video; the same task run asking again gets the same answer)."""
    take = 0 if idempotency_key else call_take(request, run.id if run is not None else None)
    return submission_key(request, idempotency_key, take=take)


async def submit_step(
    request: VideoRequest,
    key: str,
    records: WritableFileSystem,
    credentials_block: str | None,
    *,
    destination: VideoSetup | None = None,
    spend_limit: str | None = None,
) -> str:
    """Send ``request`` unless a submission under ``key`` is recorded in ``records``; its task
    id either way (callers racing for one key wait for the one that sends). The record keeps
    ``destination`` and ``spend_limit``, so a sweep can finish the video if its run cannot; the
    flow run that pays is tagged ``omniflash``, which the sweep's Automation watches."""
    submitted = await submit_once(
        request,
        key,
        records,
        lambda: load_client(credentials_block),
        setup=destination or VideoSetup(credentials_block=credentials_block),
        spend_limit=spend_limit,
    )
    logger = get_run_logger()
    if not submitted.sent:
        logger.info("Reusing task %s, submitted earlier under the same key", submitted.task_id)
        return submitted.task_id
    logger.info("Submitted task %s (request %s)", submitted.task_id, request.fingerprint()[:16])
    await tag_flow_run("omniflash")
    emit_video_event(
        "submitted",
        submitted.task_id,
        prompt=request.prompt,
        payload={"request": request.to_api_body(), "fingerprint": request.fingerprint()},
    )
    return submitted.task_id


async def poll_step(
    task_id: str,
    progress: TaskProgress,
    *,
    credentials_block: str | None,
    max_wait_seconds: float | None = None,
    waited_before: float = 0.0,
    first_poll_delay: float | None = None,
    prompt: str | None = None,
) -> VideoTask:
    """Wait for a task to complete, reporting each reading to ``progress``; raise if it fails,
    is cancelled, or outlives the deadline (``max_wait_seconds``, default
    ``OMNIFLASH_POLL_TIMEOUT_SECONDS``, less ``waited_before``). The caller shows the progress
    as finished (:meth:`TaskProgress.finish`), possibly with the video's summary."""
    task_id = validate_task_id(task_id)
    logger = get_run_logger()
    async with await load_client(credentials_block) as client:
        budget = (
            client.poll_schedule.timeout_seconds if max_wait_seconds is None else max_wait_seconds
        )
        try:
            done = await client.wait(
                task_id,
                max_wait_seconds=max(budget - waited_before, 0.0),
                first_poll_delay=first_poll_delay,
                on_update=progress.report,
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
    emit_video_event(
        "completed",
        task_id,
        prompt=prompt,
        payload={"cost": done.cost, "api_seconds": done.actual_time},
    )
    return done


def archive_record_key(task_id: str, storage: WritableFileSystem, prefix: str) -> str:
    """The record (and claim) key of one task's video in one destination: known from the task
    id alone, so a rerun or a sweep finds an archived video without reading the task."""
    destination = destination_of(storage, check_prefix(prefix))
    digest = hashlib.sha256(f"{validate_task_id(task_id)}|{destination}".encode()).hexdigest()
    return f"omniflash-archive-{digest}"


async def read_archived(store: ResultStore, record_key: str) -> ArchivedVideo | None:
    """The video archived under ``record_key``, if any: the record written under the claim,
    else the ``archive_video`` task's cached result (rewritten by Prefect after the claim is
    let go, not atomically, so read second)."""
    for key in (f"{record_key}-archived", record_key):
        if await store.aexists(key):
            earlier = (await store.aread(key)).result
            if isinstance(earlier, ArchivedVideo):
                return earlier
    return None


async def tag_flow_run(*tags: str) -> None:
    """Add ``tags`` to the current flow run, unless it has them (then no API call)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    current = set(context.flow_run.tags)
    if set(tags) <= current:
        return
    context.flow_run.tags = sorted(current | set(tags))
    async with get_client() as client:
        await client.update_flow_run(context.flow_run.id, tags=context.flow_run.tags)


async def archive_step(
    task: VideoTask,
    records: WritableFileSystem,
    *,
    storage: WritableFileSystem | None = None,
    prefix: str = "omniflash",
    request: VideoRequest | None = None,
    credentials_block: str | None = None,
) -> ArchivedVideo:
    """Store a completed task's video and its sidecar in ``storage`` (default: the local archive
    directory), once per destination: concurrent and later callers get the same record."""
    archived, _ = await archive_once(
        task,
        records,
        storage=storage,
        prefix=prefix,
        request=request,
        credentials_block=credentials_block,
    )
    return archived


async def archive_once(
    task: VideoTask,
    records: WritableFileSystem,
    *,
    storage: WritableFileSystem | None = None,
    prefix: str = "omniflash",
    request: VideoRequest | None = None,
    credentials_block: str | None = None,
) -> tuple[ArchivedVideo, bool]:
    """:func:`archive_step`, and whether this call is the one that downloaded the video."""
    logger = get_run_logger()
    target = storage if storage is not None else default_storage()
    record_key = archive_record_key(task.id, target, prefix)
    store = record_store(records)
    # Written under the claim only: a task's own cached result, under ``record_key``, is
    # rewritten by Prefect after the claim is let go, not atomically.
    async with claim(record_key, records):
        earlier = await read_archived(store, record_key)
        if earlier is not None:
            logger.info("Task %s is archived already, at %s", task.id, earlier.location)
            return earlier, False
        archived = await _download_and_store(
            task, target, prefix, request, credentials_block, logger
        )
        await store.awrite(archived, key=f"{record_key}-archived")  # before the claim goes
    logger.info(
        "Archived task %s to %s (%d bytes)", task.id, archived.location, archived.size_bytes
    )
    report_media_check(archived, logger)
    emit_video_event(
        "archived",
        task.id,
        prompt=archived.prompt,
        payload={
            "location": archived.location,
            "sha256": archived.sha256,
            "size_bytes": archived.size_bytes,
            "media": archived.media.verdict if archived.media is not None else None,
        },
    )
    return archived, True


def report_media_check(archived: ArchivedVideo, logger: RunLogger) -> None:
    """A warning and an event when the video is flagged: ``omniflash.video.mismatch`` when it was
    read and is not what was asked for (with the asked and the delivered values),
    ``omniflash.video.unreadable`` when it could not be read at all (with the reason). Two events,
    so an Automation can tell a model that missed the request from a file that needs a look."""
    check = archived.media
    if check is None or not check.flagged:
        return
    logger.warning("Task %s: the archived video's %s", archived.task_id, check.describe())
    emit_video_event(
        check.verdict,  # "mismatch" or "unreadable": the two flagged verdicts
        archived.task_id,
        prompt=archived.prompt,
        payload={
            "verdict": check.verdict,
            "location": archived.location,
            "mismatches": [mismatch.model_dump() for mismatch in check.mismatches],
            "reason": check.reason,
            "delivered": check.facts.model_dump() if check.facts is not None else None,
        },
    )


async def _download_and_store(
    task: VideoTask,
    target: WritableFileSystem,
    prefix: str,
    request: VideoRequest | None,
    credentials_block: str | None,
    logger: RunLogger,
) -> ArchivedVideo:
    """Download, check and store the video and its sidecar; the record of what was stored."""
    key = video_key(prefix, task)
    started = time.monotonic()
    async with await load_client(credentials_block) as client:
        with TemporaryDirectory(prefix="omniflash-") as scratch:
            staged = staging_path(target, key, Path(scratch))
            try:
                source, downloaded = await client.download_task(task, staged, logger)
                check_is_mp4(staged)
                # Before the video is reported archived, and from the staged file, which is
                # local whatever the storage: a paid file is stored whatever the verdict.
                inspection = await asyncio.to_thread(inspect_video, staged, request)
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
        media=inspection.check,
        preview_keys=await store_previews(target, key, inspection.previews),
    )
    await write_sidecar(target, sidecar_key(key), task=source, request=request, archived=archived)
    return archived
