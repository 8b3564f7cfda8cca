"""The ``generate_video_batch`` flow: many videos in one run, each its own observable run.

Thin on top of :mod:`omniflash_prefect.batches.report` (the budget and report, pure) and the
``generate_video`` flow. What it adds is the running of many rows at once, safely:

* every row is validated before anything is sent;
* at most ``max_concurrency`` videos are in flight in this run, and, with ``concurrency_limit``,
  at most the limit's size across every run and worker that names the same Prefect global
  concurrency limit;
* a 429 pauses new submissions and the row is tried again; a 402 (or 401) stops new submissions
  while the videos in flight finish and archive;
* each row's submission is keyed by ``batch_id`` and row id, and each archived row is recorded in
  the result store, so re-running the batch with the same ``batch_id`` (after a crash, a kill -9,
  a deploy) never submits a row twice;
* each row is a ``generate-video`` task run of the batch run (``fan_out="tasks"``, the
  default), or, with ``fan_out="deployments"``, of a slice: a run of this flow's deployment, on
  any worker of its pool, that makes ``rows_per_run`` rows at once under this batch's id;
* a row whose slice is lost (set ``Crashed`` when its worker died, or with no final state by the
  row's deadline) runs again in another, at most ``MAX_LOST_RUNS`` times: its submission record
  makes the new run resume the task already paid for, and an ``omniflash.video.rerun`` event
  names the row, the lost run and the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.blocks.core import Block
from prefect.client.schemas.objects import State
from prefect.filesystems import ReadableFileSystem, WritableFileSystem
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.utilities.urls import url_for

from omniflash_prefect import errors
from omniflash_prefect.batches.manifest import (
    InvalidManifestError,
    Manifest,
    ManifestError,
    manifest_from_records,
    read_manifest,
    read_manifest_file,
)
from omniflash_prefect.batches.options import BatchRunOptions, FanOut
from omniflash_prefect.batches.records import BatchRecords
from omniflash_prefect.batches.report import BatchItem, BatchReport, report_markdown, report_table
from omniflash_prefect.batches.runners import SLICE_TAG, RowRunner, SliceRunner, run_as_task
from omniflash_prefect.batches.scheduler import BatchScheduler
from omniflash_prefect.core.spending import Budget, SpendLimitView
from omniflash_prefect.media.inspection import data_uri, thumbnail
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.archive import read_stored
from omniflash_prefect.video.claims import record_store
from omniflash_prefect.video.credentials import credentials_read_once, load_client
from omniflash_prefect.video.dispatch import dispatching_flow
from omniflash_prefect.video.flows import HAND_OVER
from omniflash_prefect.video.observability import RunLogger, artifact_key
from omniflash_prefect.video.setup import VideoSetup
from omniflash_prefect.video.spend_holds import BudgetHold, SpendLimitHold
from omniflash_prefect.video.spend_limits import read_spend_limit, utc_now

#: The batch summary's gallery: its first videos, each a small poster linked to its run, and a
#: cap on the images' total size, so the summary of a batch of thousands stays light to show.
GALLERY_VIDEOS = 24
GALLERY_BYTES = 256 * 1024
GALLERY_THUMBNAIL_SIDE = 160


async def load_manifest(
    manifest: str | None, manifest_block: str | None, requests: list[dict[str, Any]] | None
) -> Manifest:
    """The rows: inline ``requests``, or a manifest file (local, or in a filesystem block)."""
    if requests is not None:
        if manifest is not None:
            raise errors.UsageError("give either requests or a manifest, not both")
        return manifest_from_records(requests)
    if manifest is None:
        raise errors.UsageError("give a manifest path or a list of requests")
    if manifest_block:
        block: object = await Block.aload(manifest_block)
        # Prefect's two filesystem bases are unrelated; both can read_path.
        if not isinstance(block, ReadableFileSystem | WritableFileSystem):
            raise errors.BlockTypeError(f"block {manifest_block!r} is not a filesystem block")
        data: object = block.read_path(manifest)
        if inspect.isawaitable(data):
            data = await data
        if not isinstance(data, bytes):
            raise ManifestError(f"block {manifest_block!r} returned no bytes for {manifest!r}")
        return read_manifest(data, manifest)
    return await asyncio.to_thread(read_manifest_file, Path(manifest))


async def preflight_balance(
    credentials_block: str | None, budget: float | None, first_estimate: float | None
) -> None:
    """Refuse to start when the balance cannot cover the budget, or the first video."""
    async with await load_client(credentials_block) as client:
        balance = await client.get_balance()
    if balance.unlimited:
        return
    remaining = balance.remain_balance
    needed = budget if budget is not None else first_estimate
    if needed is not None and remaining < needed:
        what = "the budget" if budget is not None else "the first video"
        raise errors.InsufficientBalanceError(
            f"the balance ({remaining:g}) cannot cover {what} ({needed:g}); nothing was "
            "submitted. Top up the account, or lower the budget."
        )


def _is_slice() -> bool:
    """Whether this run makes a slice of another run's batch (see :class:`SliceRunner`)."""
    return SLICE_TAG in flow_run.tags


