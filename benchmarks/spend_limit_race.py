"""Batches racing for one spend limit: what they pay, how far over, and what a change costs.

Starts a Prefect server on loopback (``prefect server start``, temporary PREFECT_HOME, SQLite),
then, for each round and each estimate mode, a fresh emulator (10 s 720p videos cost 0.4), a
credentials block pointing at it and a fresh spend limit, and ``--processes`` processes of
``python -m omniflash_prefect batch MANIFEST --spend-limit NAME --json`` started together, each
with ``--rows`` rows of 10 s 720p videos. Estimate modes:

* ``given``: ``--cost-estimate 0.4``, so every row reserves its price at once;
* ``learnt``: no estimate, so the first video of the class is a probe (one at a time across every
  run) and the others wait for its price.

Per round it prints the videos paid (the emulator's accepted submissions), the money charged (the
sum of the emulator's task costs), the overshoot ``max(charged - limit, 0)``, the limit's
``spent`` read back from the server (it must equal charged; reserved, in flight and holders must
be 0), the rows reported ``skipped_spend_limit``, the wall time (first start to last exit,
interpreter start-up included), the longest batch's own wall time, and the Prefect server's CPU.
A ``check`` column names anything that contradicts the feature's promises (overshoot above one
video's price, spent != charged, a reservation left behind, rows unaccounted for).

Then the cost of one change to a limit: ``--changes`` sequential ``SpendLimitHold.reserve`` +
``settle`` pairs in this process (fake task ids, no emulator), each a change (lock, read the
ledger, write it back, rewrite the variable): median and p95 (nearest rank) milliseconds per
change, and the Prefect API calls per change (every ``/api/`` request of an
``httpx.AsyncClient``; the ``omniflash.spend.settled`` events travel over the events websocket
and are not counted).

Poll bounds of the batches: first poll after 0.5 s, then every 0.25-0.5 s. A compact table is
printed at the end; ``--json FILE`` also writes every number.

    uv run --frozen python benchmarks/spend_limit_race.py                 # ~3-4 min on 2 cores
    uv run --frozen python benchmarks/spend_limit_race.py --rounds 1 --estimate-modes given
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchlib import REPO, PollBounds, PrefectServer, clean_env, prefect_server

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.emulator.validation import price_of
from omniflash_prefect.video.spend_holds import SpendLimitHold
from omniflash_prefect.video.spend_limits import (
    define_spend_limit,
    read_spend_limit,
    utc_now,
)
from tests.support.api_calls import PrefectApiCalls
from tests.support.processes import on_server

DURATION = 10
RESOLUTION = "720p"
#: What one video of the benchmark costs on the emulator (0.4).
PRICE = price_of(DURATION, RESOLUTION)
POLL = PollBounds(first_delay=0.5, min_interval=0.25, max_interval=0.5, timeout=300.0)
#: The longest one batch process may run before it is killed.
CHILD_TIMEOUT_SECONDS = 600.0
MONEY_EPSILON = 1e-6
#: The batch command's exit codes that are not a failure here: 0 all archived, 4 some not.
EXPECTED_EXIT_CODES = (0, 4)
#: The code under test, fingerprinted before and after the run (the numbers belong to it).
CODE_UNDER_TEST = (
    "omniflash_prefect/video/spend_limits.py",
    "omniflash_prefect/core/spending.py",
    "omniflash_prefect/batches/scheduler.py",
)


@dataclass(frozen=True)
class Race:
    """What one race is: processes, rows each, the limit, the job time and the estimate mode."""

    processes: int
    rows: int
    limit: float
    job_seconds: float
    mode: str  # "given" or "learnt"


def code_fingerprint() -> dict[str, str]:
    """The first 12 hex digits of the SHA-256 of each file of the code under test."""
    return {
        Path(path).name: hashlib.sha256((REPO / path).read_bytes()).hexdigest()[:12]
        for path in CODE_UNDER_TEST
    }


def manifest_rows(count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i:03d}",
            "prompt": f"Shot {i} of {prefix}: rain on a tin roof",
            "duration": DURATION,
            "resolution": RESOLUTION,
        }
        for i in range(count)
    ]


def limit_name(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:10]}"


def batch_argv(race: Race, manifest: Path, limit: str, block: str, archive: Path) -> list[str]:
    argv = [sys.executable, "-m", "omniflash_prefect", "batch", str(manifest)]
    argv += ["--spend-limit", limit, "--credentials-block", block]
    argv += ["--archive-dir", str(archive), "--batch-id", f"{manifest.stem}-{limit}", "--json"]
    if race.mode == "given":
        argv += ["--cost-estimate", repr(PRICE)]
    return argv


def emulator_charged(emulator: EmulatorServer) -> float:
    """What the emulator charged in all (failed tasks refunded)."""
    tasks = emulator.state.snapshot()["tasks"].values()
    return round(sum(float(task["cost"]) for task in tasks), 6)


def problems_of(round_: dict[str, Any], race: Race) -> list[str]:
    """What contradicts the feature's promises in one round (empty: nothing)."""
    found = []
    if round_["overshoot"] > PRICE + MONEY_EPSILON:
        found.append(f"overshoot {round_['overshoot']:g} > one video {PRICE:g}")
    if abs(round_["spent"] - round_["charged"]) > MONEY_EPSILON:
        found.append(f"spent {round_['spent']:g} != charged {round_['charged']:g}")
    left = (round_["reserved"], round_["in_flight"], round_["holders"])
    if left != (0, 0, 0):
        found.append("left behind: reserved {:g}, in flight {}, holders {}".format(*left))
    accounted = round_["archived"] + round_["skipped_spend_limit"]
    if accounted != race.processes * race.rows:
        found.append(f"{accounted} of {race.processes * race.rows} rows archived or skipped")
    if round_["archived"] != round_["paid"]:
        found.append(f"{round_['paid']} paid, {round_['archived']} archived")
    odd = [code for code in round_["exit_codes"] if code not in EXPECTED_EXIT_CODES]
    if odd:
        found.append(f"exit codes {odd}")
    return found


