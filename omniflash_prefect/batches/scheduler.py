"""The scheduling of one batch run: which row starts when, and what each row's run came to.

:class:`BatchScheduler` holds a run's slots (``max_concurrency``, a global concurrency limit),
its spend holds (the batch's budget, then a named spend limit), the stop after a 402, and the
progress artifact. Each row goes: earlier record? -> reserved on every hold -> started by its
runner -> archived, lost (run again), or failed (its status and error). Two small objects keep
the rest: :class:`Pauses` (new starts held after a 429 or an overloaded Prefect API) and
:class:`LostRuns` (rows whose run was lost, run again).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Final

from prefect import get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.concurrency.asyncio import concurrency
from prefect.events import emit_event
from prefect.results import ResultStore

from omniflash_prefect import errors
from omniflash_prefect.batches.manifest import ManifestRow
from omniflash_prefect.batches.records import BatchRecords, row_idempotency_key
from omniflash_prefect.batches.report import BatchItem, ItemStatus, outcome_of_error
from omniflash_prefect.batches.runners import RowRun, RowRunner
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.observability import EVENT_PREFIX, RunLogger, artifact_key
from omniflash_prefect.video.setup import VideoSetup
from omniflash_prefect.video.spend_holds import SpendHold, settle_holds
from omniflash_prefect.video.steps import prefect_api_unavailable
from omniflash_prefect.video.submissions import read_submission, submission_key, submission_recorded

#: How often one row is tried, when 429s outlive the client's own retries or the Prefect API
#: is overloaded (503) or unreachable.
MAX_ROW_ATTEMPTS: Final = 8
_PAUSE_CAP: Final = 60.0
#: The least time between two updates of the batch's progress artifact (the end always shows).
_PROGRESS_SECONDS: Final = 5.0
#: Runs of one row that may be lost (worker died, deadline passed) before the row is reported.
MAX_LOST_RUNS: Final = 3


class Pauses:
    """When a batch's new starts may go ahead: after a refusal (429) or an overloaded Prefect
    API, every new start waits out a pause, the server's hint or else a jittered backoff."""

    def __init__(self, logger: RunLogger) -> None:
        self.until = 0.0
        self.logger = logger

    def pause(self, error: BaseException, attempt: int, why: str) -> None:
        hint = getattr(error, "retry_after", None)
        delay = hint if isinstance(hint, int | float) else min(2.0**attempt, _PAUSE_CAP)
        delay *= 1 + random.random() / 4  # noqa: S311 - jitter, not security
        self.until = max(self.until, time.monotonic() + delay)
        self.logger.warning("%s: pausing new starts for %.1f s", why.capitalize(), delay)

    async def wait(self) -> None:
        # A sleep, not an event: the pause is a point in time that other rows may push back.
        while (remaining := self.until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)


class LostRuns:
    """Rows whose video run was lost (its worker died, or it outlived the row's deadline): each
    runs again, at most ``MAX_LOST_RUNS`` times, and its next run is announced in the log and an
    ``omniflash.video.rerun`` event that names the row, the lost run and the new one."""

    def __init__(self, batch_id: str, *, logger: RunLogger) -> None:
        self.batch_id = batch_id
        self.logger = logger
        self.count: Counter[str] = Counter()
        self.waiting: dict[str, str] = {}  # row id -> its lost run, until the next one starts

    def lost(self, row_id: str, run_id: str | None, error: BaseException, stopped: bool) -> bool:
        """Count the lost run; whether the row runs again."""
        self.count[row_id] += 1
        if self.count[row_id] >= MAX_LOST_RUNS or stopped:
            return False
        self.logger.warning("Row %s: %s; running it again", row_id, error)
        if run_id is not None:
            self.waiting[row_id] = run_id
        return True

    def started(self, row_id: str, run_id: str, run_number: int) -> None:
        """A row's run started: when it replaces a lost one, say so."""
        lost = self.waiting.pop(row_id, None)
        if lost is None:
            return
        self.logger.warning("Row %s runs again as run %s (run %s was lost)", row_id, run_id, lost)
        emit_event(
            f"{EVENT_PREFIX}.rerun",
            resource={
                "prefect.resource.id": f"omniflash.batch.{self.batch_id}.row.{row_id}",
                "prefect.resource.name": f"{self.batch_id}/{row_id}",
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
                "row": row_id,
                "lost_flow_run_id": lost,
                "new_flow_run_id": run_id,
                "run": run_number,
            },
        )


