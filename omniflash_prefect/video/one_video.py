"""One video, the one body behind every way of making it: the ``generate_video`` flow and the
``generate_video_task`` task (a batch's rows by default) run :func:`generate`; ``fetch_video``
runs :func:`fetch`.

The steps (:mod:`omniflash_prefect.video.steps`) run inside whatever run is current, not as nested
task runs: a nested task run costs the Prefect server about as much as the video's own. What
Prefect's task machinery gives the ``poll_video`` task, this body does itself, the same for a
flow run and a task run:

* a completed task is remembered by its id in the run's records (the key ``poll_video`` caches
  it under), so a rerun polls nothing;
* a poll stopped by the Prefect API being briefly unavailable is tried again after
  ``POLL_RETRY_DELAYS``, within the same deadline.

What people see depends on the run: a flow run is tagged and gets a link artifact and a summary;
a task run (tagged by its caller) shows the summary on its progress artifact, one write less.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from prefect import get_run_logger
from prefect.context import TaskRunContext, get_run_context

from omniflash_prefect.core.models import VideoTask
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.errors import SubmissionOutcomeUnknownError, may_have_been_charged
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.claims import record_store
from omniflash_prefect.video.observability import (
    PROGRESS_MIN_SECONDS,
    TaskProgress,
    embedded_previews,
    publish_archive_artifacts,
    render_summary,
)
from omniflash_prefect.video.setup import LoadedSetup
from omniflash_prefect.video.spend_holds import SpendHold, SpendLimitHold, settle_holds
from omniflash_prefect.video.spend_limits import read_spend_limit, record_settlement
from omniflash_prefect.video.steps import (
    POLL_RETRY_DELAYS,
    archive_record_key,
    archive_step,
    call_submission_key,
    poll_record_key,
    poll_step,
    prefect_api_unavailable,
    read_archived,
    submit_step,
    tag_flow_run,
)
from omniflash_prefect.video.submissions import submission_recorded

#: A single video's key on its spend limit: one reservation per run.
_VIDEO = "video"


def _in_task_run() -> bool:
    """Whether the innermost run is a task run (``generate_video_task``), not a flow run."""
    return isinstance(get_run_context(), TaskRunContext)


async def generate(
    request: VideoRequest,
    setup: LoadedSetup,
    *,
    idempotency_key: str | None = None,
    spend_limit: str | None = None,
) -> ArchivedVideo:
    """Submit (at most once per key), then follow the task to its archived video; with a
    ``spend_limit``, only once the limit holds the video's estimate, settled when known."""
    if not _in_task_run():
        # Created with these tags by a batch, or tagged here: runs filter by them in the UI.
        await tag_flow_run("omniflash", request.resolution, f"{request.duration}s")
    task_run = TaskRunContext.get()
    key = call_submission_key(request, idempotency_key, task_run.task_run if task_run else None)
    # A video submitted by an earlier run is likely done: poll it at once.
    resuming = idempotency_key is not None and await submission_recorded(
        request, idempotency_key, record_store(setup.records)
    )
    holds: list[SpendHold] = []
    limit = SpendLimitHold(spend_limit) if spend_limit is not None else contextlib.nullcontext()
    async with limit as hold:
        if hold is not None:
            holds.append(hold)
            # Raises SpendLimitReachedError before anything is sent; a video an earlier run
            # paid for is held whatever the limit says.
            await hold.reserve(_VIDEO, request, paid=resuming)
        task_id: str | None = None
        try:
            task_id = await submit_step(
                request,
                key,
                setup.records,
                setup.credentials_block,
                destination=setup.destination(),
                spend_limit=spend_limit,
            )
            archived = await _follow(task_id, request, setup, resuming=resuming)
        except BaseException as exc:
            paid = (
                may_have_been_charged(exc)
                if task_id is not None
                else isinstance(exc, SubmissionOutcomeUnknownError)
            )
            await settle_holds(holds, _VIDEO, request, paid=paid, task_id=task_id)
            raise
        await settle_holds(
            holds, _VIDEO, request, paid=True, task_id=archived.task_id, cost=archived.cost
        )
    return archived


async def fetch(
    task_id: str, setup: LoadedSetup, *, spend_limit: str | None = None
) -> ArchivedVideo:
    """Follow a task already submitted (and paid for) to its archived video; with a
    ``spend_limit``, count its cost there (once per task, however often it is fetched)."""
    if spend_limit is not None:
        await read_spend_limit(spend_limit)  # a wrong name fails before any download
    archived = await _follow(task_id, None, setup, resuming=True)
    if spend_limit is not None:
        await record_settlement(spend_limit, archived.task_id, archived.cost)
    return archived


async def _follow(
    task_id: str, request: VideoRequest | None, setup: LoadedSetup, *, resuming: bool
) -> ArchivedVideo:
    """The task's archived video: already in the run's storage (no call to the provider), or
    polled until it completes (unless an earlier run recorded it completed) and archived; then
    its summary is shown."""
    started = time.monotonic()
    logger = get_run_logger()
    in_task_run = _in_task_run()
    progress = TaskProgress(task_id, logger, min_seconds=PROGRESS_MIN_SECONDS if in_task_run else 0)
    archived = await read_archived(
        record_store(setup.records),
        archive_record_key(task_id, setup.storage, setup.archive_prefix),
    )
    if archived is not None:
        logger.info("Task %s is archived already, at %s", task_id, archived.location)
    else:
        logger.info("Waiting for task %s", task_id)
        task = await _poll_once(task_id, request, setup, progress, resuming=resuming)
        archived = await archive_step(
            task,
            setup.records,
            storage=setup.storage,
            prefix=setup.archive_prefix,
            request=request,
            credentials_block=setup.credentials_block,
        )
    summary = render_summary(
        request=request,
        archived=archived,
        wall_seconds=time.monotonic() - started,
        previews=await embedded_previews(setup.storage, archived, logger),
    )
    if in_task_run:
        await progress.finish(summary)
    else:
        await progress.finish()
        await publish_archive_artifacts(archived, summary)
    return archived


async def _poll_once(
    task_id: str,
    request: VideoRequest | None,
    setup: LoadedSetup,
    progress: TaskProgress,
    *,
    resuming: bool,
) -> VideoTask:
    """The completed task: read from the records when a run polled it to completion before,
    else polled (again after each of ``POLL_RETRY_DELAYS`` when the Prefect API is briefly
    unavailable, within one deadline) and recorded."""
    store = record_store(setup.records)
    record_key = poll_record_key(task_id)
    if await store.aexists(record_key):
        recorded = (await store.aread(record_key)).result
        if isinstance(recorded, VideoTask):
            return recorded
    started = time.monotonic()
    first_poll_delay = 0.0 if resuming else None
    for delay in (*POLL_RETRY_DELAYS, None):
        try:
            done = await poll_step(
                task_id,
                progress,
                credentials_block=setup.credentials_block,
                waited_before=time.monotonic() - started,
                first_poll_delay=first_poll_delay,
                prompt=request.prompt if request is not None else None,
            )
            break
        except Exception as exc:
            if delay is None or not prefect_api_unavailable(exc):
                raise
            get_run_logger().warning(
                "Polling task %s again in %g s: the Prefect API is unavailable (%s)",
                task_id,
                delay,
                exc,
            )
            await asyncio.sleep(delay)
            first_poll_delay = 0.0
    await store.awrite(done, key=record_key)
    return done
