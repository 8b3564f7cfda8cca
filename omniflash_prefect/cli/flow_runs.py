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
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import State
from prefect.context import TagsContext
from prefect.flow_engine import run_flow_async
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)
from prefect.states import Pending
from prefect.utilities.urls import url_for

from omniflash_prefect.cli.local_server import (
    CHOICE_VARIABLE,
    LocalServerError,
    ensure_local_server,
    running_local_server,
    server_choice,
)
from omniflash_prefect.core.errors import OmniFlashError, UsageError

#: Prefect's temporary local server takes ~10 s to start (more on a busy machine); its own
#: default patience is 20 s.
TEMPORARY_SERVER_STARTUP_SECONDS = 120

#: Awaited while a run is watched, with a client and the run's id.
RunWatcher = Callable[[PrefectClient, UUID], Awaitable[None]]


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


def archive_environment(archive_dir: Path | None) -> dict[str, str]:
    """The settings that make a run in this process archive to ``--archive-dir``, if given."""
    return {"OMNIFLASH_ARCHIVE_DIR": str(archive_dir)} if archive_dir else {}


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
) -> tuple[State[Any], UUID]:
    """Run ``flow`` in this process on a flow run created up front, and return its final state.

    Creating the run first (as the flow engine itself would) makes its id known while it runs:
    every ``watch_interval`` seconds, and once at the end, ``on_tick`` is awaited with a client and
    that id, e.g. to read back the run's progress artifacts.
    """
    arguments = dict(parameters)
    async with get_client() as client:
        flow_run = await client.create_flow_run(
            flow=flow,
            parameters=flow.serialize_parameters(arguments),
            state=Pending(),
            tags=TagsContext.get().current_tags,
        )
        run = asyncio.create_task(
            run_flow_async(flow, flow_run=flow_run, parameters=arguments, return_type="state")
        )
        try:
            while on_tick is not None:
                done, _ = await asyncio.wait({run}, timeout=watch_interval)
                if done:
                    break
                await on_tick(client, flow_run.id)
            state = await run
        finally:
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
        if on_tick is not None:
            await on_tick(client, flow_run.id)
    if not isinstance(state, State):
        raise OmniFlashError(f"the flow engine returned {type(state).__name__}, not a state")
    return state, flow_run.id
