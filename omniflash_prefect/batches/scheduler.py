"""The scheduling of one batch run: which row starts when, and what each row's run came to.

:class:`BatchScheduler` holds a run's slots (``max_concurrency``, a global concurrency limit), the
spend ledger, pauses after 429s and an overloaded Prefect API, the stop after a 402, reruns of
lost runs, and the progress artifact. Each row goes: earlier record? -> admitted by the budget ->
started by its runner -> archived, lost (run again), or failed (its status and error).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Final

from prefect import get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.concurrency.asyncio import concurrency
from prefect.events import emit_event
from prefect.results import ResultStore

from omniflash_prefect.batches.manifest import ManifestRow
from omniflash_prefect.batches.records import BatchRecords, row_idempotency_key
from omniflash_prefect.batches.report import BatchItem, RowOutcome, SpendLedger, outcome_of_error
from omniflash_prefect.batches.runners import RowRun, RowRunner
from omniflash_prefect.core import errors
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.observability import EVENT_PREFIX, artifact_key
from omniflash_prefect.video.spend_holds import SpendLimitHold
from omniflash_prefect.video.submissions import read_submission, submission_key, submission_recorded
from omniflash_prefect.video.tasks import prefect_api_unavailable

#: How often one row is tried, when 429s outlive the client's own retries or the Prefect API
#: is overloaded (503) or unreachable.
MAX_ROW_ATTEMPTS: Final = 8
#: Rows starting at once (see ``BatchScheduler._start``), and about how long one start takes.
_STARTING_AT_ONCE: Final = 16
_START_SECONDS: Final = 1.0
_RATE_LIMIT_PAUSE_CAP: Final = 60.0
#: The least time between two updates of the batch's progress artifact (the end always shows).
_PROGRESS_SECONDS: Final = 5.0
#: Runs of one row that may be lost (worker died, deadline passed) before the row is reported.
MAX_LOST_RUNS: Final = 3


class BatchScheduler:
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
        task_runs: bool = False,
        spend_limit: SpendLimitHold | None = None,
    ) -> None:
        self.batch_id = batch_id
        self.rows = rows
        self.runner = runner
        self.parameters = parameters
        self.ledger = ledger
        #: The named spend limit shared with other runs, reserved after the batch's own budget.
        self.spend_limit = spend_limit
        self.records = records
        self.submissions = submissions
        self.slots = asyncio.Semaphore(max_concurrency)
        # Flow runs are created by API calls, a burst a server on SQLite answers with 503s; a
        # task run is an event, so rows that are task runs all start at once.
        self.starting: asyncio.Semaphore | None = (
            None if task_runs else asyncio.Semaphore(_STARTING_AT_ONCE)
        )
        self.concurrency_limit = concurrency_limit
        #: Whether the runner's run ids are task runs' (fan_out 'tasks') or flow runs'.
        self.task_runs = task_runs
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
            if self.spend_limit is not None:  # paid already: held whatever the limit says
                await self.spend_limit.reserve(
                    row.id, row.request, self.ledger.estimate(row.request), paid=True
                )
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
                {"prefect.resource.id": self._run_resource(lost), "prefect.resource.role": "lost"},
                {
                    "prefect.resource.id": self._run_resource(run_id),
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

    def _run_resource(self, run_id: str) -> str:
        return f"prefect.{'task-run' if self.task_runs else 'flow-run'}.{run_id}"

    def _run_field(self, run_id: str | None) -> dict[str, str | None]:
        """The item field naming the row's run."""
        return {"task_run_id" if self.task_runs else "flow_run_id": run_id}

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
            **self._run_field(run_id),
        )

    async def _archived(
        self, row: ManifestRow, archived: ArchivedVideo, run_id: str | None
    ) -> BatchItem:
        await self._settle(row, archived.cost, archived.task_id)
        item = _item(
            row,
            "archived",
            task_id=archived.task_id,
            location=archived.location,
            sha256=archived.sha256,
            cost=archived.cost,
            media=archived.media,
            preview_keys=archived.preview_keys,
            **self._run_field(run_id),
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
        await self._settle_failure(row, outcome, getattr(error, "task_id", None))
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
            **self._run_field(run_id),
        )

    async def _start(self, row: ManifestRow, parameters: dict[str, Any]) -> RowRun:
        """Run the row, letting at most ``_STARTING_AT_ONCE`` rows that are flow runs start in the
        same second or so.

        Every row in flight at once is fine; every flow run *starting* at once is a burst of
        writes that a Prefect server on SQLite answers with 503s. A start holds its gate until
        the row ends or about a second has passed, which is roughly what a start takes.
        """

        def started(run_id: str) -> None:
            self._run_started(row, run_id)

        if self.starting is None:
            return await self.runner(row, parameters, started)
        async with self.starting:
            running = asyncio.ensure_future(self.runner(row, parameters, started))
            try:
                await asyncio.wait({running}, timeout=_START_SECONDS)
            except asyncio.CancelledError:
                running.cancel()
                raise
        return await running

    async def _admit(self, row: ManifestRow) -> BatchItem | None:
        """Reserve the row's estimated cost, in the batch's budget and then in the spend limit,
        waiting for rows in flight while either says so; the row's final item when it must not
        start."""
        async with self.changed:
            while True:
                if self.stop_reason is not None:
                    return _item(row, "not_submitted", error=self.stop_reason)
                decision = self.ledger.decide(row.request)
                if decision == "start":
                    self.ledger.reserve(row.id, row.request)
                    break
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
        if self.spend_limit is None:
            return None
        try:  # outside the batch's lock: waiting here must not hold up settling other rows
            await self.spend_limit.reserve(row.id, row.request, self.ledger.estimate(row.request))
        except errors.SpendLimitReachedError as refused:
            await self._settle_failure(row, RowOutcome("not_submitted"))
            return _item(row, "skipped_spend_limit", error=f"not started: {refused}")
        return None

    async def _settle(self, row: ManifestRow, cost: float | None, task_id: str | None) -> None:
        async with self.changed:
            self.ledger.settle(row.id, row.request, cost)
            self.changed.notify_all()
        if self.spend_limit is not None:
            await self._on_spend_limit(self.spend_limit.settle(row.id, task_id, cost, row.request))

    async def _settle_failure(
        self, row: ManifestRow, outcome: RowOutcome, task_id: str | None = None
    ) -> None:
        async with self.changed:
            if outcome.paid:
                self.ledger.settle(row.id, row.request, None)
            else:
                self.ledger.release(row.id)
            self.changed.notify_all()
        if self.spend_limit is None:
            return
        if outcome.paid:
            await self._on_spend_limit(self.spend_limit.settle(row.id, task_id, None, row.request))
        else:
            await self._on_spend_limit(self.spend_limit.release(row.id))

    async def _on_spend_limit(self, change: Awaitable[object]) -> None:
        """Settle on the spend limit; a failure to is logged, never the row's failure (its video
        is archived or its outcome known; the holder's lease releases what stays reserved)."""
        try:
            await change
        except Exception as exc:
            self.logger.error("Could not settle on the spend limit: %s", exc)

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
        if self.finished < len(self.rows) and now - self.last_progress < _PROGRESS_SECONDS:
            return
        self.last_progress = now
        percent = 100.0 * self.finished / max(len(self.rows), 1)
        with contextlib.suppress(Exception):  # progress display must never fail a row
            await aupdate_progress_artifact(self.progress_id, percent)


def _item(row: ManifestRow, status: Any, **fields: Any) -> BatchItem:
    return BatchItem(id=row.id, line=row.line, prompt=row.request.prompt, status=status, **fields)


def _error_class(error: BaseException) -> BaseException | type[BaseException]:
    if isinstance(error, errors.RemoteRunError) and error.error_type is not None:
        return error.error_type
    return error


def _error_name(error: BaseException) -> str:
    if isinstance(error, errors.RemoteRunError) and error.error_type is not None:
        return error.error_type.__name__
    return type(error).__name__
