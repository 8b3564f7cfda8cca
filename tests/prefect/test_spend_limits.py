"""Named spend limits on a real Prefect server, against the emulator over loopback, in this
process: limits set and read back, refusals, failures, the next UTC day, 402s, deleted limits,
and the settled events. The commands in other processes are in ``test_spend_limit_commands``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State

from omniflash_prefect.batches.flow import agenerate_video_batch
from omniflash_prefect.batches.options import BatchRunOptions
from omniflash_prefect.batches.report import BatchReport
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import SpendLimitNotFoundError, SpendLimitReachedError
from omniflash_prefect.video import spend_limits
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.flows import agenerate_video
from omniflash_prefect.video.spend_limits import (
    define_spend_limit,
    delete_spend_limit,
    lock_name,
    read_spend_limit,
    variable_name,
)
from tests.support.server_reads import stored_events
from tests.support.spend_limits import PRICE, emulator_cost, limit_name, rows


async def batch_on(
    name: str, credentials_block: str, requests: list[dict[str, Any]], **options: Any
) -> BatchReport:
    """Run ``generate_video_batch`` on the spend limit ``name`` with these ``options``; its
    report, whatever its state."""
    state = await agenerate_video_batch(
        requests=requests,
        credentials_block=credentials_block,
        spend_limit=name,
        options=BatchRunOptions(**options),
        return_state=True,
    )
    report = await state.aresult(raise_on_failure=False)
    assert isinstance(report, BatchReport)
    return report


async def test_a_limit_is_set_shown_changed_and_deleted() -> None:
    """Set makes the block, its lock and its variable; set again changes the amount and keeps
    what was counted; delete removes all three."""
    name = limit_name()
    view = await define_spend_limit(name, 2.0)
    assert (view.name, view.limit, view.spent, view.reserved) == (name, 2.0, 0.0, 0.0)
    assert view.period == "UTC day"
    assert view.window_start.hour == view.window_start.minute == 0
    await spend_limits.record_settlement(name, "task_a", 0.4)
    changed = await define_spend_limit(name, 3.0, rolling_hours=6)
    assert (changed.limit, changed.spent, changed.rolling_hours) == (3.0, 0.4, 6)
    async with get_client() as client:
        variable = await client.read_variable_by_name(variable_name(name))
        assert variable is not None
        assert isinstance(variable.value, dict)
        assert (variable.value["spent"], variable.value["limit"]) == (0.4, 3.0)
        gcl = await client.read_global_concurrency_limit_by_name(lock_name(name))
        assert gcl.limit == 1
    await delete_spend_limit(name)
    with pytest.raises(SpendLimitNotFoundError, match="spend-limit set"):
        await read_spend_limit(name)
    async with get_client() as client:
        assert await client.read_variable_by_name(variable_name(name)) is None


async def test_a_limit_refuses_a_video_it_cannot_hold_before_anything_is_sent(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """The first video pays and teaches the price; the second would take the spend past the
    limit, so it is refused with the limit's numbers and never sent."""
    name = limit_name()
    await define_spend_limit(name, PRICE * 1.5)
    first = await agenerate_video(
        "A heron", duration=10, credentials_block=credentials_block, spend_limit=name
    )
    assert first.cost == PRICE
    with pytest.raises(SpendLimitReachedError, match="cannot hold") as refused:
        await agenerate_video(
            "A crane", duration=10, credentials_block=credentials_block, spend_limit=name
        )
    assert (refused.value.spent, refused.value.amount) == (PRICE, PRICE * 1.5)
    events = await stored_events(
        "omniflash.spend.refused",
        lambda found: any(e.payload.get("limit") == name for e in found),
    )
    event = next(e for e in events if e.payload.get("limit") == name)
    assert (event.payload["estimate"], event.payload["spent"]) == (PRICE, PRICE)
    assert event.resource.id == f"omniflash.spend-limit.{name}"
    assert emulator.state.submission_count == 1
    limit = await read_spend_limit(name)
    assert limit.prices == {"10s/720p": PRICE}
    assert limit.view(spend_limits.utc_now()).reserved == 0


