"""The ``generate_video`` and ``fetch_video`` flows: one video as one observable run.

``generate_video`` submits, polls and archives; ``fetch_video`` polls and archives a task id that
was already paid for. Importable from the package so they run as subflows of a user's pipeline,
sync or async (:mod:`omniflash_prefect.video.dispatch`; ``agenerate_video`` and ``afetch_video``
are the plain async flows); ``flows/`` holds the deployment entrypoints that ``prefect.yaml``
points at.
"""

from __future__ import annotations

import time
from typing import ParamSpec, TypeVar

from prefect import Task, flow, get_run_logger
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.filesystems import WritableFileSystem
from prefect.runtime import flow_run

from omniflash_prefect.core.errors import BlockTypeError, UsageError
from omniflash_prefect.core.models import validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.claims import current_record_storage, record_store
from omniflash_prefect.video.credentials import credentials_read_once
from omniflash_prefect.video.dispatch import dispatching_flow
from omniflash_prefect.video.observability import publish_archive_artifacts, short_prompt
from omniflash_prefect.video.submissions import submission_recorded
from omniflash_prefect.video.tasks import (
    aarchive_video,
    apoll_video,
    asubmit_video,
    default_storage,
)

P = ParamSpec("P")
R = TypeVar("R")


def _run_name() -> str:
    prompt = flow_run.parameters.get("prompt")
    return short_prompt(prompt if isinstance(prompt, str) and prompt.strip() else "video", 48)


async def load_storage(storage_block: str | None) -> WritableFileSystem:
    """The writable filesystem block named ``<type-slug>/<name>``, else the local archive dir."""
    if not storage_block:
        return default_storage()
    if "/" not in storage_block:
        raise UsageError(
            f"storage_block {storage_block!r} must be '<block-type-slug>/<block-name>', "
            "e.g. 's3-bucket/videos' or 'local-file-system/archive'"
        )
    # Loading through the base class reads the block type from the '<slug>/' part of the name.
    block: object = await Block.aload(storage_block)
    if not isinstance(block, WritableFileSystem):
        raise BlockTypeError(f"block {storage_block!r} is not a writable filesystem")
    return block


async def load_result_storage(result_storage_block: str | None) -> WritableFileSystem | None:
    """The block that keeps task ids and archive records, e.g. shared S3 for many workers."""
    if not result_storage_block:
        return None
    return await load_storage(result_storage_block)


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


@flow(
    name="generate-video",
    flow_run_name=_run_name,
    log_prints=False,
    persist_result=True,
    result_serializer="json",
)
async def agenerate_video(
    prompt: str,
    duration: int = 6,
    resolution: str = "720p",
    aspect_ratio: str = "16:9",
    image_urls: list[str] | None = None,
    video_urls: list[str] | None = None,
    credentials_block: str | None = None,
    storage_block: str | None = None,
    archive_prefix: str = "omniflash",
    idempotency_key: str | None = None,
    result_storage_block: str | None = None,
) -> ArchivedVideo:
    """Generate one Omni-Flash-Ext video and archive it.

    Args:
        prompt: Scene, people, action, camera, style and sound hints.
        duration: Seconds: 4, 6, 8 or 10.
        resolution: 720p, 1080p or 4k.
        aspect_ratio: W:H, e.g. 16:9 (landscape) or 9:16 (portrait).
        image_urls: 0 images (text-to-video), 1 (image-to-video) or 3 (reference fusion).
        video_urls: 0 or 1 motion reference video.
        credentials_block: Name of an OmniFlashCredentials block; default: OMNIFLASH_* settings.
        storage_block: '<type-slug>/<name>' of a writable filesystem block, e.g. 's3-bucket/videos';
            default: the local OMNIFLASH_ARCHIVE_DIR.
        archive_prefix: Key prefix of the archived video and its sidecar JSON.
        idempotency_key: Makes the submission idempotent across runs (default: this run only).
        result_storage_block: '<type-slug>/<name>' of a writable filesystem block that keeps the
            task id and archive records (default: Prefect's result storage); share one, e.g. an
            S3 bucket, between workers that may resume each other's videos.
    """
    request = VideoRequest.from_flow_parameters(
        {
            "prompt": prompt,
            "duration": duration,
            "resolution": resolution,
            "aspect_ratio": aspect_ratio,
            "image_urls": image_urls,
            "video_urls": video_urls,
        }
    )
    with credentials_read_once():
        video = await _Video.load(
            credentials_block, storage_block, archive_prefix, result_storage_block
        )
        return await video.generate(request, idempotency_key)


