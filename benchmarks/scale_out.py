"""A batch spread over two process workers against the same batch as task runs in one process.

Starts ``prefect server start`` on loopback (SQLite in a temporary home, or a throwaway
PostgreSQL cluster with ``--postgres``), applies ``prefect.yaml`` to a process work pool, then
runs, each against a fresh emulator with all videos in flight at once:

1. ``in_process``: ``generate_video_batch`` with ``fan_out="tasks"`` in one process
   (``flow_batch.py``), no worker involved;
2. ``on_workers``: the same batch with ``fan_out="deployments"``, its rows run by two
   ``prefect worker start --pool omniflash --limit L`` processes started (and online) before the
   clock starts.

For each: wall time of the batch call, Prefect server CPU (per video), and for ``on_workers`` the
peak of the summed resident memory (VmRSS) of both workers and every process they start, sampled
every 0.2 s, and how many flow runs the workers started. Prints one JSON object.

    uv run --frozen python benchmarks/scale_out.py --videos 40
    uv run --frozen python benchmarks/scale_out.py --videos 1000 --postgres --worker-limit 20

Runs against whatever checkout it sits in (the package, ``prefect.yaml`` and ``flows/`` next to
it): copy it into a checkout of an earlier commit to measure that one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchlib import (
    BENCHMARKS,
    BIN,
    REPO,
    Background,
    PollBounds,
    PrefectServer,
    clean_env,
    free_port,
    prefect_server,
    run_child,
)

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from tests.support.children import descendants
from tests.support.processes import api

POOL = "omniflash"
WORKERS = 2
SAMPLE_SECONDS = 0.2
WORKER_ONLINE_SECONDS = 120.0
GOAL_RATIO = 1.5
GOAL_RSS_MIB = {40: 1024, 1000: 2048}
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kib(pid: int) -> int:
    """Resident memory of one process (0 once it is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KIB
    return 0


class TreeMemory:
    """Samples the summed resident memory of some processes and all they start, in a thread."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peak_kib = 0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            pids = [pid for root in self.roots for pid in (root, *descendants(root))]
            self.seen.update(pids)
            self.peak_kib = max(self.peak_kib, sum(rss_kib(pid) for pid in pids))

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port (run as the ``postgres`` user
    when this runs as root, which PostgreSQL refuses); its asyncpg URL."""
    root = Path(tempfile.mkdtemp(prefix="omniflash-pg-"))
    data, port = root / "data", free_port()
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]

    def pg(*argv: str) -> None:
        subprocess.run([*as_owner, *argv], check=True, capture_output=True)  # noqa: S603

    pg("initdb", "-D", str(data), "-U", "bench", "--auth=trust")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=300"
    pg("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "pg.log"), "-w", "start")
    try:
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "prefect_bench")
        yield f"postgresql+asyncpg://bench@127.0.0.1:{port}/prefect_bench"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def prefect(argv: str, env: dict[str, str], cwd: Path) -> None:
    """One ``prefect`` command to completion."""
    subprocess.run(  # noqa: S603 - our own argv
        [str(BIN / "prefect"), *argv.split()], cwd=cwd, env=env, check=True, capture_output=True
    )


def deploy(root: Path, env: dict[str, str]) -> Path:
    """The checkout's ``prefect.yaml`` and ``flows/``, applied to a process work pool."""
    project = root / "project"
    project.mkdir()
    shutil.copy2(REPO / "prefect.yaml", project / "prefect.yaml")
    shutil.copytree(REPO / "flows", project / "flows")
    prefect(f"work-pool create {POOL} --type process", env, project)
    prefect("deploy --all", env, project)
    return project


def wait_for_workers(server: PrefectServer, count: int) -> None:
    """Until ``count`` workers of the pool are online (their first heartbeat)."""
    deadline = time.monotonic() + WORKER_ONLINE_SECONDS
    with api(server) as client:
        while len(client.read_workers_for_work_pool(POOL)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} workers online")
            time.sleep(0.5)


def count_flow_runs(server: PrefectServer) -> int:
    """How many flow runs the server holds."""
    with api(server) as client:
        return int(client.count_flow_runs())


