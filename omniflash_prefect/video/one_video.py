"""The body shared by every way of making one video: the ``generate_video`` and ``fetch_video``
flows, and ``generate_video_task`` (a batch's rows by default).

:class:`VideoAsFlowRun` runs submit, poll and archive as the package's tasks, nested task runs of
the video's own flow run, which gets a link artifact and a summary. :class:`VideoAsTaskRun`
runs the same steps (:mod:`omniflash_prefect.video.steps`) inside the video's task run, without
nesting: a nested task run costs the Prefect server about as much as the video's own, and a
batch of hundreds of videos would triple its load for three rows per video in the UI. Its
progress artifact carries the summary when the video is archived, one write instead of two.

Both load the run's storage up front, so a wrong block fails the run before anything is paid for.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import ParamSpec, TypeVar

from prefect import Task, get_run_logger
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.filesystems import WritableFileSystem

from omniflash_prefect.core.errors import (
    BlockTypeError,
    SubmissionOutcomeUnknownError,
    UsageError,
    may_have_been_charged,
)
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.claims import current_record_storage, record_store
from omniflash_prefect.video.credentials import read_block_once
from omniflash_prefect.video.observability import (
    PROGRESS_MIN_SECONDS,
    TaskProgress,
    embedded_previews,
    publish_archive_artifacts,
    render_summary,
)
from omniflash_prefect.video.spend_holds import SpendLimitHold
from omniflash_prefect.video.steps import (
    archive_step,
    call_submission_key,
    default_storage,
    poll_step,
    submit_step,
)
from omniflash_prefect.video.submissions import submission_recorded
from omniflash_prefect.video.tasks import aarchive_video, apoll_video, asubmit_video

#: The one reservation of a single video on its spend limit.
_VIDEO = "video"

P = ParamSpec("P")
R = TypeVar("R")


async def load_storage(storage_block: str | None) -> WritableFileSystem:
    """The writable filesystem block named ``<type-slug>/<name>``, else the local archive dir
    (read once per run, however many videos use it; see :func:`read_block_once`)."""
    if not storage_block:
        return default_storage()
    if "/" not in storage_block:
        raise UsageError(
            f"storage_block {storage_block!r} must be '<block-type-slug>/<block-name>', "
            "e.g. 's3-bucket/videos' or 'local-file-system/archive'"
        )
    # Loading through the base class reads the block type from the '<slug>/' part of the name.
    block: object = await read_block_once(storage_block, Block.aload)
    if not isinstance(block, WritableFileSystem):
        raise BlockTypeError(f"block {storage_block!r} is not a writable filesystem")
    return block


async def load_result_storage(result_storage_block: str | None) -> WritableFileSystem | None:
    """The block that keeps task ids and archive records, e.g. shared S3 for many workers."""
    if not result_storage_block:
        return None
    return await load_storage(result_storage_block)


class OneVideo(ABC):
    """One video's storage and credentials, and the submit-then-follow order of its steps."""

    def __init__(
        self,
        credentials_block: str | None,
        archive_prefix: str,
        storage: WritableFileSystem,
        results: WritableFileSystem | None,
        records: WritableFileSystem,
    ) -> None:
        self.credentials_block = credentials_block
        self.archive_prefix = archive_prefix
        self.storage = storage
        self.results = results
        #: Where the video's submission and archive records are: ``results``, else the run's
        #: result storage (resolved once: it may be a block, read through the API).
        self.records = records
        self.started = time.monotonic()

    @classmethod
    async def load(
        cls,
        credentials_block: str | None,
        storage_block: str | None,
        archive_prefix: str,
        result_storage_block: str | None,
    ) -> OneVideo:
        storage = await load_storage(storage_block)
        results = await load_result_storage(result_storage_block)
        records = await current_record_storage(results)
        return cls(credentials_block, archive_prefix, storage, results, records)

    async def generate(
        self,
        request: VideoRequest,
        idempotency_key: str | None,
        spend_limit: str | None = None,
    ) -> ArchivedVideo:
        """Submit (at most once per key), then follow the task to its archived video; with a
        ``spend_limit``, only once the limit holds the video's estimate, settled when known."""
        # A video submitted by an earlier run is likely done: poll it at once.
        resuming = idempotency_key is not None and await submission_recorded(
            request, idempotency_key, record_store(self.records)
        )
        if spend_limit is None:
            return await self.follow(
                await self.submit(request, idempotency_key), request=request, resuming=resuming
            )
        async with SpendLimitHold(spend_limit) as hold:
            # Raises SpendLimitReachedError before anything is sent; a video an earlier run
            # paid for is held whatever the limit says.
            await hold.reserve(_VIDEO, request, paid=resuming)
            task_id: str | None = None
            try:
                task_id = await self.submit(request, idempotency_key)
                archived = await self.follow(task_id, request=request, resuming=resuming)
            except BaseException as exc:
                await _settle_failure(hold, request, task_id, exc)
                raise
            try:
                await hold.settle(_VIDEO, archived.task_id, archived.cost, request)
            except Exception as exc:  # the video is archived: that is the run's outcome
                get_run_logger().warning(
                    "Task %s is archived, but its cost could not be counted on spend limit %r "
                    "(%s); count it with `omniflash fetch %s --spend-limit %s`",
                    archived.task_id,
                    spend_limit,
                    exc,
                    archived.task_id,
                    spend_limit,
                )
            return archived

    @abstractmethod
    async def submit(self, request: VideoRequest, idempotency_key: str | None) -> str:
        """The task id of the request under its submission key, sent at most once."""

    @abstractmethod
    async def follow(
        self, task_id: str, *, request: VideoRequest | None, resuming: bool
    ) -> ArchivedVideo:
        """Poll the task until it completes, archive its video and show its summary."""


