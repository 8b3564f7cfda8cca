"""Reading what a run left on the Prefect server: artifacts and events."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import Artifact, TaskRun
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.events.schemas.events import ReceivedEvent
from prefect.events.worker import EventsWorker


async def run_artifacts(flow_run_id: UUID) -> list[Artifact]:
    """Every artifact created by the flow run or its task runs."""
    async with get_client() as client:
        return await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


async def _drain_events(within: float) -> None:
    """Send every event this process has queued (task runs reach the server as events)."""
    drained = EventsWorker.drain_all(timeout=within, at_exit=False)
    if inspect.isawaitable(drained):
        await drained


async def task_runs_of(
    flow_run_id: UUID, enough: Callable[[list[TaskRun]], bool], within: float = 30
) -> list[TaskRun]:
    """The task runs of a flow run as the server stores them, once ``enough`` says they are all
    there (e.g. in a final state), or when ``within`` seconds have passed.

    Task runs are recorded from their events, which the server persists in batches: drain this
    process's events, then read until the server has them.
    """
    await _drain_events(within)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if enough(runs) or loop.time() > deadline:
                return runs
            await asyncio.sleep(0.2)


async def stored_events(
    prefix: str, enough: Callable[[list[ReceivedEvent]], bool], within: float = 30
) -> list[ReceivedEvent]:
    """The stored events whose names start with ``prefix`` (newest first, 50 at most), once
    ``enough`` says they are all there, or when ``within`` seconds have passed.

    Events travel through a background worker and the server's batching persister, neither of
    which can be awaited directly: drain the worker, then read until they are all there.
    """
    await _drain_events(within)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with get_client() as client:
        while True:
            page = await client.read_events(
                EventFilter(occurred=EventOccurredFilter(), event=EventNameFilter(prefix=[prefix])),
                limit=50,
            )
            if enough(page.events) or loop.time() > deadline:
                return page.events
            await asyncio.sleep(0.2)


async def omniflash_events(
    task_id: str, expected: set[str], within: float = 30
) -> list[ReceivedEvent]:
    """The ``omniflash.video.*`` events about ``task_id`` once all ``expected`` names are stored."""

    def about_the_task(events: list[ReceivedEvent]) -> list[ReceivedEvent]:
        return [e for e in events if e.resource.get("omniflash.task-id") == task_id]

    def enough(events: list[ReceivedEvent]) -> bool:
        names = {e.event.removeprefix("omniflash.video.") for e in about_the_task(events)}
        return expected <= names

    return about_the_task(await stored_events("omniflash.video.", enough, within))
