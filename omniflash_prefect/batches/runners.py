"""How a batch runs one row's video: a ``generate-video`` task run of the batch run (the default),
or, to spread a batch over a work pool, a task run of a *slice*: a run of the batch's own
deployment that any worker picks up and that makes many rows at once, each a task run of it.

A video spends minutes waiting on the provider: it needs a coroutine, not a process. So a worker
runs a slice of ``rows_per_run`` videos in one process (with a Kubernetes or ECS pool, one pod or
task), as the in-process batch does, instead of one process per video.

A runner returns a :class:`RowRun`: what the row's video ended with (its
:class:`ArchivedVideo`, or the error that stopped it) and the runs that made it; the batch
(:mod:`omniflash_prefect.batches.scheduler`) decides from that whether the row is archived,
failed, refused for now, or lost and to be run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import run_deployment
from prefect.exceptions import FlowRunWaitTimeout
from prefect.flow_runs import wait_for_flow_run
from prefect.states import Crashed

from omniflash_prefect import errors
from omniflash_prefect.batches.manifest import ManifestRow
from omniflash_prefect.batches.report import BatchItem, BatchReport
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.flows import agenerate_video_task
from omniflash_prefect.video.setup import VideoSetup

#: The tag of a slice's run: its table and summary are its own, not the batch's.
SLICE_TAG: Final = "omniflash-batch-slice"
#: How long a slice waits for more rows before it is sent with fewer than ``rows_per_run``.
SLICE_LINGER_SECONDS: Final = 0.5


@dataclass(frozen=True)
class RowRun:
    """What a row's video ended with, and where: the video's own task run, and the flow run it
    ran in when that is not the batch run (a slice on a worker). A slice's archived row is the
    slice's report of it: the worker archived it where its own setup says, which this process
    may not be able to read."""

    outcome: ArchivedVideo | BatchItem | BaseException
    task_run_id: str | None = None
    flow_run_id: str | None = None


#: Called with the id of the run a row's video runs in as soon as it exists: its task run, or
#: the slice it is part of (the run that can be lost).
RunStarted = Callable[[str], None]
#: Runs one row's video with the batch's setup under the row's submission key; raises only when
#: the run could not even be started.
RowRunner = Callable[[ManifestRow, VideoSetup, str, RunStarted], Awaitable[RowRun]]


def _row_tags(row: ManifestRow) -> contextlib.AbstractContextManager[set[str]]:
    """The tags a row's run is created with, so it need not add them (one write less a video)."""
    return tags("omniflash", row.request.resolution, f"{row.request.duration}s")


async def run_as_task(row: ManifestRow, setup: VideoSetup, key: str, started: RunStarted) -> RowRun:
    """One row as a ``generate-video`` task run of the batch run (which cannot lose it: a
    process that dies takes the batch run with it, and running the batch again resumes it)."""
    parameters = {**row.request.flow_parameters(), **setup.parameters(), "idempotency_key": key}
    with _row_tags(row):
        running = agenerate_video_task(**parameters, return_state=True)
        state = await cast(Awaitable[State[ArchivedVideo]], running)
    run_id = state.state_details.task_run_id
    if run_id is not None:
        started(str(run_id))
    outcome: object = await state.aresult(raise_on_failure=False)
    if not isinstance(outcome, ArchivedVideo | BaseException):
        outcome = TypeError(f"generate_video_task returned {type(outcome).__name__}")
    return RowRun(outcome, task_run_id=str(run_id) if run_id else None)


@dataclass
class _Waiting:
    row: ManifestRow
    started: RunStarted
    done: asyncio.Future[RowRun]