generate_video = dispatching_flow(agenerate_video)


def _fetch_run_name() -> str:
    return f"fetch-{flow_run.parameters.get('task_id', 'video')}"


@flow(
    name="fetch-video",
    flow_run_name=_fetch_run_name,
    log_prints=False,
    persist_result=True,
    result_serializer="json",
)
async def afetch_video(
    task_id: str,
    credentials_block: str | None = None,
    storage_block: str | None = None,
    archive_prefix: str = "omniflash",
    result_storage_block: str | None = None,
) -> ArchivedVideo:
    """Poll and archive a task that was already submitted (and paid for); nothing is submitted.

    For a task id read in a log, a batch report or an error message: the run waits for the task
    if it is still generating, archives its video like ``generate_video`` does, and shows the
    same progress, link and summary. A task already polled to completion, or already archived to
    the same place, costs no further call.

    Args:
        task_id: The provider's task id.
        credentials_block: Name of an OmniFlashCredentials block; default: OMNIFLASH_* settings.
        storage_block: '<type-slug>/<name>' of a writable filesystem block; default: the local
            OMNIFLASH_ARCHIVE_DIR.
        archive_prefix: Key prefix of the archived video and its sidecar JSON.
        result_storage_block: '<type-slug>/<name>' of a writable filesystem block for the records.
    """
    with credentials_read_once():
        task_id = validate_task_id(task_id)
        video = await _Video.load(
            credentials_block, storage_block, archive_prefix, result_storage_block
        )
        return await video.follow(task_id, request=None, resuming=True)


fetch_video = dispatching_flow(afetch_video)


class _Video:
    """The body of both flows: one video's tasks, with the run's storage loaded up front (a
    wrong block fails the run before anything is paid for)."""

    def __init__(
        self,
        credentials_block: str | None,
        archive_prefix: str,
        storage: WritableFileSystem,
        results: WritableFileSystem | None,
    ) -> None:
        self.credentials_block = credentials_block
        self.archive_prefix = archive_prefix
        self.storage = storage
        self.results = results
        self.started = time.monotonic()

    @classmethod
    async def load(
        cls,
        credentials_block: str | None,
        storage_block: str | None,
        archive_prefix: str,
        result_storage_block: str | None,
    ) -> _Video:
        storage = await load_storage(storage_block)
        results = await load_result_storage(result_storage_block)
        return cls(credentials_block, archive_prefix, storage, results)

    def _in_results(self, work: Task[P, R]) -> Task[P, R]:
        """``work`` keeping its records in the run's result storage block, if one was named."""
        return work if self.results is None else work.with_options(result_storage=self.results)

    async def generate(self, request: VideoRequest, idempotency_key: str | None) -> ArchivedVideo:
        """Submit (at most once per key), then follow the task to its archived video."""
        await _tag_current_run(request)
        # A video submitted by an earlier run is likely done: poll it at once.
        resuming = idempotency_key is not None and await submission_recorded(
            request, idempotency_key, record_store(await current_record_storage(self.results))
        )
        task_id = await self._in_results(asubmit_video)(
            request, credentials_block=self.credentials_block, idempotency_key=idempotency_key
        )
        return await self.follow(task_id, request=request, resuming=resuming)

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
        )
        return archived
