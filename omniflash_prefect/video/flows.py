"""The ``generate_video`` and ``fetch_video`` flows: one video as one observable run.

``generate_video`` submits, polls and archives; ``fetch_video`` polls and archives a task id that
was already paid for. Importable from the package so they run as subflows of a user's pipeline,
sync or async (:mod:`omniflash_prefect.video.dispatch`; ``agenerate_video`` and ``afetch_video``
are the plain async flows); ``flows/`` holds the deployment entrypoints that ``prefect.yaml``
points at.

``generate_video_task`` makes one video the same way as a *task* run of the calling flow, with
the same parameters: the run a batch makes per video by default, and what a pipeline of
hundreds of videos should map over, since a task run costs the Prefect server a fraction of
what a flow run does.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run, task_run

from omniflash_prefect.core.models import validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.credentials import credentials_read_once
from omniflash_prefect.video.dispatch import dispatching_flow, dispatching_task
from omniflash_prefect.video.observability import short_prompt
from omniflash_prefect.video.one_video import VideoAsFlowRun, VideoAsTaskRun
from omniflash_prefect.video.spend_limits import read_spend_limit, record_settlement


def _name_from(parameters: dict[str, object]) -> str:
    prompt = parameters.get("prompt")
    return short_prompt(prompt if isinstance(prompt, str) and prompt.strip() else "video", 48)


def _run_name() -> str:
    return _name_from(flow_run.parameters)


def _task_run_name() -> str:
    return _name_from(task_run.parameters)


def _request_of(
    prompt: str,
    duration: int,
    resolution: str,
    aspect_ratio: str,
    image_urls: list[str] | None,
    video_urls: list[str] | None,
) -> VideoRequest:
    return VideoRequest.from_flow_parameters(
        {
            "prompt": prompt,
            "duration": duration,
            "resolution": resolution,
            "aspect_ratio": aspect_ratio,
            "image_urls": image_urls,
            "video_urls": video_urls,
        }
    )


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
    strict_media: bool = False,
    spend_limit: str | None = None,
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
        strict_media: Fail the run when the archived video is not what was asked for (duration,
            resolution, orientation, aspect ratio) or cannot be read; the video stays archived.
            Default: such a video is a warning, flagged in the summary and the sidecar.
        spend_limit: Name of a spend limit shared by every run naming it (``omniflash
            spend-limit set NAME --per-day AMOUNT``): the video is submitted only once the limit
            holds its estimated cost (the highest price seen for its duration and resolution);
            otherwise SpendLimitReachedError, with nothing sent. Its real cost settles it.
    """
    request = _request_of(prompt, duration, resolution, aspect_ratio, image_urls, video_urls)
    with credentials_read_once():
        video = await VideoAsFlowRun.load(
            credentials_block, storage_block, archive_prefix, result_storage_block
        )
        archived = await video.generate(request, idempotency_key, spend_limit)
    if strict_media:
        archived.raise_for_media()
    return archived


generate_video = dispatching_flow(agenerate_video)


@task(
    name="generate-video",
    task_run_name=_task_run_name,
    # Each call is its own video: the submission key and the archive's claim already make it
    # idempotent, and the archive's record keeps what its result would.
    cache_policy=NO_CACHE,
    persist_result=False,
    log_prints=False,
)
async def agenerate_video_task(
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
    strict_media: bool = False,
    spend_limit: str | None = None,
) -> ArchivedVideo:
    """Generate one video and archive it, as a task run of the calling flow.

    The parameters and guarantees are those of the ``generate_video`` flow (a test keeps the two
    signatures equal). Its submit, poll and archive run inside this task run, not as nested
    ones; its progress artifact sits on it and ends showing the video's summary.
    Tag it where it is called (``with tags("omniflash"): ...``): a task run cannot retag itself
    without a write. Without an ``idempotency_key``, each call is its own video, and a retried
    flow run reuses every video of its earlier attempt one for one.
    """
    request = _request_of(prompt, duration, resolution, aspect_ratio, image_urls, video_urls)
    with credentials_read_once():
        video = await VideoAsTaskRun.load(
            credentials_block, storage_block, archive_prefix, result_storage_block
        )
        archived = await video.generate(request, idempotency_key, spend_limit)
    if strict_media:
        archived.raise_for_media()
    return archived


generate_video_task = dispatching_task(agenerate_video_task)


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
    spend_limit: str | None = None,
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
        spend_limit: Count the task's cost on this spend limit (nothing is reserved: the video
            was paid for already). A task already counted there is not counted again.
    """
    with credentials_read_once():
        task_id = validate_task_id(task_id)
        if spend_limit is not None:
            await read_spend_limit(spend_limit)  # a wrong name fails before any download
        video = await VideoAsFlowRun.load(
            credentials_block, storage_block, archive_prefix, result_storage_block
        )
        archived = await video.follow(task_id, request=None, resuming=True)
    if spend_limit is not None:
        await record_settlement(spend_limit, archived.task_id, archived.cost)
    return archived


fetch_video = dispatching_flow(afetch_video)