def run_round(race: Race, server: PrefectServer, root: Path, number: int) -> dict[str, Any]:
    """One race: a fresh emulator, block and limit; the batches started together."""
    here = root / f"round-{number:02d}-{race.mode}"
    here.mkdir(parents=True)
    config = EmulatorConfig(job_seconds=race.job_seconds, unlimited_balance=True)
    with EmulatorServer(config) as emulator:
        block = f"bench-emulator-{uuid.uuid4().hex[:10]}"
        OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).save(block)
        limit = limit_name(race.mode)
        asyncio.run(define_spend_limit(limit, race.limit))
        env = clean_env(
            server.home,
            PREFECT_API_URL=server.api_url,
            PREFECT_LOCAL_STORAGE_PATH=str(root / "results"),
            NO_PROXY="127.0.0.1,localhost",
            **POLL.env(),
        )
        argvs = []
        for process in range(race.processes):
            manifest = here / f"batch-{process}.jsonl"
            lines = manifest_rows(race.rows, f"r{number}p{process}")
            manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
            argvs.append(batch_argv(race, manifest, limit, block, here / "videos"))
        server_cpu = server.cpu_seconds()
        started = time.monotonic()
        children = []
        for process, argv in enumerate(argvs):
            out = (here / f"batch-{process}.json").open("wb")
            err = (here / f"batch-{process}.log").open("wb")
            child = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=err)  # noqa: S603
            children.append((child, out, err))
        exit_codes = []
        for child, out, err in children:
            try:
                exit_codes.append(child.wait(CHILD_TIMEOUT_SECONDS))
            except subprocess.TimeoutExpired:
                child.kill()
                exit_codes.append(child.wait())
            finally:
                out.close()
                err.close()
        wall = time.monotonic() - started
        server_cpu = server.cpu_seconds() - server_cpu
        paid = emulator.state.submission_count
        charged = emulator_charged(emulator)
    view = asyncio.run(read_spend_limit(limit)).view(utc_now())
    reports = []
    for process in range(race.processes):
        text = (here / f"batch-{process}.json").read_text(errors="replace")
        try:
            reports.append(json.loads(text))
        except json.JSONDecodeError:
            log = (here / f"batch-{process}.log").read_text(errors="replace")
            raise RuntimeError(
                f"batch {process} of round {number} printed no report (exit "
                f"{exit_codes[process]}):\n{text[-2000:]}\n{log[-4000:]}"
            ) from None
    statuses = [item["status"] for report in reports for item in report["items"]]
    result: dict[str, Any] = {
        "round": number,
        "mode": race.mode,
        "limit_name": limit,
        "paid": paid,
        "paid_per_process": [report["counts"]["archived"] for report in reports],
        "charged": charged,
        "overshoot": round(max(charged - race.limit, 0.0), 6),
        "spent": view.spent,
        "reserved": view.reserved,
        "in_flight": view.in_flight,
        "holders": view.holders,
        "settled_videos": view.videos,
        "archived": statuses.count("archived"),
        "skipped_spend_limit": statuses.count("skipped_spend_limit"),
        "other_statuses": sorted(
            {s for s in statuses if s not in ("archived", "skipped_spend_limit")}
        ),
        "reported_cost": round(sum(float(report["total_cost"]) for report in reports), 6),
        "wall_seconds": round(wall, 2),
        "batch_wall_seconds": max(float(report["wall_seconds"]) for report in reports),
        "prefect_server_cpu_seconds": round(server_cpu, 2),
        "exit_codes": exit_codes,
    }
    result["problems"] = problems_of(result, race)
    return result


