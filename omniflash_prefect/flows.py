"""The ``generate_video`` flow: submit, poll and archive one video as one observable run.

Importable from the package so it can run as a subflow of a user's pipeline; ``flows/`` holds the
deployment entrypoints that ``prefect.yaml`` points at.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.filesystems import WritableFileSystem
from prefect.runtime import flow_run

from omniflash_prefect.archive import ArchivedVideo
from omniflash_prefect.models import VideoRequest
from omniflash_prefect.observability import publish_archive_artifacts, short_prompt
from omniflash_prefect.tasks import (
    archive_video,
    credentials_read_once,
    default_storage,
    poll_video,
    record_store,
    submission_recorded,
    submit_video,
)


def _run_name() -> str:
    prompt = flow_run.parameters.get("prompt")
    return short_prompt(prompt if isinstance(prompt, str) and prompt.strip() else "video", 48)


async def load_storage(storage_block: str | None) -> WritableFileSystem:
    """The writable filesystem block named ``<type-slug>/<name>``, else the local archive dir."""
    if not storage_block:
        return default_storage()
    if "/" not in storage_block:
        raise ValueError(
            f"storage_block {storage_block!r} must be '<block-type-slug>/<block-name>', "
            "e.g. 's3-bucket/videos' or 'local-file-system/archive'"
        )
    # Loading through the base class reads the block type from the '<slug>/' part of the name.
    block: object = await Block.aload(storage_block)
    if not isinstance(block, WritableFileSystem):
        raise TypeError(f"block {storage_block!r} is not a writable filesystem")
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
async def generate_video(
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
    request = VideoRequest(
        prompt=prompt,
        duration=duration,
        resolution=resolution,
        aspect_ratio=aspect_ratio,
        image_urls=tuple(image_urls or ()),
        video_urls=tuple(video_urls or ()),
    )
    with credentials_read_once():
        return await _generate(
            request,
            prompt=prompt,
            credentials_block=credentials_block,
            storage_block=storage_block,
            archive_prefix=archive_prefix,
            idempotency_key=idempotency_key,
            result_storage_block=result_storage_block,
        )


async def _generate(
    request: VideoRequest,
    *,
    prompt: str,
    credentials_block: str | None,
    storage_block: str | None,
    archive_prefix: str,
    idempotency_key: str | None,
    result_storage_block: str | None,
) -> ArchivedVideo:
    """The body of :func:`generate_video`, run with each credentials block read once."""
    storage = await load_storage(storage_block)
    results = await load_result_storage(result_storage_block)
    submit, archive = submit_video, archive_video
    if results is not None:
        submit = submit_video.with_options(result_storage=results)
        archive = archive_video.with_options(result_storage=results)
    await _tag_current_run(request)
    started = time.monotonic()
    # A video submitted by an earlier run is likely done: poll it at once.
    resuming = idempotency_key is not None and await submission_recorded(
        request, idempotency_key, record_store(results)
    )
    task_id = await submit(
        request, credentials_block=credentials_block, idempotency_key=idempotency_key
    )
    get_run_logger().info("Waiting for task %s", task_id)
    task = await poll_video(
        task_id,
        credentials_block=credentials_block,
        prompt=prompt,
        first_poll_delay=0.0 if resuming else None,
    )
    archived = await archive(
        task,
        storage=storage,
        prefix=archive_prefix,
        request=request,
        credentials_block=credentials_block,
    )
    await publish_archive_artifacts(
        request=request,
        task=task,
        archived=archived,
        wall_seconds=time.monotonic() - started,
    )
    return archived