class VideoAsFlowRun(OneVideo):
    """A video that is a flow run: tagged, with its steps as nested task runs, a link artifact
    and a summary."""

    async def generate(
        self,
        request: VideoRequest,
        idempotency_key: str | None,
        spend_limit: str | None = None,
    ) -> ArchivedVideo:
        await _tag_current_run(request)
        return await super().generate(request, idempotency_key, spend_limit)

    def _in_results(self, work: Task[P, R]) -> Task[P, R]:
        """``work`` keeping its records in the run's result storage block, if one was named."""
        return work if self.results is None else work.with_options(result_storage=self.results)

    async def submit(self, request: VideoRequest, idempotency_key: str | None) -> str:
        return await self._in_results(asubmit_video)(
            request, credentials_block=self.credentials_block, idempotency_key=idempotency_key
        )

    async def follow(
        self, task_id: str, *, request: VideoRequest | None, resuming: bool
    ) -> ArchivedVideo:
        """Poll the task until it completes, archive its video and publish the run's artifacts."""
        get_run_logger().info("Waiting for task %s", task_id)
        task = await self._in_results(apoll_video)(
            task_id,
            credentials_block=self.credentials_block,
            prompt=request.prompt if request is not None else None,
            first_poll_delay=0.0 if resuming else None,
        )
        archived = await self._in_results(aarchive_video)(
            task,
            storage=self.storage,
            prefix=self.archive_prefix,
            request=request,
            credentials_block=self.credentials_block,
        )
        await publish_archive_artifacts(
            request=request,
            task=task,
            archived=archived,
            wall_seconds=time.monotonic() - self.started,
            previews=await embedded_previews(self.storage, archived, get_run_logger()),
        )
        return archived


class VideoAsTaskRun(OneVideo):
    """A video that is a task run (tagged by its caller): its steps run inside it, and its
    progress artifact ends showing the summary."""

    async def submit(self, request: VideoRequest, idempotency_key: str | None) -> str:
        context = TaskRunContext.get()
        key = call_submission_key(request, idempotency_key, context.task_run if context else None)
        return await submit_step(request, key, self.records, self.credentials_block)

    async def follow(
        self, task_id: str, *, request: VideoRequest | None, resuming: bool
    ) -> ArchivedVideo:
        logger = get_run_logger()
        logger.info("Waiting for task %s", task_id)
        progress = TaskProgress(task_id, logger, min_seconds=PROGRESS_MIN_SECONDS)
        task = await poll_step(
            task_id,
            progress,
            credentials_block=self.credentials_block,
            first_poll_delay=0.0 if resuming else None,
            prompt=request.prompt if request is not None else None,
        )
        archived = await archive_step(
            task,
            self.records,
            storage=self.storage,
            prefix=self.archive_prefix,
            request=request,
            credentials_block=self.credentials_block,
        )
        summary = render_summary(
            request=request,
            task=task,
            archived=archived,
            wall_seconds=time.monotonic() - self.started,
            previews=await embedded_previews(self.storage, archived, logger),
        )
        await progress.finish(summary)
        return archived


async def _tag_current_run(request: VideoRequest) -> None:
    """Tag the run ``omniflash``, its resolution and duration, so runs filter in the UI."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    tags = sorted({*context.flow_run.tags, "omniflash", request.resolution, f"{request.duration}s"})
    if tags == sorted(context.flow_run.tags):
        return  # created with these tags already (e.g. by a batch): no API call
    async with get_client() as client:
        await client.update_flow_run(context.flow_run.id, tags=tags)


async def _settle_failure(
    hold: SpendLimitHold, request: VideoRequest, task_id: str | None, error: BaseException
) -> None:
    """A video that failed: its estimate counts when it may have been paid for (an exact cost
    from ``omniflash fetch --spend-limit`` replaces it later), else its reservation goes back.
    Never raises over the run's own error: the holder's lease releases what stays held."""
    if task_id is None:
        paid = isinstance(error, SubmissionOutcomeUnknownError)
    else:
        paid = may_have_been_charged(error)
    try:
        if paid:
            await hold.settle(_VIDEO, task_id, None, request)
        else:
            await hold.release(_VIDEO)
    except Exception as exc:
        get_run_logger().warning("Could not settle on spend limit %r: %s", hold.name, exc)
