"""One video as one observable run: ``generate_video`` (a flow run) and ``generate_video_task``
(a task run of the calling flow) are the same function wrapped twice, ``fetch_video`` archives
a task id that was already paid for, and ``sweep_paid_videos`` archives every video that was paid
for and that no run will archive (:mod:`omniflash_prefect.video.salvage`).

A flow run that ends Cancelled, Crashed or Failed names, in its log and its final state, each
task it paid for and did not archive (its hooks,
:func:`~omniflash_prefect.video.salvage.hand_over_paid_videos`); the sweep archives them.

A task run costs the Prefect server a fraction of what a flow run does, so ``generate_video_task``
is what a batch makes per video and what a pipeline of hundreds of videos should map over; the
``generate_video`` flow is what a deployment, a schedule or ``omniflash generate`` runs. Both run
the one body of :mod:`omniflash_prefect.video.one_video`, with the same guarantees, retries and
cache. Importable from the package so they run inside a user's pipeline, sync or async
(:mod:`omniflash_prefect.video.dispatch`); ``flows/`` holds the deployment entrypoints.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.flows import FlowStateHook
from prefect.runtime import flow_run, task_run
from prefect.states import Completed, Failed
from prefect.utilities.urls import url_for

from omniflash_prefect.core.models import validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.video import one_video, salvage
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.credentials import credentials_read_once
from omniflash_prefect.video.dispatch import dispatching_flow, dispatching_task
from omniflash_prefect.video.observability import artifact_key, short_prompt
from omniflash_prefect.video.salvage import SweepReport, hand_over_paid_videos
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


#: What a flow run of this package does when it ends Cancelled, Crashed or Failed.
HAND_OVER: Final[list[FlowStateHook[..., Any]]] = [hand_over_paid_videos]

agenerate_video = flow(
    name="generate-video",
    flow_run_name=_run_name,
    log_prints=False,
    persist_result=True,
    result_serializer="json",
    on_cancellation=HAND_OVER,
    on_crashed=HAND_OVER,
    on_failure=HAND_OVER,
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
    on_cancellation=HAND_OVER,
    on_crashed=HAND_OVER,
    on_failure=HAND_OVER,
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


def _sweep_run_name() -> str:
    scope = flow_run.parameters.get("flow_run_id")
    return f"sweep-{scope}" if scope else "sweep"


@flow(
    name="sweep-paid-videos",
    flow_run_name=_sweep_run_name,
    log_prints=False,
    persist_result=True,
    result_serializer="json",
)
async def asweep_paid_videos(
    flow_run_id: str | None = None,
    result_storage_block: str | None = None,
    credentials_block: str | None = None,
    storage_block: str | None = None,
    archive_dir: str | None = None,
    archive_prefix: str = "omniflash",
) -> State[SweepReport]:
    """Archive every video that was paid for and that no run will archive: Completed when
    nothing was lost, Failed (loudly) when a paid video expired or a submission's outcome is
    unknown. Idempotent: run it on a schedule, after a cancel, or by hand.

    Args:
        flow_run_id: Only the videos this flow run paid for (what the Automation passes when a
            run ends Cancelled, Crashed or Failed); default: every record.
        result_storage_block: '<type-slug>/<name>' of the block that keeps the records (default:
            the run's ``result_storage_block`` with ``flow_run_id``, else Prefect's result
            storage).
        credentials_block: For videos whose run named none: an OmniFlashCredentials block;
            default: OMNIFLASH_* settings.
        storage_block: Where to archive videos whose run did not say (the ``submit_video``
            task); default: archive_dir.
        archive_dir: A local directory for those; default: OMNIFLASH_ARCHIVE_DIR.
        archive_prefix: Their key prefix.
    """
    if flow_run_id and result_storage_block is None:
        result_storage_block = await _result_storage_of(flow_run_id)
    defaults = VideoSetup.from_parameters(locals())
    with credentials_read_once():
        records = (await defaults.load()).records
        report = await salvage.sweep(records, defaults, flow_run_id=flow_run_id)
    await salvage.note_on_their_runs(report)
    await acreate_markdown_artifact(
        markdown=salvage.sweep_markdown(report, lambda run: url_for("flow-run", obj_id=run)),
        key=artifact_key("sweep", flow_run_id or "all"),
        description="Paid videos swept",
    )
    get_run_logger().info("Sweep: %s", report.headline())
    if report.ok:
        return Completed(data=report, message=report.headline())
    return Failed(data=report, message=report.headline())


sweep_paid_videos = dispatching_flow(asweep_paid_videos)


async def _result_storage_of(flow_run_id: str) -> str | None:
    """The ``result_storage_block`` a flow run was given, if any."""
    async with get_client() as client:
        run = await client.read_flow_run(UUID(flow_run_id))
    named = run.parameters.get("result_storage_block")
    return named if isinstance(named, str) and named else None
