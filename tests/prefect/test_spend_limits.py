"""Named spend limits on a real Prefect server, against the emulator over loopback: limits set
and read back, batches racing for one limit in separate processes, the next UTC day, a run
killed mid-video, 402s, fetches that count once, and the events and variable people see.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.settings import PREFECT_API_URL

from omniflash_prefect.batches.flow import agenerate_video_batch
from omniflash_prefect.batches.report import BatchReport
from omniflash_prefect.core.errors import SpendLimitNotFoundError, SpendLimitReachedError
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.emulator.validation import price_of
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

REPO = Path(__file__).resolve().parents[2]
#: A 10 s 720p video costs 0.4 on the emulator: a limit of 2.0 holds five.
PRICE = price_of(10, "720p")


def limit_name() -> str:
    return f"limit-{uuid.uuid4().hex[:10]}"


def rows(count: int, prefix: str = "v") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i:02d}", "prompt": f"Shot {i}: rain on a tin roof", "duration": 10}
        for i in range(count)
    ]


def emulator_cost(emulator: EmulatorServer) -> float:
    """What the emulator charged in all (failed tasks refunded)."""
    tasks = emulator.state.snapshot()["tasks"].values()
    return round(sum(float(task["cost"]) for task in tasks), 6)


async def batch_on(
    name: str, credentials_block: str, requests: list[dict[str, Any]], **options: Any
) -> BatchReport:
    """Run ``generate_video_batch`` on the spend limit ``name``; its report, whatever its state."""
    state = await agenerate_video_batch(
        requests=requests,
        credentials_block=credentials_block,
        spend_limit=name,
        return_state=True,
        **options,
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


# -- separate processes: two batches racing, a run killed mid-video --------------------------


def _child_env(tmp_path: Path, lease_seconds: float | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "COLUMNS": "200",
    }
    if lease_seconds is not None:
        env["OMNIFLASH_SPEND_LEASE_SECONDS"] = str(lease_seconds)
    return env


def _omniflash(*args: str) -> list[str]:
    return [sys.executable, "-m", "omniflash_prefect", *args]


def on_limit(command: str, what: str, name: str, block: str, tmp_path: Path) -> list[str]:
    """``omniflash generate PROMPT`` (a 10 s video) or ``fetch TASK_ID`` on the limit ``name``."""
    duration = ["--duration", "10"] if command == "generate" else []
    return [
        command,
        what,
        *duration,
        "--spend-limit",
        name,
        "--credentials-block",
        block,
        "--archive-dir",
        str(tmp_path / "videos"),
        "--json",
    ]


def omniflash(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``omniflash <args>`` in a child process on this test's Prefect server; output captured."""
    return subprocess.run(
        _omniflash(*args), cwd=REPO, env=_child_env(tmp_path), capture_output=True, check=False
    )