def _batch_run_name() -> str:
    parameters = flow_run.parameters
    options = parameters.get("options")
    batch_id = getattr(options, "batch_id", None) or (
        options.get("batch_id") if isinstance(options, dict) else None
    )
    manifest = parameters.get("manifest")
    if batch_id:
        return f"batch-{batch_id}-slice" if _is_slice() else f"batch-{batch_id}"
    if isinstance(manifest, str) and manifest:
        return f"batch-{Path(manifest).name}"
    return "batch"


@flow(
    name="generate-video-batch",
    flow_run_name=_batch_run_name,
    log_prints=False,
    persist_result=True,  # the report stays readable from the run, e.g. of a deployment
    result_serializer="json",
    on_cancellation=HAND_OVER,
    on_crashed=HAND_OVER,
    on_failure=HAND_OVER,
)
async def agenerate_video_batch(
    manifest: str | None = None,
    requests: list[dict[str, Any]] | None = None,
    manifest_block: str | None = None,
    options: BatchRunOptions | None = None,
    credentials_block: str | None = None,
    storage_block: str | None = None,
    archive_dir: str | None = None,
    archive_prefix: str = "omniflash",
    result_storage_block: str | None = None,
    spend_limit: str | None = None,
    strict_media: bool = False,
) -> State[BatchReport]:
    """Generate every video of a manifest; returns the report, Completed only if all archived.

    Args:
        manifest: Path of a JSONL or CSV manifest (inside ``manifest_block`` when given).
        requests: The rows as objects instead of a manifest (``prompt``, ..., optional ``id``).
        manifest_block: '<type-slug>/<name>' of a readable filesystem block holding the manifest.
        options: How the batch runs (:class:`BatchRunOptions`: ``batch_id`` to resume,
            ``max_concurrency``, ``concurrency_limit``, ``budget``, ``cost_estimate``,
            ``check_balance``, ``fan_out``, ``skip_invalid``...); default: its defaults.
        credentials_block: Name of an OmniFlashCredentials block; default: OMNIFLASH_* settings.
        storage_block: '<type-slug>/<name>' of a writable filesystem block for the videos.
        archive_dir: A local directory for the videos (made absolute where the run starts);
            default: OMNIFLASH_ARCHIVE_DIR.
        archive_prefix: Key prefix of the archived videos.
        result_storage_block: Writable filesystem block for task ids and batch records (share
            one, e.g. S3, between workers); default: Prefect's result storage.
        spend_limit: Name of a spend limit shared by every run naming it (``omniflash
            spend-limit set NAME --per-day AMOUNT``): a row starts only when the limit can hold
            its estimated cost; rows it cannot are reported skipped_spend_limit.
        strict_media: End the batch run Failed when an archived video is not what its row asked
            for, or cannot be read, once every row is done (each video's own run completes,
            flagged in its summary; nothing is generated again). Default: such a video is a
            warning, flagged in the table, the summary and the report.
    """
    started = time.monotonic()
    setup = VideoSetup.from_parameters(locals())
    options = options or BatchRunOptions()
    rows = await load_manifest(manifest, manifest_block, requests)
    if rows.problems and not options.skip_invalid:
        raise InvalidManifestError(rows)
    with credentials_read_once():
        loaded = await setup.load()
        report = await _run_rows(rows, options, setup, loaded.records, spend_limit, started)
        await _publish(report, options, loaded.storage, spend_limit)
    if report.ok and not (strict_media and report.media_flagged):
        return Completed(data=report, message=report.headline())
    return Failed(data=report, message=report.headline())


def _runner_for(options: BatchRunOptions, batch_id: str) -> RowRunner:
    """How each row runs: a task run here, or a task run of a slice on any worker. Looked up
    here on each run, so tests can stand in for a runner."""
    if options.fan_out == FanOut.DEPLOYMENTS:
        deadline = options.row_deadline(OmniFlashSettings().poll_timeout_seconds)
        return SliceRunner(options.deployment_name, batch_id, options.rows_per_run, deadline)
    return run_as_task


