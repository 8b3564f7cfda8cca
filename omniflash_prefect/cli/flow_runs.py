"""Running a flow from a command: in this process, on a run whose id is known while it runs.

A command runs its flow here rather than through a deployment so it works on a laptop with
nothing else set up; it still creates the flow run through the Prefect API first, so the run is
visible in the UI and its progress artifacts can be read back while it runs. Without a
configured server the runs go to a local server kept running between commands
(:mod:`omniflash_prefect.cli.local_server`), or, when asked (``OMNIFLASH_PREFECT_SERVER=temporary``)
or when that one cannot start, to the temporary server Prefect starts in each command, given more
time to start than Prefect's own default.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import TagsContext
from prefect.flow_engine import run_flow_async
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)
from prefect.states import Cancelled, Pending
from prefect.utilities.urls import url_for

from omniflash_prefect.cli.local_server import (
    CHOICE_VARIABLE,
    LocalServerError,
    ensure_local_server,
    running_local_server,
    server_choice,
)
from omniflash_prefect.errors import OmniFlashError, RunCancelledError, UsageError
from omniflash_prefect.video.claims import current_record_storage
from omniflash_prefect.video.dispatch import local_heartbeats
from omniflash_prefect.video.salvage import hand_over_message, paid_and_unarchived
from omniflash_prefect.video.setup import load_storage

#: Prefect's temporary local server takes ~10 s to start (more on a busy machine); its own
#: default patience is 20 s.
TEMPORARY_SERVER_STARTUP_SECONDS = 120

#: Awaited while a run is watched, with a client and the run's id.
RunWatcher = Callable[[PrefectClient, UUID], Awaitable[None]]
#: Called with a run's id the moment the run exists, before it starts.
RunStarted = Callable[[UUID], None]


@contextlib.contextmanager
def process_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables (read by ``OmniFlashSettings``) for a block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def patient_temporary_server() -> Iterator[None]:
    """Without ``PREFECT_API_URL`` Prefect starts a temporary local server, and gives it 20 s;
    allow more, so a first run on a slow or busy machine does not time out. That throwaway
    server also sends no usage analytics (which only fail, noisily, on an offline machine)."""
    if PREFECT_API_URL.value():
        yield
        return
    timeout = max(
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), TEMPORARY_SERVER_STARTUP_SECONDS
    )
    with temporary_settings(
        {
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: timeout,
            PREFECT_SERVER_ANALYTICS_ENABLED: False,
        }
    ):
        yield


@contextlib.contextmanager
def server_for_command() -> Iterator[None]:
    """The Prefect server of a command's runs, for the block: the configured one
    (``PREFECT_API_URL``), unchanged; else the local background server, started (and announced)
    by the first command that needs it, so later commands skip the 10-20 s a temporary server
    costs; else Prefect's temporary server, when ``OMNIFLASH_PREFECT_SERVER=temporary`` asks for
    it or the background one cannot start (said on stderr: the command still runs).

    Enter it after the checks that need no server, so a usage error starts nothing.
    """
    if PREFECT_API_URL.value():
        yield
        return
    server = None
    if server_choice() == "background":
        try:
            server = ensure_local_server()
        except (LocalServerError, OSError) as exc:
            print(
                f"Could not use a local Prefect server ({exc}); this command starts a temporary "
                f"one (set {CHOICE_VARIABLE}=temporary to skip trying).",
                file=sys.stderr,
                flush=True,
            )
    if server is None:
        with patient_temporary_server():
            yield
        return
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def flow_run_ui_url(flow_run_id: UUID) -> str | None:
    """The run's page in the Prefect UI: on the configured server, or on the local background
    server (it outlives the command); None when the run went to a temporary server, now gone."""
    if PREFECT_API_URL.value():
        return url_for("flow-run", obj_id=flow_run_id)
    try:
        if server_choice() == "temporary":
            return None
    except UsageError:  # the command said so already
        return None
    server = running_local_server()
    if server is None:
        return None
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        return url_for("flow-run", obj_id=flow_run_id)


async def run_flow_watched(
    flow: Flow[..., Any],
    parameters: Mapping[str, Any],
    *,
    on_tick: RunWatcher | None = None,
    watch_interval: float = 0.5,
    on_started: RunStarted | None = None,
) -> tuple[State[Any], UUID]:
    """Run ``flow`` in this process on a flow run created up front, and return its final state.

    Creating the run first (as the flow engine itself would) makes its id known while it runs:
    every ``watch_interval`` seconds, and once at the end, ``on_tick`` is awaited with a client and
    that id, e.g. to read back the run's progress artifacts; ``on_started`` is called with it as
    soon as the run is created, so a command can say where to watch it. The run sends
    heartbeats (unless the environment says otherwise), so a killed command's run is crashed by
    the lost-runs Automation. A cancel asked for from the Prefect UI (``Cancelling``) or with
    Ctrl-C stops the run within a tick and ends it ``Cancelled``, its paid tasks handed over to a
    sweep: the state returned then carries a :class:`RunCancelledError` naming them.
    """
    arguments = dict(parameters)
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with get_client() as client:
        flow_run = await client.create_flow_run(
            flow=flow,
            parameters=flow.serialize_parameters(arguments),
            state=Pending(),
            tags=TagsContext.get().current_tags,
        )
        if on_started is not None:
            on_started(flow_run.id)
        with local_heartbeats():
            run = asyncio.create_task(
                run_flow_async(flow, flow_run=flow_run, parameters=arguments, return_type="state")
            )
        with contextlib.suppress(ValueError, RuntimeError):  # only the main thread may
            loop.add_signal_handler(signal.SIGINT, interrupted.set)
        try:
            why = await _watch(client, flow_run.id, run, interrupted, on_tick, watch_interval)
            if why is not None:
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run
                state: object = await _end_cancelled(client, flow_run, why)
            else:
                state = await run
        finally:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
        if on_tick is not None:
            await on_tick(client, flow_run.id)
    if not isinstance(state, State):
        raise OmniFlashError(f"the flow engine returned {type(state).__name__}, not a state")
    return state, flow_run.id


async def _watch(
    client: PrefectClient,
    flow_run_id: UUID,
    run: asyncio.Task[Any],
    interrupted: asyncio.Event,
    on_tick: RunWatcher | None,
    watch_interval: float,
) -> str | None:
    """Until the run ends (None), or why it is to be cancelled."""
    while True:
        done, _ = await asyncio.wait({run}, timeout=watch_interval)
        if done:
            return None
        if interrupted.is_set():
            return "cancelled with Ctrl-C"
        current = await client.read_flow_run(flow_run_id)
        if current.state is not None and current.state.is_cancelling():
            return "cancelled from the Prefect API (the UI, or prefect flow-run cancel)"
        if on_tick is not None:
            await on_tick(client, flow_run_id)


async def _end_cancelled(client: PrefectClient, flow_run: FlowRun, why: str) -> State[Any]:
    """End a run stopped here ``Cancelled``, its message naming what it paid for and did not
    archive (handed over to a sweep); the state returned carries a :class:`RunCancelledError`."""
    named = flow_run.parameters.get("result_storage_block")
    results = await load_storage(named) if isinstance(named, str) and named else None
    paid = await paid_and_unarchived(await current_record_storage(results), str(flow_run.id))
    message = f"The run was {why}."
    if paid:
        message += " " + hand_over_message(paid, str(flow_run.id))
    await client.set_flow_run_state(flow_run.id, Cancelled(message=message), force=True)
    task_ids = tuple(record.task_id for record, _ in paid if record.task_id)
    return Cancelled(message=message, data=RunCancelledError(message, task_ids))
