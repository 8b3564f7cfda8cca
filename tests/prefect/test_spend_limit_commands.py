"""Named spend limits through the ``omniflash`` command in child processes, on a real Prefect
server against the emulator: two batches racing for one limit, a run killed mid-video, the dry
run, a refused ``generate`` and ``spend``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from omniflash_prefect.cli import app
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.video import spend_limits
from omniflash_prefect.video.spend_limits import (
    define_spend_limit,
    read_spend_limit,
)
from tests.support.spend_limits import PRICE, emulator_cost, limit_name, rows, settled_request

REPO = Path(__file__).resolve().parents[2]


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
    asyncio.run(spend_limits.record_settlement(name, "task_x", PRICE, settled_request(10)))
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


def test_generate_refused_by_a_limit_exits_3_with_nothing_sent(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    name = limit_name()
    asyncio.run(define_spend_limit(name, 0.5))
    asyncio.run(spend_limits.record_settlement(name, "task_y", PRICE, settled_request(10)))
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
        asyncio.run(spend_limits.record_settlement(name, task, PRICE, settled_request(10)))
    result = omniflash(tmp_path, "spend", "--days", "2", "--json")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    body = json.loads(result.stdout)
    mine = [row for row in body["days"] if row["limit"] == name]
    today = datetime.now(UTC).date().isoformat()
    assert mine == [{"day": today, "limit": name, "spent": PRICE * 2, "videos": 2}]
    assert body["totals"][name] == PRICE * 2


def test_set_refuses_a_bad_name_or_amount_with_exit_2() -> None:
    """A name the server could not hold, or an amount that is no limit, is refused before
    anything is created."""
    for args, said in (
        (["Nightly", "--per-day", "1"], "lowercase letters, digits and dashes"),
        ([limit_name(), "--per-day", "0"], "greater than 0"),
    ):
        result = CliRunner().invoke(app, ["spend-limit", "set", *args], env={"COLUMNS": "200"})
        assert result.exit_code == 2, result.output
        assert said in result.output