class BatchScheduler:
    """The running state of one batch: slots, spend holds, stop flag, runs, progress."""

    def __init__(
        self,
        *,
        batch_id: str,
        rows: tuple[ManifestRow, ...],
        runner: RowRunner,
        setup: VideoSetup,
        budget: SpendHold,
        spend_limit: SpendHold | None,
        records: BatchRecords,
        submissions: ResultStore,
        max_concurrency: int,
        concurrency_limit: str | None,
    ) -> None:
        self.batch_id = batch_id
        self.rows = rows
        self.runner = runner
        self.setup = setup
        #: Where a row's spending goes, in order (the batch's budget, then a named spend limit),
        #: each with the status of a row it refuses.
        self.budget = budget
        self.holds: list[tuple[SpendHold, ItemStatus]] = [(budget, "skipped_budget")]
        if spend_limit is not None:
            self.holds.append((spend_limit, "skipped_spend_limit"))
        self.records = records
        self.submissions = submissions
        self.slots = asyncio.Semaphore(max_concurrency)
        self.concurrency_limit = concurrency_limit
        self.stop_reason: str | None = None
        self.finished = 0
        self.progress_id: Any = None
        self.last_progress = 0.0
        self.runs: Counter[str] = Counter()
        self.logger = get_run_logger()
        self.pauses = Pauses(self.logger)
        self.lost_runs = LostRuns(batch_id, logger=self.logger)

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
            await self.budget.settle(row.id, earlier.task_id, earlier.cost, row.request)
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
        refusal = await self._reserve(row, paid=paid_before)
        if refusal is not None:
            return refusal
        await self.pauses.wait()
        try:
            async with self._shared_slot():
                ran = await self._start(row, key)
        except Exception as exc:  # the run could not start
            ran = RowRun(exc)
        if isinstance(ran.outcome, ArchivedVideo | BatchItem):
            return await self._archived(row, ran.outcome, ran)
        if isinstance(ran.outcome, errors.VideoRunLostError):
            return await self._lost(row, ran.outcome, ran)
        return await self._failed(row, ran.outcome, ran, attempt, paid_before)

    async def _reserve(self, row: ManifestRow, *, paid: bool) -> BatchItem | None:
        """Reserve the row's estimated cost on every hold in turn (each waiting while rows in
        flight may leave room; the budget's estimate is the next one's); the row's final item
        when it must not start. A row an earlier run paid for is held whatever they say."""
        if not paid and self.stop_reason is not None:
            return _item(row, "not_submitted", error=self.stop_reason)
        estimate: float | None = None
        for number, (hold, refused_status) in enumerate(self.holds):
            try:
                estimate = await hold.reserve(row.id, row.request, estimate, paid=paid)
            except errors.SpendLimitReachedError as refused:
                await self._give_back(row, [hold for hold, _ in self.holds[:number]])
                return _item(row, refused_status, error=f"not started: {refused}")
        if not paid and self.stop_reason is not None:  # stopped while this row waited for room
            await self._give_back(row)
            return _item(row, "not_submitted", error=self.stop_reason)
        return None

    async def _give_back(self, row: ManifestRow, holds: list[SpendHold] | None = None) -> None:
        """Release the row's reservations: it did not run, or its run cost nothing."""
        every = [hold for hold, _ in self.holds] if holds is None else holds
        await settle_holds(every, row.id, row.request, paid=False)

    async def _settle(
        self, row: ManifestRow, *, paid: bool, task_id: str | None, cost: float | None = None
    ) -> None:
        """Count the row's cost on every hold (``cost`` None: its estimate), or release it."""
        holds = [hold for hold, _ in self.holds]
        await settle_holds(holds, row.id, row.request, paid=paid, task_id=task_id, cost=cost)

    async def _start(self, row: ManifestRow, key: str) -> RowRun:
        def started(run_id: str) -> None:
            self.runs[row.id] += 1
            self.lost_runs.started(row.id, run_id, self.runs[row.id])

        return await self.runner(row, self.setup, key, started)

    @staticmethod
    def _run_fields(ran: RowRun) -> dict[str, str | None]:
        """The item's fields naming the row's runs."""
        return {"task_run_id": ran.task_run_id, "flow_run_id": ran.flow_run_id}

    async def _archived(
        self, row: ManifestRow, archived: ArchivedVideo | BatchItem, ran: RowRun
    ) -> BatchItem:
        await self._settle(row, paid=True, task_id=archived.task_id, cost=archived.cost)
        item = _item(
            row,
            "archived",
            task_id=archived.task_id,
            location=archived.location,
            sha256=archived.sha256,
            cost=archived.cost,
            media=archived.media,
            preview_keys=archived.preview_keys,
            **self._run_fields(ran),
        )
        await self.records.save(row, item)
        return item

    async def _lost(
        self, row: ManifestRow, error: errors.VideoRunLostError, ran: RowRun
    ) -> BatchItem | None:
        """A lost run: the row runs again (None), or is reported after ``MAX_LOST_RUNS``."""
        await self._give_back(row)  # reserved again when it runs again
        lost_run = ran.flow_run_id
        if self.lost_runs.lost(row.id, lost_run, error, stopped=self.stop_reason is not None):
            return None
        recorded = await read_submission(
            self.submissions,
            submission_key(row.request, row_idempotency_key(self.batch_id, row.id)),
        )
        return _item(
            row,
            "failed",
            error=f"VideoRunLostError: {error}",
            task_id=recorded.task_id if recorded is not None else None,
            **self._run_fields(ran),
        )

    async def _failed(
        self, row: ManifestRow, error: BaseException, ran: RowRun, attempt: int, paid_before: bool
    ) -> BatchItem | None:
        """The item of a row whose run failed, or None when the row is to run again."""
        if prefect_api_unavailable(error):
            await self._give_back(row)
            self.pauses.pause(error, attempt, "the Prefect API is overloaded or unreachable")
            return None
        outcome = outcome_of_error(_error_class(error))
        task_id = getattr(error, "task_id", None)
        await self._settle(row, paid=outcome.paid, task_id=task_id)
        if outcome.retry and not paid_before:
            self.pauses.pause(error, attempt, "rate limited (429)")
            return None
        if outcome.stop_submissions and self.stop_reason is None:
            self.stop_reason = f"stopped after {type(error).__name__}: {error}"
            self.logger.error("No more submissions in this batch: %s", error)
        return _item(
            row,
            outcome.status,
            error=f"{_error_name(error)}: {error}",
            task_id=task_id,
            **self._run_fields(ran),
        )

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


def _item(row: ManifestRow, status: ItemStatus, **fields: Any) -> BatchItem:
    return BatchItem(id=row.id, line=row.line, prompt=row.request.prompt, status=status, **fields)


def _error_class(error: BaseException) -> BaseException | type[BaseException]:
    if isinstance(error, errors.RemoteRunError) and error.error_type is not None:
        return error.error_type
    return error


def _error_name(error: BaseException) -> str:
    if isinstance(error, errors.RemoteRunError) and error.error_type is not None:
        return error.error_type.__name__
    return type(error).__name__