async def test_a_failed_generation_releases_its_reservation(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A failed task costs nothing: nothing is counted and nothing stays reserved."""
    emulator.config.task_failure_rate = 1.0
    name = limit_name()
    await define_spend_limit(name, 1.0)
    state = await agenerate_video(
        "A kite",
        duration=10,
        credentials_block=credentials_block,
        spend_limit=name,
        return_state=True,
    )
    assert state.is_failed()
    view = (await read_spend_limit(name)).view(spend_limits.utc_now())
    assert (view.spent, view.reserved, view.in_flight) == (0.0, 0.0, 0)


async def test_a_limit_deleted_mid_video_never_fails_the_paid_video(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """The limit goes away while its video generates: the video is archived and the run
    completes (its cost could not be counted, which the log says)."""
    emulator.config.job_seconds = 2.0
    name = limit_name()
    await define_spend_limit(name, 2.0)

    async def generate() -> State[ArchivedVideo]:
        return await agenerate_video(
            "A ferry",
            duration=10,
            credentials_block=credentials_block,
            spend_limit=name,
            return_state=True,
        )

    running = asyncio.create_task(generate())
    async with asyncio.timeout(30):
        while emulator.state.submission_count == 0:  # noqa: ASYNC110 - the emulator, a thread
            await asyncio.sleep(0.05)
    await delete_spend_limit(name)
    state = await running
    assert state.is_completed()
    archived = await state.aresult()
    assert Path(archived.location).is_file()


async def test_a_batch_under_a_limit_reports_the_rows_it_refused(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """With a limit of two videos, a batch of four archives two and reports the rest
    skipped_spend_limit with the limit's numbers; the limit's spend is the emulator's."""
    name = limit_name()
    await define_spend_limit(name, PRICE * 2)
    report = await batch_on(name, credentials_block, rows(4))
    assert sorted(item.status for item in report.items) == (
        ["archived"] * 2 + ["skipped_spend_limit"] * 2
    )
    skipped = [item for item in report.items if item.status == "skipped_spend_limit"]
    assert all(f"spend limit {name!r}" in (item.error or "") for item in skipped)
    assert emulator.state.submission_count == 2
    view = (await read_spend_limit(name)).view(spend_limits.utc_now())
    assert view.spent == emulator_cost(emulator) == PRICE * 2
    assert (view.reserved, view.in_flight, view.holders) == (0.0, 0, 0)


async def test_a_limit_spent_today_starts_again_the_next_utc_day(
    emulator: EmulatorServer, credentials_block: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spent out today, the same batch makes videos again once the clock reads tomorrow; the
    history keeps both days."""
    name = limit_name()
    await define_spend_limit(name, PRICE * 2)
    today = await batch_on(name, credentials_block, rows(3, "a"))
    assert today.counts["archived"] == 2
    assert today.counts["skipped_spend_limit"] == 1
    now = spend_limits.utc_now()
    tomorrow = now.replace(hour=0, minute=0, second=30, microsecond=0) + timedelta(days=1)
    monkeypatch.setattr(spend_limits, "utc_now", lambda: tomorrow)
    again = await batch_on(name, credentials_block, rows(3, "b"))
    assert again.counts["archived"] == 2
    limit = await read_spend_limit(name)
    view = limit.view(tomorrow)
    assert view.window_start == tomorrow.replace(second=0)
    assert view.spent == PRICE * 2
    assert {day: spend.spent for day, spend in limit.days.items()} == {
        now.date().isoformat(): PRICE * 2,
        tomorrow.date().isoformat(): PRICE * 2,
    }
    assert emulator.state.submission_count == 4


async def test_402_still_stops_a_batch_under_a_limit(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """The limit would allow more than the balance does: the 402 stops the batch as before, and
    the limit counts only what was paid, with nothing left reserved."""
    emulator.config.job_seconds = 3.0
    emulator.config.balance = 2.5 * PRICE
    name = limit_name()
    await define_spend_limit(name, PRICE * 10)
    report = await batch_on(
        name, credentials_block, rows(6), cost_estimate=PRICE, max_concurrency=3
    )
    assert report.counts["archived"] == 2
    assert report.counts["not_submitted"] == 4
    assert any("PaymentRequiredError" in (item.error or "") for item in report.items)
    view = (await read_spend_limit(name)).view(spend_limits.utc_now())
    assert view.spent == emulator_cost(emulator) == PRICE * 2
    assert (view.reserved, view.in_flight) == (0.0, 0)


async def test_each_settlement_is_an_event_and_a_fetch_counts_a_task_once(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """``omniflash.spend.settled`` names the limit, amount, task and run; fetching the same task
    with the limit adds nothing, however often."""
    name = limit_name()
    await define_spend_limit(name, 5.0)
    archived = await agenerate_video(
        "A lantern", duration=10, credentials_block=credentials_block, spend_limit=name
    )
    events = await stored_events(
        "omniflash.spend.settled",
        lambda found: any(e.payload.get("task_id") == archived.task_id for e in found),
    )
    event = next(e for e in events if e.payload.get("task_id") == archived.task_id)
    assert event.resource.id == f"omniflash.spend-limit.{name}"
    assert event.payload["amount"] == PRICE
    assert event.payload["limit"] == name
    assert any(r.role == "flow-run" for r in event.related)
    for _ in range(2):
        await spend_limits.record_settlement(name, archived.task_id, archived.cost)
    view = (await read_spend_limit(name)).view(spend_limits.utc_now())
    assert (view.spent, view.videos) == (PRICE, 1)