async def _run_rows(
    rows: Manifest,
    options: BatchRunOptions,
    setup: VideoSetup,
    records: WritableFileSystem,
    spend_limit: str | None,
    started: float,
) -> BatchReport:
    """Run the valid rows and report every row."""
    batch_id = options.batch_id or str(flow_run.get_id() or "local")
    get_run_logger().info(
        "Batch %s: %d videos, %d invalid rows skipped", batch_id, len(rows.rows), len(rows.problems)
    )
    store = record_store(records)
    budget = BudgetHold(Budget(options.budget, options.cost_estimate))
    limit = SpendLimitHold(spend_limit) if spend_limit else contextlib.nullcontext()
    async with limit as hold:
        scheduler = BatchScheduler(
            batch_id=batch_id,
            rows=rows.rows,
            runner=_runner_for(options, batch_id),
            setup=setup,
            budget=budget,
            spend_limit=hold,
            records=BatchRecords(store, batch_id),
            submissions=store,
            max_concurrency=options.max_concurrency,
            concurrency_limit=options.concurrency_limit,
        )
        if options.check_balance:
            await preflight_balance(setup.credentials_block, options.budget, options.cost_estimate)
        items = await scheduler.run()
    items.extend(
        BatchItem(
            id=problem.id or f"row-{problem.line}",
            line=problem.line,
            status="skipped_invalid",
            error=problem.message,
        )
        for problem in rows.problems
    )
    items.sort(key=lambda item: item.line or 0)
    return BatchReport.of(batch_id, items, time.monotonic() - started)


async def gallery_thumbnails(
    report: BatchReport,
    storage: WritableFileSystem,
    logger: RunLogger,
    *,
    max_videos: int = GALLERY_VIDEOS,
    max_bytes: int = GALLERY_BYTES,
) -> dict[str, str]:
    """Small posters of the first archived videos, as ``data:`` URIs by row id, for the batch
    summary: at most ``max_videos`` of them and ``max_bytes`` in all, so a
    batch of thousands keeps an artifact the UI can show. A poster that cannot be read is left
    out (the video and its run are still listed in the table)."""
    chosen: dict[str, str] = {}
    spent = 0
    for item in report.items:
        key = item.preview_keys.get("poster")
        if item.status != "archived" or key is None:
            continue
        try:
            jpeg = await read_stored(storage, key)
            uri = data_uri(await asyncio.to_thread(thumbnail, jpeg, GALLERY_THUMBNAIL_SIDE))
        except Exception as exc:  # storage blocks raise anything, and a gallery is optional
            logger.warning("No gallery picture of row %s: %s", item.id, exc)
            continue
        if len(chosen) == max_videos or spent + len(uri) > max_bytes:
            break
        chosen[item.id] = uri
        spent += len(uri)
    return chosen


async def _spend_limit_view(name: str | None) -> SpendLimitView | None:
    """The limit as the batch leaves it, for the summary; None when it cannot be read."""
    if name is None:
        return None
    try:
        return (await read_spend_limit(name)).view(utc_now())
    except Exception as exc:  # a summary line is not worth failing the batch for
        get_run_logger().warning("Could not read spend limit %r for the summary: %s", name, exc)
        return None


async def _publish(
    report: BatchReport,
    options: BatchRunOptions,
    storage: WritableFileSystem,
    spend_limit: str | None,
) -> None:
    """The report as the run's table and summary artifacts, and its headline in the log. A
    slice's artifacts stay on its own run, unkeyed: the batch's keys show the whole batch."""
    keyed = not _is_slice()
    await acreate_table_artifact(
        table=report_table(report),
        key=artifact_key("batch", report.batch_id) if keyed else None,
        description=f"Videos of batch {report.batch_id}",
    )
    await acreate_markdown_artifact(
        markdown=report_markdown(
            report,
            budget=options.budget,
            run_url=lambda run_id: url_for("flow-run", obj_id=run_id),
            task_run_url=lambda run_id: url_for("task-run", obj_id=run_id),
            thumbnails=await gallery_thumbnails(report, storage, get_run_logger()),
            spend_limit=await _spend_limit_view(spend_limit),
        ),
        key=artifact_key("batch-summary", report.batch_id) if keyed else None,
        description=f"Summary of batch {report.batch_id}",
    )
    get_run_logger().info("Batch %s: %s", report.batch_id, report.headline())


generate_video_batch = dispatching_flow(agenerate_video_batch)
