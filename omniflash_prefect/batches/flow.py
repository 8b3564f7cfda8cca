"""The ``generate_video_batch`` flow: many videos in one run, each its own ``generate_video`` run.

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
* ``fan_out="deployments"`` runs each row as a run of the ``generate-video`` deployment, so the
  rows spread over every worker of its work pool;
* a row whose run is lost (set ``Crashed`` when its worker died, or with no final state by the
  row's deadline) runs again, at most ``MAX_LOST_RUNS`` times: its submission record makes the
  new run resume the task already paid for, and an ``omniflash.video.rerun`` event names the
  row, the lost run and the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.blocks.core import Block
from prefect.client.schemas.objects import State
from prefect.concurrency.asyncio import concurrency
from prefect.events import emit_event
from prefect.filesystems import ReadableFileSystem, WritableFileSystem
from prefect.results import ResultStore
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.utilities.urls import url_for

from omniflash_prefect.batches.manifest import (
    InvalidManifestError,
    Manifest,
    ManifestError,
    ManifestRow,
    manifest_from_records,
    read_manifest,
    read_manifest_file,
)
from omniflash_prefect.batches.report import (
    BatchItem,
    BatchReport,
    RowOutcome,
    SpendLedger,
    outcome_of_error,
    report_markdown,
    report_table,
)
from omniflash_prefect.batches.runners import (
    RemoteRunError,
    RowRun,
    RowRunner,
    deployment_runner,
    run_as_subflow,
)
from omniflash_prefect.core import errors
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.claims import current_record_storage, record_store
from omniflash_prefect.video.dispatch import dispatching_flow
from omniflash_prefect.video.flows import load_result_storage
from omniflash_prefect.video.observability import EVENT_PREFIX, artifact_key
from omniflash_prefect.video.submissions import read_submission, submission_key, submission_recorded
from omniflash_prefect.video.tasks import (
    credentials_read_once,
    load_client,
    prefect_api_unavailable,
)


class FanOut(StrEnum):
    """Where a batch runs its videos: as subflows in its own process, or as runs of the
    ``generate-video`` deployment, which every worker of its pool can pick up."""

    SUBFLOWS = "subflows"
    DEPLOYMENTS = "deployments"


DEFAULT_DEPLOYMENT: Final = "generate-video/generate-video"
#: How often one row is tried, when 429s outlive the client's own retries or the Prefect API
#: is overloaded (503) or unreachable.
MAX_ROW_ATTEMPTS: Final = 8
#: Rows starting at once (see ``_Batch._start``), and about how long one start takes.
_STARTING_AT_ONCE: Final = 16
_START_SECONDS: Final = 1.0
_RATE_LIMIT_PAUSE_CAP: Final = 60.0
#: Runs of one row that may be lost (worker died, deadline passed) before the row is reported.
MAX_LOST_RUNS: Final = 3
#: What a deployment run of a row may take beyond the poll deadline: waiting for a worker,
#: starting, and archiving the video.
ROW_MARGIN_SECONDS: Final = 900.0


async def load_manifest(
    manifest: str | None, manifest_block: str | None, requests: list[dict[str, Any]] | None
) -> Manifest:
    """The rows: inline ``requests``, or a manifest file (local, or in a filesystem block)."""
    if requests is not None:
        if manifest is not None:
            raise ValueError("give either requests or a manifest, not both")
        return manifest_from_records(requests)
    if manifest is None:
        raise ValueError("give a manifest path or a list of requests")
    if manifest_block:
        block: object = await Block.aload(manifest_block)
        # Prefect's two filesystem bases are unrelated; both can read_path.
        if not isinstance(block, ReadableFileSystem | WritableFileSystem):
            raise TypeError(f"block {manifest_block!r} is not a filesystem block")
        data: object = block.read_path(manifest)
        if inspect.isawaitable(data):
            data = await data
        if not isinstance(data, bytes):
            raise ManifestError(f"block {manifest_block!r} returned no bytes for {manifest!r}")
        return read_manifest(data, manifest)
    return await asyncio.to_thread(read_manifest_file, Path(manifest))


def row_idempotency_key(batch_id: str, row_id: str) -> str:
    """The submission key of a row: one paid video per batch, row and request."""
    return f"omniflash-batch:{batch_id}:row:{row_id}"


class BatchRecords:
    """What earlier runs of a batch archived, one small JSON record per archived row."""

    def __init__(self, store: ResultStore, batch_id: str) -> None:
        self._store = store
        self._batch = hashlib.sha256(batch_id.encode()).hexdigest()[:24]

    def _key(self, row: ManifestRow) -> str:
        digest = hashlib.sha256(f"{row.id}|{row.request.fingerprint()}".encode()).hexdigest()
        return f"omniflash-batch-{self._batch}-{digest[:32]}"

    async def archived(self, row: ManifestRow) -> BatchItem | None:
        """The row's item when an earlier run archived it; no provider call."""
        key = self._key(row)
        if not await self._store.aexists(key):
            return None
        record = await self._store.aread(key)
        return BatchItem.model_validate(record.result)

    async def save(self, row: ManifestRow, item: BatchItem) -> None:
        """Record an archived row for later runs of the batch."""
        await self._store.awrite(item.model_dump(mode="json"), key=self._key(row))