def nearest_rank(values: list[float], share: float) -> float:
    """The nearest-rank percentile ``share`` (0-1] of ``values``."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def ms_summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "p95": round(nearest_rank(values, 0.95), 2),
        "max": round(max(values), 2),
    }


async def change_cost(pairs: int) -> dict[str, Any]:
    """``pairs`` sequential reserve + settle pairs on a limit that always has room."""
    name = limit_name("changes")
    await define_spend_limit(name, PRICE * (pairs + 1) * 10)
    request = VideoRequest(prompt="A benchmark of spend limit changes", duration=DURATION)
    reserves: list[float] = []
    settles: list[float] = []
    calls = PrefectApiCalls()
    # A lease longer than the run: no renewal interleaves with the timed changes.
    async with SpendLimitHold(name, lease_seconds=3600) as hold:
        await hold.reserve("warm-up", request, PRICE)  # makes the lock and the clients: untimed
        await hold.settle("warm-up", "task_warm_up", PRICE, request)
        with calls.counting():
            for number in range(pairs):
                key = f"row-{number:05d}"
                started = time.perf_counter()
                await hold.reserve(key, request, PRICE)
                reserved = time.perf_counter()
                await hold.settle(key, f"task_{number:026d}", PRICE, request)
                settled = time.perf_counter()
                reserves.append(1000 * (reserved - started))
                settles.append(1000 * (settled - reserved))
    view = (await read_spend_limit(name)).view(utc_now())
    changes = [change for pair in zip(reserves, settles, strict=True) for change in pair]
    tenth = max(len(changes) // 10, 1)
    expected = round(PRICE * (pairs + 1), 6)
    return {
        "pairs": pairs,
        "changes": len(changes),
        "ms_per_change": ms_summary(changes),
        "ms_per_reserve": ms_summary(reserves),
        "ms_per_settle": ms_summary(settles),
        "ms_first_tenth_median": round(statistics.median(changes[:tenth]), 2),
        "ms_last_tenth_median": round(statistics.median(changes[-tenth:]), 2),
        "prefect_api_calls_per_change": round(calls.total / len(changes), 2),
        "prefect_api_calls_by_endpoint": dict(calls.counts.most_common()),
        "spent_after": view.spent,
        "spent_expected": expected,
        "left_behind": {
            "reserved": view.reserved,
            "in_flight": view.in_flight,
            "holders": view.holders,
        },
        "problems": (
            ([f"spent {view.spent:g} != {expected:g}"] if abs(view.spent - expected) > 1e-6 else [])
            + (
                ["a reservation left behind"]
                if (view.reserved, view.in_flight, view.holders) != (0, 0, 0)
                else []
            )
        ),
    }


def spread(values: list[Any]) -> str:
    low, high = min(values), max(values)
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def table(out: dict[str, Any]) -> str:
    """The compact table printed at the end."""
    setup = out["setup"]
    lines = [
        f"spend limit race: {setup['processes']} processes x {setup['rows']} rows of "
        f"{DURATION} s {RESOLUTION} at {PRICE:g}, limit {setup['limit']:g}, jobs "
        f"{setup['job_seconds']:g} s, poll {POLL.first_delay:g}/{POLL.min_interval:g}/"
        f"{POLL.max_interval:g} s, {out['machine']['nproc']} cores, Prefect "
        f"{out['machine']['prefect']}, load average before "
        f"{out['machine']['load_average_before'][0]:g}, server start "
        f"{out['prefect_server_startup_seconds']} s",
        "code: "
        + ", ".join(f"{name} {digest}" for name, digest in out["code"]["before"].items())
        + ("" if out["code"]["before"] == out["code"]["after"] else " (CHANGED during the run)"),
    ]
    rounds = out["rounds"]
    if rounds:
        header = (
            f"{'mode':<7} {'round':>5} {'paid':>5} {'each':>8} {'charged':>8} {'overshoot':>9} "
            f"{'spent':>6} {'skipped':>7} {'wall s':>7} {'batch s':>7} {'srv CPU':>7}  check"
        )
        lines += ["", header, "-" * len(header)]
        for r in rounds:
            each = "/".join(str(n) for n in r["paid_per_process"])
            lines.append(
                f"{r['mode']:<7} {r['round']:>5} {r['paid']:>5} {each:>8} {r['charged']:>8g} "
                f"{r['overshoot']:>9g} {r['spent']:>6g} {r['skipped_spend_limit']:>7} "
                f"{r['wall_seconds']:>7.1f} {r['batch_wall_seconds']:>7.1f} "
                f"{r['prefect_server_cpu_seconds']:>7.1f}  {'; '.join(r['problems']) or 'ok'}"
            )
        lines.append("")
        for mode in out["setup"]["modes"]:
            mine = [r for r in rounds if r["mode"] == mode]
            walls = [r["wall_seconds"] for r in mine]
            problems = sum(len(r["problems"]) for r in mine)
            lines.append(
                f"{mode:<7} {len(mine)} rounds: paid {spread([r['paid'] for r in mine])}, "
                f"charged {spread([r['charged'] for r in mine])}, overshoot max "
                f"{max(r['overshoot'] for r in mine):g}, wall median "
                f"{statistics.median(walls):.1f} s, problems {problems}"
            )
    changes = out.get("one_change")
    if changes:
        lines += [
            "",
            f"one change to a limit ({changes['pairs']} reserve + settle pairs in one process, "
            f"{changes['changes']} changes):",
        ]
        for kind in ("change", "reserve", "settle"):
            ms = changes[f"ms_per_{kind}"]
            lines.append(
                f"  {kind:<8} median {ms['median']:>7.1f} ms   p95 {ms['p95']:>7.1f} ms   "
                f"max {ms['max']:>7.1f} ms"
            )
        by_endpoint = ", ".join(
            f"{endpoint} {count / changes['changes']:.2f}"
            for endpoint, count in changes["prefect_api_calls_by_endpoint"].items()
        )
        lines += [
            f"  first / last tenth of the changes, median: {changes['ms_first_tenth_median']:.1f}"
            f" / {changes['ms_last_tenth_median']:.1f} ms",
            f"  Prefect API calls per change: {changes['prefect_api_calls_per_change']:g}"
            f" ({by_endpoint})",
            f"  spent after: {changes['spent_after']:g} (expected {changes['spent_expected']:g})"
            f", check: {'; '.join(changes['problems']) or 'ok'}",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    uv run")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--processes", type=int, default=2, help="batches racing (default 2)")
    parser.add_argument("--rows", type=int, default=8, help="rows per batch (default 8)")
    parser.add_argument("--limit", type=float, default=2.0, help="the spend limit (default 2.0)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode (default 3)")
    parser.add_argument(
        "--estimate-modes",
        choices=["both", "given", "learnt"],
        default="both",
        help="with --cost-estimate 0.4 (given), without (learnt), or both in turn (default)",
    )
    parser.add_argument(
        "--job-seconds", type=float, default=3.0, help="emulator job time (default 3)"
    )
    parser.add_argument(
        "--changes",
        type=int,
        default=50,
        help="reserve + settle pairs timed in one process (default 50; 0 skips)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, reports)")
    args = parser.parse_args()
    modes = ["given", "learnt"] if args.estimate_modes == "both" else [args.estimate_modes]
    json_path = args.json.resolve() if args.json is not None else None
    os.chdir(REPO)
    root = Path(tempfile.mkdtemp(prefix="omniflash-spend-race-"))
    out: dict[str, Any] = {
        "setup": {
            "processes": args.processes,
            "rows": args.rows,
            "limit": args.limit,
            "job_seconds": args.job_seconds,
            "price": PRICE,
            "modes": modes,
            "poll_bounds": POLL.env(),
        },
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "prefect": version("prefect"),
            "load_average_before": [round(load, 2) for load in os.getloadavg()],
        },
        "rounds": [],
        "code": {"before": code_fingerprint()},
    }
    try:
        with prefect_server(root / "prefect-home") as server, on_server(server):
            out["prefect_server_startup_seconds"] = round(server.startup_seconds, 1)
            number = 0
            for _ in range(args.rounds):
                for mode in modes:  # given, learnt, given, learnt...: noise spread over both
                    number += 1
                    race = Race(args.processes, args.rows, args.limit, args.job_seconds, mode)
                    result = run_round(race, server, root, number)
                    out["rounds"].append(result)
                    print(f"round {number}: {json.dumps(result)}", file=sys.stderr, flush=True)
            if args.changes > 0:
                out["one_change"] = asyncio.run(change_cost(args.changes))
    finally:
        if args.keep:
            out["temp_dir"] = str(root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    out["code"]["after"] = code_fingerprint()
    out["machine"]["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    if json_path is not None:
        json_path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(table(out))


if __name__ == "__main__":
    main()
