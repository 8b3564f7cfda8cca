"""Reading what a run left on the Prefect server: artifacts and events."""

from __future__ import annotations

import asyncio
import inspect
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import Artifact
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.events.schemas.events import ReceivedEvent
from prefect.events.worker import EventsWorker


async def run_artifacts(flow_run_id: UUID) -> list[Artifact]:
    """Every artifact created by the flow run or its task runs."""
    async with get_client() as client:
        return await client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


async def omniflash_events(
    task_id: str, expected: set[str], within: float = 30
) -> list[ReceivedEvent]:
    """The ``omniflash.video.*`` events about ``task_id`` once all ``expected`` names are stored.

    Events travel through a background worker and the server's batching persister, neither of
    which can be awaited directly: drain the worker, then read until they are all there.
    """
    drained = EventsWorker.drain_all(timeout=within, at_exit=False)
    if inspect.isawaitable(drained):
        await drained
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with get_client() as client:
        while True:
            page = await client.read_events(
                EventFilter(
                    occurred=EventOccurredFilter(),
                    event=EventNameFilter(prefix=["omniflash.video."]),
                ),
                limit=50,
            )
            events = [e for e in page.events if e.resource.get("omniflash.task-id") == task_id]
            if expected <= {e.event.removeprefix("omniflash.video.") for e in events}:
                return events
            if loop.time() > deadline:
                return events
            await asyncio.sleep(0.2)
