"""Orchestration overhead of ``generate_video_batch`` against a plain asyncio + httpx script.

Starts a Prefect server on loopback (temporary PREFECT_HOME, SQLite), then runs, each in its own
subprocess and each against a fresh emulator in this process:

1. ``plain_batch.py``: submit, poll and download N videos with asyncio + httpx;
2. ``flow_batch.py``: ``generate_video_batch`` with the same N rows, as task runs.

Both use the same poll bounds (OMNIFLASH_FIRST_POLL_DELAY_SECONDS / _POLL_MIN_ / _POLL_MAX_) and
the same number of videos in flight (default: all of them). Prints one JSON object: wall time of
each, their ratio, the ideal (job time + first-poll delay), peak RSS of each process, and
provider calls per video from the emulator's counters next to what a fixed 5 s poll makes.

    uv run --frozen python benchmarks/batch_overhead.py --videos 200
    uv run --frozen python benchmarks/batch_overhead.py --videos 5      # smoke: < 1 min
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchlib import (
    BENCHMARKS,
    PollBounds,
    PrefectServer,
    clean_env,
    cpu_seconds,
    fixed_poll_calls,
    prefect_server,
    run_child,
)

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer

#: Above this many videos the defaults are the full benchmark's, else the smoke test's.
SMOKE_MAX_VIDEOS = 10
FULL = {"job_seconds": 30.0, "first_delay": 5.0, "min_interval": 5.0, "max_interval": 10.0}
SMOKE = {"job_seconds": 3.0, "first_delay": 1.0, "min_interval": 1.0, "max_interval": 2.0}
GOAL_RATIO_AT_200 = 1.3
GOAL_RSS_KIB_AT_1000 = 1.5 * 1024 * 1024
GOAL_API_CALLS_PER_VIDEO = 3.0
GOAL_SERVER_CPU_PER_VIDEO = 0.05


def provider_calls(emulator: EmulatorServer, videos: int) -> dict[str, Any]:
    """Submits (attempts), status reads and download attempts the emulator counted."""
    snapshot = emulator.state.snapshot()
    tasks = snapshot["tasks"].values()
    submits = int(snapshot["submission_attempts"])
    polls = sum(int(task["polls"]) for task in tasks)
    downloads = sum(int(task["downloads"]) for task in tasks)
    total = submits + polls + downloads
    return {
        "submits": submits,
        "polls": polls,
        "downloads": downloads,
        "total": total,
        "per_video": round(total / max(videos, 1), 2),
        "max_polls_one_video": max((int(task["polls"]) for task in tasks), default=0),
    }


@contextlib.contextmanager
def sampling_server(server: PrefectServer, out: str | None) -> Iterator[None]:
    """Sample the Prefect server (and its children) with py-spy into ``out`` meanwhile."""
    if out is None:
        yield
        return
    binary = os.environ.get("PY_SPY", "py-spy")
    argv = [binary, "record", "--pid", str(server.process.process.pid), "--subprocesses"]
    argv += ["--format", "raw", "--rate", "50", "-o", str(Path(out).resolve())]
    sampler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        yield
    finally:
        sampler.send_signal(signal.SIGINT)  # py-spy writes its profile when interrupted
        sampler.wait(timeout=120)


def run_contender(
    name: str,
    script: str,
    extra_args: list[str],
    *,
    args: argparse.Namespace,
    server: PrefectServer,
    env: dict[str, str],
    job_seconds: float,
    root: Path,
) -> dict[str, Any]:
    """One contender in its own subprocess against a fresh emulator; its result plus counters."""
    config = EmulatorConfig(job_seconds=job_seconds, unlimited_balance=True)
    sampler: list[str] = []
    if args.py_spy and name == "batch_flow":
        out = str(Path(args.py_spy).resolve())
        binary = os.environ.get("PY_SPY", "py-spy")
        sampler = [binary, "record", "--format", "raw", "--rate", "50", "-o", out, "--"]
    archive = root / f"videos-{name}"
    log = root / f"{name}.log"
    with EmulatorServer(config) as emulator:
        argv = [
            *sampler,
            sys.executable,
            str(BENCHMARKS / script),
            "--base-url",
            emulator.base_url,
            "--api-key",
            emulator.api_key,
            "--videos",
            str(args.videos),
            "--concurrency",
            str(args.concurrency),
            *extra_args,
        ]
        child_env = {**env, "OMNIFLASH_ARCHIVE_DIR": str(archive)}
        server_cpu, own_cpu = server.cpu_seconds(), cpu_seconds()
        with sampling_server(server, args.py_spy_server if name == "batch_flow" else None):
            result = run_child(argv, child_env, log)
        result["peak_rss_mib"] = round(result["peak_rss_kib"] / 1024, 1)
        result["prefect_server_cpu_seconds"] = round(server.cpu_seconds() - server_cpu, 2)
        result["emulator_cpu_seconds"] = round(cpu_seconds() - own_cpu, 2)
        result["provider_calls"] = provider_calls(emulator, args.videos)
        result["videos_on_disk"] = sum(1 for _ in archive.rglob("*.mp4"))
        result["log"] = str(log) if args.keep else None
    print(f"{name}: {json.dumps(result)}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=None, help="default: all videos")
    parser.add_argument("--job-seconds", type=float, default=None)
    parser.add_argument("--first-poll-delay", type=float, default=None)
    parser.add_argument("--poll-min", type=float, default=None)
    parser.add_argument("--poll-max", type=float, default=None)
    parser.add_argument("--only", choices=["plain", "flow", "both"], default="both")
    parser.add_argument(
        "--fan-out",
        choices=["tasks"],
        default="tasks",
        help="how the batch runs its videos (default: tasks, the batch's own default)",
    )
    parser.add_argument("--cprofile", default=None, help="cProfile the flow call into this file")
    parser.add_argument(
        "--py-spy",
        default=None,
        metavar="OUT",
        help="sample the flow process with py-spy (binary: $PY_SPY or 'py-spy') into OUT "
        "(collapsed stacks; summarise with profile_summary.py)",
    )
    parser.add_argument(
        "--py-spy-server",
        default=None,
        metavar="OUT",
        help="sample the Prefect server with py-spy while the batch runs, into OUT (collapsed "
        "stacks; summarise with profile_summary.py)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, videos)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="the Prefect server's database (default: SQLite in its temp home), e.g. "
        "postgresql+asyncpg://user:password@127.0.0.1:5432/prefect_bench",
    )
    args = parser.parse_args()
    defaults = SMOKE if args.videos <= SMOKE_MAX_VIDEOS else FULL
    args.concurrency = args.concurrency or args.videos
    job_seconds = args.job_seconds if args.job_seconds is not None else defaults["job_seconds"]
    bounds = PollBounds(
        first_delay=args.first_poll_delay
        if args.first_poll_delay is not None
        else defaults["first_delay"],
        min_interval=args.poll_min if args.poll_min is not None else defaults["min_interval"],
        max_interval=args.poll_max if args.poll_max is not None else defaults["max_interval"],
    )
    fixed_interval = 5.0 if defaults is FULL else bounds.min_interval
    root = Path(tempfile.mkdtemp(prefix="omniflash-bench-"))
    out: dict[str, Any] = {
        "videos": args.videos,
        "fan_out": args.fan_out,
        "database": "postgresql" if args.database_url else "sqlite",
        "max_in_flight": args.concurrency,
        "job_seconds": job_seconds,
        "poll_bounds": {
            "first_delay": bounds.first_delay,
            "min": bounds.min_interval,
            "max": bounds.max_interval,
        },
        "ideal_seconds": job_seconds + bounds.first_delay,
        # The smoke test polls every second: compare it with a fixed poll at its own minimum.
        "fixed_poll_seconds": fixed_interval,
        "fixed_poll_calls_per_video": fixed_poll_calls(job_seconds, fixed_interval),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "prefect": version("prefect"),
            "httpx": version("httpx"),
        },
    }
    try:
        with prefect_server(root / "prefect-home", args.database_url) as server:
            out["prefect_server_startup_seconds"] = round(server.startup_seconds, 1)
            env = clean_env(
                server.home,
                PREFECT_API_URL=server.api_url,
                PREFECT_LOCAL_STORAGE_PATH=str(root / "results"),
                NO_PROXY="127.0.0.1,localhost",
                **bounds.env(),
            )
            common: dict[str, Any] = {
                "args": args,
                "server": server,
                "env": env,
                "job_seconds": job_seconds,
                "root": root,
            }
            if args.only in ("plain", "both"):
                out["plain"] = run_contender(
                    "plain", "plain_batch.py", ["--out-dir", str(root / "videos-plain")], **common
                )
            if args.only in ("flow", "both"):
                extra = ["--count-api-calls", "--fan-out", args.fan_out]
                if args.cprofile:
                    extra += ["--cprofile", str(Path(args.cprofile).resolve())]
                out["batch_flow"] = run_contender("batch_flow", "flow_batch.py", extra, **common)
    finally:
        if args.keep:
            out["temp_dir"] = str(root)
        else:
            subprocess.run(["rm", "-rf", str(root)], check=False)  # noqa: S603, S607
    if "plain" in out and "batch_flow" in out:
        plain, flow = out["plain"], out["batch_flow"]
        out["ratio"] = round(flow["wall_seconds"] / plain["wall_seconds"], 3)
        out["ratio_process"] = round(flow["process_seconds"] / plain["process_seconds"], 3)
    goals: dict[str, Any] = {}
    if "ratio" in out:
        goals["ratio_within_1.3x"] = out["ratio"] <= GOAL_RATIO_AT_200
    if "batch_flow" in out:
        flow = out["batch_flow"]
        goals["all_archived"] = flow["archived"] == args.videos
        goals["rss_under_1.5GB"] = flow["peak_rss_kib"] < GOAL_RSS_KIB_AT_1000
        goals["calls_per_video_le_fixed_poll"] = (
            flow["provider_calls"]["per_video"] <= out["fixed_poll_calls_per_video"]
        )
        server_cpu_per_video = flow["prefect_server_cpu_seconds"] / max(args.videos, 1)
        out["prefect_server_cpu_per_video"] = round(server_cpu_per_video, 4)
        out["prefect_api_calls_per_video"] = flow["prefect_api_calls"]["per_video"]
        goals["prefect_api_calls_per_video_le_3"] = (
            out["prefect_api_calls_per_video"] <= GOAL_API_CALLS_PER_VIDEO
        )
        goals["prefect_server_cpu_per_video_le_0.05s"] = (
            server_cpu_per_video <= GOAL_SERVER_CPU_PER_VIDEO
        )
    out["goals"] = goals
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
