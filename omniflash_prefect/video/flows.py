"""One video as one observable run: ``generate_video`` (a flow run) and ``generate_video_task``
(a task run of the calling flow) are the same function wrapped twice, and ``fetch_video`` archives
a task id that was already paid for.

A task run costs the Prefect server a fraction of what a flow run does, so ``generate_video_task``
is what a batch makes per video and what a pipeline of hundreds of videos should map over; the
``generate_video`` flow is what a deployment, a schedule or ``omniflash generate`` runs. Both run
the one body of :mod:`omniflash_prefect.video.one_video`, with the same guarantees, retries and
cache. Importable from the package so they run inside a user's pipeline, sync or async
(:mod:`omniflash_prefect.video.dispatch`); ``flows/`` holds the deployment entrypoints.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run, task_run

from omniflash_prefect.core.models import validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.video import one_video
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.credentials import credentials_read_once
from omniflash_prefect.video.dispatch import dispatching_flow, dispatching_task
from omniflash_prefect.video.observability import short_prompt
from omniflash_prefect.video.setup import VideoSetup


def _name_from(parameters: dict[str, object]) -> str:
    prompt = parameters.get("prompt")
    return short_prompt(prompt if isinstance(prompt, str) and prompt.strip() else "video", 48)


def _run_name() -> str:
    return _name_from(flow_run.parameters)


def _task_run_name() -> str:
    return _name_from(task_run.parameters)


async def _generate_video(
    prompt: str,
    duration: int = 6,
    resolution: str = "720p",
    aspect_ratio: str = "16:9",
    image_urls: list[str] | None = None,
    video_urls: list[str] | None = None,
    credentials_block: str | None = None,
    storage_block: str | None = None,
    archive_dir: str | None = None,
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
            default: archive_dir.
        archive_dir: A local directory for the video, made absolute where the run starts;
            default: OMNIFLASH_ARCHIVE_DIR (./videos).
        archive_prefix: Key prefix of the archived video and its sidecar JSON.
        idempotency_key: Makes the submission idempotent across runs. Without one, each call in
            a flow run is its own video, and a retried run reuses its videos one for one.
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
    parameters = dict(locals())  # this call's: the request and the setup are read from them
    request = VideoRequest.from_flow_parameters(parameters)
    setup = VideoSetup.from_parameters(parameters)
    with credentials_read_once():
        archived = await one_video.generate(
            request, await setup.load(), idempotency_key=idempotency_key, spend_limit=spend_limit
        )
    if strict_media:
        archived.raise_for_media()
    return archived


agenerate_video = flow(
    name="generate-video",
    flow_run_name=_run_name,
    log_prints=False,
    persist_result=True,
    result_serializer="json",
)(_generate_video)
generate_video = dispatching_flow(agenerate_video)

#: The same video as a task run of the calling flow. Tag it where it is called (``with
#: tags("omniflash"): ...``): a task run cannot retag itself without a write. Its progress
#: artifact ends showing the video's summary.
agenerate_video_task = task(
    name="generate-video",
    task_run_name=_task_run_name,
    # Each call is its own video: the submission key and the archive's claim already make it
    # idempotent, and the archive's record keeps what its result would.
    cache_policy=NO_CACHE,
    persist_result=False,
    log_prints=False,
)(_generate_video)
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
    archive_dir: str | None = None,
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
        storage_block: '<type-slug>/<name>' of a writable filesystem block; default: archive_dir.
        archive_dir: A local directory for the video; default: OMNIFLASH_ARCHIVE_DIR.
        archive_prefix: Key prefix of the archived video and its sidecar JSON.
        result_storage_block: '<type-slug>/<name>' of a writable filesystem block for the records.
        spend_limit: Count the task's cost on this spend limit (nothing is reserved: the video
            was paid for already). A task already counted there is not counted again.
    """
    setup = VideoSetup.from_parameters(locals())
    with credentials_read_once():
        task_id = validate_task_id(task_id)
        return await one_video.fetch(task_id, await setup.load(), spend_limit=spend_limit)


fetch_video = dispatching_flow(afetch_video)
