"""How a batch runs one row's video: a ``generate-video`` task run of the batch run (the default),
a ``generate_video`` subflow in the batch's own process, or a run of the ``generate-video``
deployment that any worker of its pool picks up.

A runner returns what the video run ended with (its :class:`ArchivedVideo`, or the error that
stopped it) and the run's id; the batch (:mod:`omniflash_prefect.batches.flow`) decides from that
whether the row is archived, failed, refused for now, or lost and to be run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any, cast

from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.deployments import run_deployment
from prefect.exceptions import FlowRunWaitTimeout
from prefect.flow_runs import wait_for_flow_run
from prefect.states import Crashed

from omniflash_prefect import errors
from omniflash_prefect.batches.manifest import ManifestRow
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.flows import agenerate_video, agenerate_video_task
from omniflash_prefect.video.setup import VideoSetup

#: What a row's video run ended with (its archived video, or the error that stopped it) and
#: the run's id; a runner raises only when the run could not even be started.
RowRun = tuple[ArchivedVideo | BaseException, str | None]
#: Called with the id of a row's video run as soon as it exists.
RunStarted = Callable[[str], None]
#: Runs one row's video with the batch's setup under the row's submission key.
RowRunner = Callable[[ManifestRow, VideoSetup, str, RunStarted], Awaitable[RowRun]]


def _row_parameters(row: ManifestRow, setup: VideoSetup, key: str) -> dict[str, Any]:
    return {**row.request.flow_parameters(), **setup.parameters(), "idempotency_key": key}


def _row_tags(row: ManifestRow) -> contextlib.AbstractContextManager[set[str]]:
    """The tags a row's run is created with, so it need not add them (one write less a video)."""
    return tags("omniflash", row.request.resolution, f"{row.request.duration}s")


async def _outcome_of(state: State[Any], what: str) -> ArchivedVideo | BaseException:
    outcome: object = await state.aresult(raise_on_failure=False)
    if not isinstance(outcome, ArchivedVideo | BaseException):
        outcome = TypeError(f"{what} returned {type(outcome).__name__}")
    return outcome


async def run_as_task(row: ManifestRow, setup: VideoSetup, key: str, started: RunStarted) -> RowRun:
    """One row as a ``generate-video`` task run of the batch run (which cannot lose it: a
    process that dies takes the batch run with it, and running the batch again resumes it)."""
    with _row_tags(row):
        running = agenerate_video_task(**_row_parameters(row, setup, key), return_state=True)
        state = await cast(Awaitable[State[ArchivedVideo]], running)
    run_id = state.state_details.task_run_id
    if run_id is not None:
        started(str(run_id))
    return await _outcome_of(state, "generate_video_task"), str(run_id) if run_id else None


async def run_as_subflow(
    row: ManifestRow, setup: VideoSetup, key: str, started: RunStarted
) -> RowRun:
    """One row as a ``generate_video`` subflow run in this process (which cannot lose it)."""
    with _row_tags(row):
        state = await agenerate_video(**_row_parameters(row, setup, key), return_state=True)
    run_id = state.state_details.flow_run_id
    if run_id is not None:
        started(str(run_id))
    return await _outcome_of(state, "generate_video"), str(run_id) if run_id else None


def deployment_runner(deployment: str, row_timeout_seconds: float) -> RowRunner:
    """Rows as runs of the ``generate-video`` deployment, picked up by its pool's workers.

    A run set ``Crashed`` (its worker died and the lost-runs automation noticed), or with no
    final state after ``row_timeout_seconds`` (then set ``Crashed`` here), is a
    :class:`~omniflash_prefect.errors.VideoRunLostError`: the batch runs the row again.
    """
    deployment_env: asyncio.Future[dict[str, str]] | None = None

    async def run(row: ManifestRow, setup: VideoSetup, key: str, started: RunStarted) -> RowRun:
        nonlocal deployment_env
        results = setup.result_storage_block
        job_variables = None
        if results:
            # The run's own result (read back below) must land where this process can read it,
            # whichever machine runs it; an ``env`` replaces the deployment's, so it is merged.
            deployment_env = deployment_env or asyncio.ensure_future(_env_of(deployment))
            env = {**await deployment_env, "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": results}
            job_variables = {"env": env}
        created: FlowRun = await run_deployment(  # type: ignore[misc]
            deployment,
            parameters=_row_parameters(row, setup, key),
            timeout=0,  # created, not awaited: awaited below, with the row's deadline
            as_subflow=True,
            tags=["omniflash", "omniflash-batch"],
            job_variables=job_variables,
        )
        started(str(created.id))
        try:
            finished: FlowRun = await wait_for_flow_run(
                created.id, timeout=math.ceil(row_timeout_seconds)
            )
        except FlowRunWaitTimeout:
            return await _give_up_on(created, row_timeout_seconds), str(created.id)
        state = finished.state
        if state is not None and state.is_crashed():
            lost = errors.VideoRunLostError(f"run {finished.name} crashed: {state.message}")
            return lost, str(finished.id)
        if state is None or not state.is_completed():
            return await _remote_failure(finished), str(finished.id)
        archived = await state.aresult()
        if isinstance(archived, dict):
            archived = ArchivedVideo.model_validate(archived)
        if not isinstance(archived, ArchivedVideo):
            archived = TypeError(f"the generate-video run returned {type(archived).__name__}")
        return archived, str(finished.id)

    return run


async def _env_of(deployment: str) -> dict[str, str]:
    """The ``env`` job variable of a deployment (e.g. its heartbeat frequency)."""
    async with get_client() as client:
        found = await client.read_deployment_by_name(deployment)
    env = (found.job_variables or {}).get("env") or {}
    return {str(name): str(value) for name, value in dict(env).items()}


async def _give_up_on(run: FlowRun, row_timeout_seconds: float) -> errors.VideoRunLostError:
    """Set a run that outlived its row's deadline ``Crashed``: whatever it still does, the
    batch no longer waits for it (a late run that goes on cannot pay or download twice)."""
    message = (
        f"no final state within {row_timeout_seconds:g} s (the row's deadline); the batch "
        "gave up on it"
    )
    async with get_client() as client:
        await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    return errors.VideoRunLostError(f"run {run.name}: {message}")


async def _remote_failure(finished: FlowRun) -> errors.RemoteRunError:
    """The error of a deployment run that did not complete, typed when it is one of ours."""
    state = finished.state
    message = state.message if state and state.message else "no message"
    error: object = None
    if state is not None:
        with contextlib.suppress(Exception):
            error = await state.aresult(raise_on_failure=False)
    error_type = type(error) if isinstance(error, BaseException) else None
    if error_type is None or not issubclass(error_type, errors.OmniFlashError):
        error_type = next(
            (
                candidate
                for name, candidate in vars(errors).items()
                if isinstance(candidate, type)
                and issubclass(candidate, errors.OmniFlashError)
                and f"{name}:" in message
            ),
            None,
        )
    state_name = state.name if state else "unknown"
    return errors.RemoteRunError(f"run {finished.name} ended {state_name}: {message}", error_type)