class _Batch:
    """The running state of one batch: slots, ledger, pauses, stop flag, progress."""

    def __init__(
        self,
        *,
        batch_id: str,
        rows: tuple[ManifestRow, ...],
        runner: RowRunner,
        parameters: dict[str, Any],
        ledger: SpendLedger,
        records: BatchRecords,
        submissions: ResultStore,
        max_concurrency: int,
        concurrency_limit: str | None,
    ) -> None:
        self.batch_id = batch_id
        self.rows = rows
        self.runner = runner
        self.parameters = parameters
        self.ledger = ledger
        self.records = records
        self.submissions = submissions
        self.slots = asyncio.Semaphore(max_concurrency)
        self.starting = asyncio.Semaphore(_STARTING_AT_ONCE)
        self.concurrency_limit = concurrency_limit
        self.changed = asyncio.Condition()
        self.paused_until = 0.0
        self.stop_reason: str | None = None
        self.finished = 0
        self.progress_id: Any = None
        self.last_progress = 0.0
        self.runs: Counter[str] = Counter()
        self.lost_runs: Counter[str] = Counter()
        self.lost_run_of: dict[str, str] = {}  # row id -> its lost run, until the next starts
        self.logger = get_run_logger()

    async def run(self) -> list[BatchItem]:
        self.progress_id = await acreate_progress_artifact(
            progress=0.0,
            key=artifact_key("batch-progress", self.batch_id),
            description=f"Videos finished in batch {self.batch_id}",
        )
        # Earlier runs' records first, so the rows then take their slots in manifest order.
        earlier = await asyncio.gather(*(self.records.archived(row) for row in self.rows))
        items = await asyncio.gather(
            *(self._row(row, done) for row, done in zip(self.rows, earlier, strict=True))
        )
        await aupdate_progress_artifact(self.progress_id, 100.0)
        return list(items)

    async def _row(self, row: ManifestRow, earlier: BatchItem | None) -> BatchItem:
        started = time.monotonic()
        try:
            item = await self._make(row, earlier)
        except Exception as exc:  # a bug must cost one row, never its siblings
            self.logger.exception("Row %s ended with an unexpected error", row.id)
            item = _item(row, "failed", error=f"{type(exc).__name__}: {exc}")
        if item.seconds is None and not item.resumed:
            item = item.model_copy(update={"seconds": round(time.monotonic() - started, 3)})
        item = item.model_copy(update={"runs": self.runs[row.id]})
        await self._count_finished()
        return item

    async def _make(self, row: ManifestRow, earlier: BatchItem | None) -> BatchItem:
        if earlier is not None:
            self.ledger.record_cost(row.request, earlier.cost)
            self.logger.info("Row %s was archived by an earlier run: %s", row.id, earlier.location)
            return earlier.model_copy(update={"resumed": True, "seconds": 0.0, "line": row.line})
        async with self.slots:
            for attempt in range(MAX_ROW_ATTEMPTS):
                item = await self._attempt(row, attempt)
                if item is not None:
                    return item
        return _item(
            row,
            "not_submitted",
            error=f"refused {MAX_ROW_ATTEMPTS} times (429, or the Prefect API unavailable)",
        )

    async def _attempt(self, row: ManifestRow, attempt: int) -> BatchItem | None:
        """One try of a row: its final item, or None to try again after a pause."""
        key = row_idempotency_key(self.batch_id, row.id)
        # Checked on every attempt: an attempt may have paid before it failed, and then the
        # next one only polls (the submission is keyed, never sent twice).
        paid_before = await submission_recorded(row.request, key, self.submissions)
        if paid_before:
            self.ledger.reserve(row.id, row.request)
        else:
            refusal = await self._admit(row)
            if refusal is not None:
                return refusal
        await self._wait_out_pause()
        try:
            async with self._shared_slot():
                result, run_id = await self._start(row, {**self.parameters, "key": key})
        except Exception as exc:  # the run could not start
            result, run_id = exc, None
        if isinstance(result, ArchivedVideo):
            return await self._archived(row, result, run_id)
        if isinstance(result, errors.VideoRunLostError):
            return await self._lost(row, result, run_id)
        return await self._failed(row, result, run_id, attempt, paid_before)

    def _run_started(self, row: ManifestRow, run_id: str) -> None:
        """Count the row's run; when it replaces a lost one, say so in the log and an event."""
        self.runs[row.id] += 1
        lost = self.lost_run_of.pop(row.id, None)
        if lost is None:
            return
        self.logger.warning("Row %s runs again as run %s (run %s was lost)", row.id, run_id, lost)
        emit_event(
            f"{EVENT_PREFIX}.rerun",
            resource={
                "prefect.resource.id": f"omniflash.batch.{self.batch_id}.row.{row.id}",
                "prefect.resource.name": f"{self.batch_id}/{row.id}",
            },
            related=[
                {
                    "prefect.resource.id": f"prefect.flow-run.{lost}",
                    "prefect.resource.role": "lost",
                },
                {
                    "prefect.resource.id": f"prefect.flow-run.{run_id}",
                    "prefect.resource.role": "rerun",
                },
            ],
            payload={
                "batch_id": self.batch_id,
                "row": row.id,
                "lost_flow_run_id": lost,
                "new_flow_run_id": run_id,
                "run": self.runs[row.id],
            },
        )

    async def _lost(
        self, row: ManifestRow, error: errors.VideoRunLostError, run_id: str | None
    ) -> BatchItem | None:
        """A lost run: the row runs again (None), or is reported after ``MAX_LOST_RUNS``."""
        await self._settle_failure(row, RowOutcome("not_submitted"))  # re-reserved when it runs
        self.lost_runs[row.id] += 1
        if self.lost_runs[row.id] < MAX_LOST_RUNS and self.stop_reason is None:
            self.logger.warning("Row %s: %s; running it again", row.id, error)
            if run_id is not None:
                self.lost_run_of[row.id] = run_id
            return None
        recorded = await read_submission(
            self.submissions,
            submission_key(row.request, row_idempotency_key(self.batch_id, row.id)),
        )
        return _item(
            row,
            "failed",
            error=f"VideoRunLostError: {error}",
            task_id=recorded.task_id,
            flow_run_id=run_id,
        )

    async def _archived(
        self, row: ManifestRow, archived: ArchivedVideo, run_id: str | None
    ) -> BatchItem:
        await self._settle(row, archived.cost)
        item = _item(
            row,
            "archived",
            task_id=archived.task_id,
            location=archived.location,
            sha256=archived.sha256,
            cost=archived.cost,
            flow_run_id=run_id,
        )
        await self.records.save(row, item)
        return item

    async def _failed(
        self,
        row: ManifestRow,
        error: BaseException,
        run_id: str | None,
        attempt: int,
        paid_before: bool,
    ) -> BatchItem | None:
        """The item of a row whose run failed, or None when the row is to run again."""
        if prefect_api_unavailable(error):
            await self._settle_failure(row, RowOutcome("not_submitted"))
            self._pause(error, attempt, "the Prefect API is overloaded or unreachable")
            return None
        outcome = outcome_of_error(_error_class(error))
        await self._settle_failure(row, outcome)
        if outcome.retry and not paid_before:
            self._pause(error, attempt, "rate limited (429)")
            return None
        if outcome.stop_submissions and self.stop_reason is None:
            self.stop_reason = f"stopped after {type(error).__name__}: {error}"
            self.logger.error("No more submissions in this batch: %s", error)
        return _item(
            row,
            outcome.status,
            error=f"{_error_name(error)}: {error}",
            task_id=getattr(error, "task_id", None),
            flow_run_id=run_id,
        )

    async def _start(self, row: ManifestRow, parameters: dict[str, Any]) -> RowRun:
        """Run the row, letting at most ``_STARTING_AT_ONCE`` rows start in the same second or so.

        Every row in flight at once is fine; every row *starting* at once is a burst of writes
        that a Prefect server on SQLite answers with 503s. A start holds its gate until the row
        ends or about a second has passed, which is roughly what a start takes.
        """
        async with self.starting:
            running = asyncio.ensure_future(
                self.runner(row, parameters, lambda run_id: self._run_started(row, run_id))
            )
            try:
                await asyncio.wait({running}, timeout=_START_SECONDS)
            except asyncio.CancelledError:
                running.cancel()
                raise
        return await running

    async def _admit(self, row: ManifestRow) -> BatchItem | None:
        """Reserve the row's estimated cost, waiting for rows in flight while the budget says so;
        the row's final item when it must not start."""
        async with self.changed:
            while True:
                if self.stop_reason is not None:
                    return _item(row, "not_submitted", error=self.stop_reason)
                decision = self.ledger.decide(row.request)
                if decision == "start":
                    self.ledger.reserve(row.id, row.request)
                    return None
                if decision == "skip":
                    return _item(
                        row,
                        "skipped_budget",
                        error=(
                            f"not started: the budget ({self.ledger.budget:g}) cannot cover it "
                            f"(spent {self.ledger.spent:g})"
                        ),
                    )
                await self.changed.wait()

    async def _settle(self, row: ManifestRow, cost: float | None) -> None:
        async with self.changed:
            self.ledger.settle(row.id, row.request, cost)
            self.changed.notify_all()

    async def _settle_failure(self, row: ManifestRow, outcome: RowOutcome) -> None:
        async with self.changed:
            if outcome.paid:
                self.ledger.settle(row.id, row.request, None)
            else:
                self.ledger.release(row.id)
            self.changed.notify_all()

    def _pause(self, error: BaseException, attempt: int, why: str) -> None:
        """Hold every new start of the batch after a refusal: the server's hint, else backoff."""
        hint = getattr(error, "retry_after", None)
        delay = hint if isinstance(hint, int | float) else min(2.0**attempt, _RATE_LIMIT_PAUSE_CAP)
        delay *= 1 + random.random() / 4  # noqa: S311 - jitter, not security
        self.paused_until = max(self.paused_until, time.monotonic() + delay)
        self.logger.warning("%s: pausing new starts for %.1f s", why.capitalize(), delay)

    async def _wait_out_pause(self) -> None:
        # A sleep, not an event: the pause is a point in time that other rows may push back.
        while (remaining := self.paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)

    @contextlib.asynccontextmanager
    async def _shared_slot(self) -> AsyncIterator[None]:
        """A slot of the named global concurrency limit, held for the whole video."""
        if self.concurrency_limit is None:
            yield
            return
        async with concurrency(self.concurrency_limit, occupy=1, strict=True):
            yield

    async def _count_finished(self) -> None:
        self.finished += 1
        now = time.monotonic()
        if self.finished < len(self.rows) and now - self.last_progress < 1.0:
            return
        self.last_progress = now
        percent = 100.0 * self.finished / max(len(self.rows), 1)
        with contextlib.suppress(Exception):  # progress display must never fail a row
            await aupdate_progress_artifact(self.progress_id, percent)