def _await(condition: Any, within: float, what: str) -> None:
    """Poll ``condition`` (another process changes what it reads) until true, or fail."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {within:g} s")
        time.sleep(0.1)


def _view(name: str) -> Any:
    return asyncio.run(read_spend_limit(name)).view(spend_limits.utc_now())


def test_two_batches_racing_for_one_limit_overshoot_by_at_most_one_video(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """Two ``omniflash batch`` processes of 8 videos each, started together on one limit of
    2.0 at 0.4 a video: 4 to 6 videos are paid in all, the rest are reported
    skipped_spend_limit, and ``spend-limit show --json`` equals what the emulator charged."""
    emulator.config.job_seconds = 3.0  # the two batches' videos are in flight together
    name = limit_name()
    asyncio.run(define_spend_limit(name, 2.0))
    children = {}
    for batch in ("a", "b"):
        manifest = tmp_path / f"{batch}.jsonl"
        manifest.write_text("\n".join(json.dumps(row) for row in rows(8, batch)) + "\n")
        children[batch] = subprocess.Popen(
            _omniflash(
                "batch",
                str(manifest),
                "--spend-limit",
                name,
                "--credentials-block",
                block,
                "--archive-dir",
                str(tmp_path / "videos"),
                "--batch-id",
                f"race-{batch}-{name}",
                "--json",
            ),
            cwd=REPO,
            env=_child_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    reports = {}
    for batch, child in children.items():
        out, err = child.communicate(timeout=300)
        assert child.returncode == 4, err.decode(errors="replace")[-3000:]
        reports[batch] = json.loads(out)
    paid = emulator.state.submission_count
    charged = emulator_cost(emulator)
    statuses = [item["status"] for r in reports.values() for item in r["items"]]
    errors = {item.get("error") for r in reports.values() for item in r["items"]}
    each = {batch: r["counts"]["archived"] for batch, r in reports.items()}
    print(f"\nrace: {paid} paid {each}, {charged:g} charged, overshoot {max(charged - 2.0, 0):g}")
    assert 4 <= paid <= 6, errors
    assert statuses.count("archived") == paid
    assert statuses.count("skipped_spend_limit") == 16 - paid
    shown = omniflash(tmp_path, "spend-limit", "show", name, "--json")
    assert shown.returncode == 0, shown.stderr.decode(errors="replace")
    view = json.loads(shown.stdout)
    assert view["spent"] == pytest.approx(charged)
    assert (view["reserved"], view["in_flight"]) == (0, 0)
    assert (view["name"], view["limit"]) == (name, 2.0)
    assert view["window_start"].startswith(datetime.now(UTC).date().isoformat())


def test_a_killed_run_s_reservation_is_released_after_its_lease(
    block: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """``omniflash generate --spend-limit`` killed with SIGKILL mid-video: its reservation is
    released once its lease passes, never counted as spent; fetching the paid task with the
    limit counts it once."""
    emulator.config.job_seconds = 6.0
    name = limit_name()
    asyncio.run(define_spend_limit(name, 2.0))
    child = subprocess.Popen(
        _omniflash(
            *on_limit("generate", "A lighthouse", name, block, tmp_path),
        ),
        cwd=REPO,
        env=_child_env(tmp_path, lease_seconds=3),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _await(lambda: emulator.state.submission_count == 1, 60, "the video was not submitted")
        held = _view(name)
        assert (held.in_flight, held.holders) == (1, 1)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    killed = time.monotonic()
    _await(lambda: _view(name).in_flight == 0, 30, "the reservation was not released")
    print(f"\nreservation released {time.monotonic() - killed:.1f} s after SIGKILL (lease 3 s)")
    assert _view(name).spent == 0.0
    task_id = next(iter(emulator.state.snapshot()["tasks"]))
    for _ in range(2):
        fetched = omniflash(
            tmp_path,
            *on_limit("fetch", task_id, name, block, tmp_path),
        )
        assert fetched.returncode == 0, fetched.stderr.decode(errors="replace")[-3000:]
    after = _view(name)
    assert (after.spent, after.videos, after.reserved) == (PRICE, 1, 0.0)


def test_dry_run_sends_nothing_and_prices_every_class(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """``batch --dry-run`` checks the rows and prints the estimate per class, against the
    budget and the limit (prices learnt on it); the emulator sees no call at all."""
    name = limit_name()
    asyncio.run(define_spend_limit(name, 2.0))
    asyncio.run(spend_limits.record_settlement(name, "task_x", PRICE, _request(10)))
    manifest = tmp_path / "m.jsonl"
    lines = [*rows(3), {"id": "short", "prompt": "A short one", "duration": 4}]
    manifest.write_text("\n".join(json.dumps(row) for row in lines) + "\n")
    result = omniflash(
        tmp_path,
        "batch",
        str(manifest),
        "--dry-run",
        "--spend-limit",
        name,
        "--budget",
        "1.0",
        "--credentials-block",
        block,
        "--json",
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    body = json.loads(result.stdout)
    assert body["sent"] == 0
    assert body["classes"] == [
        {"price_class": "10s/720p", "videos": 3, "estimate": PRICE, "total": round(PRICE * 3, 6)},
        {"price_class": "4s/720p", "videos": 1, "estimate": None, "total": None},
    ]
    assert (body["fit_budget"], body["spend_limit"]["remaining"]) == (3, 1.6)
    assert emulator.state.snapshot()["submission_attempts"] == 0
    assert emulator.state.snapshot()["tasks"] == {}


def _request(duration: int) -> VideoRequest:
    return VideoRequest(prompt="A settled video", duration=duration)


def test_generate_refused_by_a_limit_exits_3_with_nothing_sent(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    name = limit_name()
    asyncio.run(define_spend_limit(name, 0.5))
    asyncio.run(spend_limits.record_settlement(name, "task_y", PRICE, _request(10)))
    result = omniflash(
        tmp_path,
        *on_limit("generate", "A fox", name, block, tmp_path),
    )
    assert result.returncode == 3, result.stderr.decode(errors="replace")[-2000:]
    body = json.loads(result.stdout)
    assert body["status"] == "refused"
    assert "cannot hold" in body["error"]
    assert emulator.state.snapshot()["submission_attempts"] == 0


def test_spend_shows_each_day_of_each_limit(tmp_path: Path) -> None:
    name = limit_name()
    asyncio.run(define_spend_limit(name, 5.0))
    for task in ("t1", "t2"):
        asyncio.run(spend_limits.record_settlement(name, task, PRICE, _request(10)))
    result = omniflash(tmp_path, "spend", "--days", "2", "--json")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    body = json.loads(result.stdout)
    mine = [row for row in body["days"] if row["limit"] == name]
    today = datetime.now(UTC).date().isoformat()
    assert mine == [{"day": today, "limit": name, "spent": PRICE * 2, "videos": 2}]
    assert body["totals"][name] == PRICE * 2