def run_batch(
    name: str,
    extra: list[str],
    *,
    args: argparse.Namespace,
    server: PrefectServer,
    env: dict[str, str],
    root: Path,
) -> dict[str, Any]:
    """``flow_batch.py`` (which saves a credentials block for it) against a fresh emulator."""
    config = EmulatorConfig(job_seconds=args.job_seconds, unlimited_balance=True)
    with EmulatorServer(config) as emulator:
        argv = [
            sys.executable,
            str(BENCHMARKS / "flow_batch.py"),
            *("--base-url", emulator.base_url, "--api-key", emulator.api_key),
            *("--videos", str(args.videos), "--concurrency", str(args.videos)),
            *extra,
        ]
        server_cpu, runs = server.cpu_seconds(), count_flow_runs(server)
        archive = {"OMNIFLASH_ARCHIVE_DIR": str(root / name)}
        result = run_child(argv, {**env, **archive}, root / f"{name}.log")
        result["prefect_server_cpu_per_video"] = round(
            (server.cpu_seconds() - server_cpu) / args.videos, 4
        )
        result["flow_runs"] = count_flow_runs(server) - runs
        result["submissions"] = emulator.state.submission_count
    print(f"{name}: {json.dumps(result)}", file=sys.stderr)
    return result


def on_workers(
    args: argparse.Namespace, server: PrefectServer, env: dict[str, str], root: Path
) -> dict[str, Any]:
    """The batch with its rows on two process workers, and the memory of all they start."""
    project = deploy(root, env)
    worker = f"worker start --pool {POOL} --limit {args.worker_limit}"
    command = [str(BIN / "prefect"), *worker.split()]
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(
                Background(command, cwd=project, env=env, log=root / f"worker-{i}.log")
            )
            for i in range(WORKERS)
        ]
        wait_for_workers(server, WORKERS)
        extra = ["--fan-out", "deployments"]
        if args.rows_per_run is not None:
            extra += ["--rows-per-run", str(args.rows_per_run)]
        roots = [worker.process.pid for worker in workers]
        with TreeMemory(roots) as memory:
            result = run_batch("on_workers", extra, args=args, server=server, env=env, root=root)
        result["workers_peak_rss_mib"] = round(memory.peak_kib / 1024)
        result["processes_started_by_workers"] = len(memory.seen) - len(roots)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--job-seconds", type=float, default=10.0)
    parser.add_argument("--worker-limit", type=int, default=20, help="each worker's --limit")
    parser.add_argument("--rows-per-run", type=int, default=None, help="default: the batch's")
    parser.add_argument("--postgres", action="store_true", help="the server on PostgreSQL")
    parser.add_argument("--only", choices=["in_process", "on_workers", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, videos)")
    args = parser.parse_args()
    bounds = PollBounds(first_delay=1.0, min_interval=1.0, max_interval=2.0)
    root = Path(tempfile.mkdtemp(prefix="omniflash-scale-"))
    out: dict[str, Any] = {
        "videos": args.videos,
        "job_seconds": args.job_seconds,
        "workers": WORKERS,
        "worker_limit": args.worker_limit,
        "rows_per_run": args.rows_per_run,
        "database": "postgresql" if args.postgres else "sqlite",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "prefect": version("prefect"),
    }
    try:
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(postgres()) if args.postgres else None
            server = stack.enter_context(prefect_server(root / "prefect-home", url))
            env = clean_env(
                server.home,
                PREFECT_API_URL=server.api_url,
                PREFECT_LOCAL_STORAGE_PATH=str(root / "results"),
                NO_PROXY="127.0.0.1,localhost",
                **bounds.env(),
            )
            if args.only in ("in_process", "both"):
                tasks = ["--fan-out", "tasks"]
                out["in_process"] = run_batch(
                    "in_process", tasks, args=args, server=server, env=env, root=root
                )
            if args.only in ("on_workers", "both"):
                out["on_workers"] = on_workers(args, server, env, root)
    finally:
        if args.keep:
            out["temp_dir"] = str(root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if "in_process" in out and "on_workers" in out:
        ratio = out["on_workers"]["wall_seconds"] / out["in_process"]["wall_seconds"]
        out["ratio"] = round(ratio, 2)
        goal_rss = GOAL_RSS_MIB.get(args.videos, GOAL_RSS_MIB[1000])
        out["goals"] = {
            f"within_{GOAL_RATIO}x": ratio <= GOAL_RATIO,
            f"workers_under_{goal_rss}_MiB": out["on_workers"]["workers_peak_rss_mib"] < goal_rss,
            "server_cpu_per_video_not_higher": out["on_workers"]["prefect_server_cpu_per_video"]
            <= out["in_process"]["prefect_server_cpu_per_video"],
            "all_archived": out["on_workers"]["archived"] == args.videos,
            "paid_once": out["on_workers"]["submissions"] == args.videos,
        }
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