def _item(row: ManifestRow, status: Any, **fields: Any) -> BatchItem:
    return BatchItem(id=row.id, line=row.line, prompt=row.request.prompt, status=status, **fields)


def _error_class(error: BaseException) -> BaseException | type[BaseException]:
    if isinstance(error, RemoteRunError) and error.error_type is not None:
        return error.error_type
    return error


def _error_name(error: BaseException) -> str:
    if isinstance(error, RemoteRunError) and error.error_type is not None:
        return error.error_type.__name__
    return type(error).__name__


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


def _run_page(flow_run_id: str) -> str | None:
    """The page of a flow run in the Prefect UI, when the UI's address is known."""
    return url_for("flow-run", obj_id=flow_run_id)


def _batch_run_name() -> str:
    parameters = flow_run.parameters
    batch_id = parameters.get("batch_id")
    manifest = parameters.get("manifest")
    if batch_id:
        return f"batch-{batch_id}"
    if isinstance(manifest, str) and manifest:
        return f"batch-{Path(manifest).name}"
    return "batch"


@flow(
    name="generate-video-batch",
    flow_run_name=_batch_run_name,
    log_prints=False,
    persist_result=True,  # the report stays readable from the run, e.g. of a deployment
    result_serializer="json",
)
async def agenerate_video_batch(
    manifest: str | None = None,
    requests: list[dict[str, Any]] | None = None,
    manifest_block: str | None = None,
    skip_invalid: bool = False,
    batch_id: str | None = None,
    max_concurrency: int = 8,
    concurrency_limit: str | None = None,
    budget: float | None = None,
    cost_estimate: float | None = None,
    check_balance: bool = False,
    fan_out: FanOut = FanOut.SUBFLOWS,
    deployment_name: str = DEFAULT_DEPLOYMENT,
    credentials_block: str | None = None,
    storage_block: str | None = None,
    archive_prefix: str = "omniflash",
    result_storage_block: str | None = None,
    row_timeout_seconds: float | None = None,
) -> State[BatchReport]:
    """Generate every video of a manifest; returns the report, Completed only if all archived.

    Args:
        manifest: Path of a JSONL or CSV manifest (inside ``manifest_block`` when given).
        requests: The rows as objects instead of a manifest (``prompt``, ..., optional ``id``).
        manifest_block: '<type-slug>/<name>' of a readable filesystem block holding the manifest.
        skip_invalid: Report invalid rows as skipped_invalid instead of refusing to start.
        batch_id: Names the batch; run again with the same id to resume it (default: run id).
        max_concurrency: Videos in flight at once in this run.
        concurrency_limit: Name of a Prefect global concurrency limit that caps videos in flight
            across every run and worker using it (``prefect gcl create NAME --limit N``).
        budget: Never start a video that could take the batch's spend past this.
        cost_estimate: Expected cost of one video (default: learnt from finished ones).
        check_balance: Read the balance first; refuse to start if it cannot cover the budget.
        fan_out: "subflows" (this process) or "deployments" (runs of ``deployment_name``).
        deployment_name: The generate_video deployment used by fan_out="deployments".
        credentials_block: Name of an OmniFlashCredentials block; default: OMNIFLASH_* settings.
        storage_block: '<type-slug>/<name>' of a writable filesystem block for the videos.
        archive_prefix: Key prefix of the archived videos.
        result_storage_block: Writable filesystem block for task ids and batch records (share
            one, e.g. S3, between workers); default: Prefect's result storage.
        row_timeout_seconds: With fan_out="deployments", how long to wait for one video run
            before it counts as lost and the row runs again (default: the poll deadline,
            OMNIFLASH_POLL_TIMEOUT_SECONDS, plus 900 s to wait for a worker and archive).
    """
    started = time.monotonic()
    logger = get_run_logger()
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    if budget is not None and budget <= 0:
        raise ValueError("budget must be positive")
    rows = await load_manifest(manifest, manifest_block, requests)
    if rows.problems and not skip_invalid:
        raise InvalidManifestError(rows)
    batch_id = batch_id or str(flow_run.get_id() or "local")
    results = await load_result_storage(result_storage_block)
    store = record_store(await current_record_storage(results))
    ledger = SpendLedger(budget=budget, cost_estimate=cost_estimate)
    logger.info(
        "Batch %s: %d videos, %d invalid rows skipped", batch_id, len(rows.rows), len(rows.problems)
    )
    if row_timeout_seconds is not None and row_timeout_seconds <= 0:
        raise ValueError("row_timeout_seconds must be positive")
    runner: RowRunner = run_as_subflow
    if fan_out == FanOut.DEPLOYMENTS:
        if row_timeout_seconds is None:
            row_timeout_seconds = OmniFlashSettings().poll_timeout_seconds + ROW_MARGIN_SECONDS
        runner = deployment_runner(deployment_name, row_timeout_seconds)
    batch = _Batch(
        batch_id=batch_id,
        rows=rows.rows,
        runner=runner,
        parameters={
            "credentials_block": credentials_block,
            "storage_block": storage_block,
            "archive_prefix": archive_prefix,
            "result_storage_block": result_storage_block,
        },
        ledger=ledger,
        records=BatchRecords(store, batch_id),
        submissions=store,
        max_concurrency=max_concurrency,
        concurrency_limit=concurrency_limit,
    )
    with credentials_read_once():  # one read of the credentials block for the whole batch
        if check_balance:
            await preflight_balance(credentials_block, budget, cost_estimate)
        items = await batch.run()
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
    report = BatchReport.of(batch_id, items, time.monotonic() - started)
    await acreate_table_artifact(
        table=report_table(report),
        key=artifact_key("batch", batch_id),
        description=f"Videos of batch {batch_id}",
    )
    await acreate_markdown_artifact(
        markdown=report_markdown(report, budget=budget, run_url=_run_page),
        key=artifact_key("batch-summary", batch_id),
        description=f"Summary of batch {batch_id}",
    )
    logger.info("Batch %s: %s", batch_id, report.headline())
    if report.ok:
        return Completed(data=report, message=report.headline())
    return Failed(data=report, message=report.headline())


generate_video_batch = dispatching_flow(agenerate_video_batch)