class SliceRunner:
    """Rows handed out in slices, each a run of the batch's deployment on any worker of its pool.

    Rows wait here until ``rows_per_run`` of them are ready, or ``SLICE_LINGER_SECONDS`` passed
    since the last came; then they go as one run of ``deployment`` (the ``generate-video-batch``
    flow, with these rows as its ``requests``, under this batch's id: their submission keys and
    records are the batch's own, so a row paid for in a lost slice is resumed, never paid again).
    The slice makes its rows as task runs, all in flight at once. A slice set ``Crashed`` (its
    worker died and the lost-runs automation noticed), or with no final state after
    ``row_timeout_seconds`` (then set ``Crashed`` here), loses its unfinished rows
    (:class:`~omniflash_prefect.errors.VideoRunLostError`): the batch hands them out again.
    """

    def __init__(
        self, deployment: str, batch_id: str, rows_per_run: int, row_timeout_seconds: float
    ) -> None:
        self.deployment = deployment
        self.batch_id = batch_id
        self.rows_per_run = rows_per_run
        self.row_timeout_seconds = row_timeout_seconds
        self._waiting: list[_Waiting] = []
        self._setup: VideoSetup | None = None
        self._flush: asyncio.TimerHandle | None = None
        self._slices: set[asyncio.Task[None]] = set()
        self._env: asyncio.Future[dict[str, str]] | None = None

    async def __call__(
        self, row: ManifestRow, setup: VideoSetup, key: str, started: RunStarted
    ) -> RowRun:
        del key  # the slice derives the same key from the batch id and the row
        self._setup = setup
        waiting = _Waiting(row, started, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if len(self._waiting) >= self.rows_per_run:
            self._send()
        else:
            if self._flush is not None:
                self._flush.cancel()
            self._flush = asyncio.get_running_loop().call_later(SLICE_LINGER_SECONDS, self._send)
        return await waiting.done

    def _send(self) -> None:
        rows, self._waiting = self._waiting[: self.rows_per_run], self._waiting[self.rows_per_run :]
        if self._waiting:
            self._flush = asyncio.get_running_loop().call_later(SLICE_LINGER_SECONDS, self._send)
        if rows and self._setup is not None:
            sending = asyncio.ensure_future(self._slice(rows, self._setup))
            self._slices.add(sending)
            sending.add_done_callback(self._slices.discard)

    async def _slice(self, rows: list[_Waiting], setup: VideoSetup) -> None:
        try:
            results = await self._run(rows, setup)
        except BaseException as exc:  # the slice could not run: each row says why
            results = [RowRun(exc) for _ in rows]
        for waiting, result in zip(rows, results, strict=True):
            if not waiting.done.done():
                waiting.done.set_result(result)

    async def _run(self, rows: list[_Waiting], setup: VideoSetup) -> list[RowRun]:
        created: FlowRun = await run_deployment(  # type: ignore[misc]
            self.deployment,
            parameters={
                "requests": [{"id": w.row.id, **w.row.request.flow_parameters()} for w in rows],
                "options": {
                    "batch_id": self.batch_id,
                    "max_concurrency": len(rows),
                    "fan_out": "tasks",
                },
                **setup.parameters(),
            },
            timeout=0,  # created, not awaited: awaited below, with the rows' deadline
            as_subflow=True,
            tags=["omniflash", SLICE_TAG],
            job_variables=await self._job_variables(setup),
        )
        slice_id = str(created.id)
        for waiting in rows:
            waiting.started(slice_id)
        try:
            finished: FlowRun = await wait_for_flow_run(
                created.id, timeout=math.ceil(self.row_timeout_seconds)
            )
        except FlowRunWaitTimeout:
            lost = await _give_up_on(created, self.row_timeout_seconds)
            return [RowRun(lost, flow_run_id=slice_id) for _ in rows]
        state = finished.state
        if state is None or state.is_crashed() or not state.is_final():
            why = state.message if state is not None else "no state"
            lost = errors.VideoRunLostError(f"run {finished.name} crashed: {why}")
            return [RowRun(lost, flow_run_id=slice_id) for _ in rows]
        report: object = await state.aresult(raise_on_failure=False)
        if not isinstance(report, BatchReport):
            report = BatchReport.model_validate(report) if isinstance(report, dict) else None
        items = {item.id: item for item in report.items} if report is not None else {}
        return [self._row_of(w.row, items.get(w.row.id), finished) for w in rows]

    @staticmethod
    def _row_of(row: ManifestRow, item: BatchItem | None, run: FlowRun) -> RowRun:
        """A row's outcome in a finished slice: the slice's own report of it when archived
        (wherever the slice's worker archived it), or why it was not archived."""
        slice_id = str(run.id)
        if item is None:
            lost = errors.VideoRunLostError(f"run {run.name} ended without row {row.id}")
            return RowRun(lost, flow_run_id=slice_id)
        if item.status == "archived" and item.task_id is not None:
            return RowRun(item, task_run_id=item.task_run_id, flow_run_id=slice_id)
        why = f"row {row.id} in run {run.name}: {item.error or item.status}"
        error_type = _error_type_named(item.error or "")
        if item.status == "failed" and item.task_id is None and error_type is None:
            # Nothing paid, and no error of the video's own: the slice could not make it (its
            # credentials block or the Prefect API failed it, say under a crowd of slices
            # starting at once). It runs again, as a lost row does; its key keeps it paid once.
            return RowRun(errors.VideoRunLostError(why), flow_run_id=slice_id)
        error = errors.RemoteRunError(why, error_type)
        return RowRun(error, task_run_id=item.task_run_id, flow_run_id=slice_id)

    async def _job_variables(self, setup: VideoSetup) -> dict[str, Any] | None:
        """The slice's result (read back when it ends) must land where this process can read it,
        whichever machine runs it; an ``env`` replaces the deployment's, so it is merged."""
        results = setup.result_storage_block
        if not results:
            return None
        self._env = self._env or asyncio.ensure_future(_env_of(self.deployment))
        return {"env": {**await self._env, "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": results}}


async def _env_of(deployment: str) -> dict[str, str]:
    """The ``env`` job variable of a deployment (e.g. its heartbeat frequency)."""
    async with get_client() as client:
        found = await client.read_deployment_by_name(deployment)
    env = (found.job_variables or {}).get("env") or {}
    return {str(name): str(value) for name, value in dict(env).items()}


async def _give_up_on(run: FlowRun, row_timeout_seconds: float) -> errors.VideoRunLostError:
    """Set a run that outlived its rows' deadline ``Crashed``: whatever it still does, the
    batch no longer waits for it (a late run that goes on cannot pay or download twice)."""
    message = (
        f"no final state within {row_timeout_seconds:g} s (the rows' deadline); the batch "
        "gave up on it"
    )
    async with get_client() as client:
        await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    return errors.VideoRunLostError(f"run {run.name}: {message}")


def _error_type_named(text: str) -> type[BaseException] | None:
    """The package's error class an ``ErrorName: message`` text names, if any (all a row of a
    slice tells the batch of its failure), so the batch knows whether to retry or stop."""
    name = text.partition(":")[0].strip()
    candidate = getattr(errors, name, None)
    if isinstance(candidate, type) and issubclass(candidate, errors.OmniFlashError):
        return candidate
    return None
