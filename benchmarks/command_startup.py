"""What one ``omniflash generate`` costs beyond its job, with no Prefect server configured.

A newcomer's machine has no ``PREFECT_API_URL``. Before, every command started a temporary
Prefect server inside itself (``OMNIFLASH_PREFECT_SERVER=temporary`` still does); now the first
command starts a local background server and later ones reuse it. Contenders, each a whole
``omniflash generate "..." --duration 4 --json`` process against the emulator (jobs of
``--job-seconds``), each mode in a PREFECT_HOME (database) of its own:

* ``temporary``: ``OMNIFLASH_PREFECT_SERVER=temporary``, the code path of every command before;
* ``background``: the default, a second or later command (the server already runs);
* ``import``: ``python -c "import omniflash_prefect.cli.program"``, the floor: what any command
  costs before it does anything.

They alternate (temporary, background, import) over ``--rounds`` rounds, after a warm-up (one
``temporary`` run in a PREFECT_HOME of its own, which fills the bytecode cache; not reported) and
the first command of each mode on its new database, reported on their own (``first_background``
starts the server). Per run: wall time of the process; CPU of the process and of the children
it waited for (a temporary server included); and the CPU the background server spent meanwhile
(serving a ``background`` run, idling during the others). Children write and reuse their
bytecode in a cache of their own (``PYTHONPYCACHEPREFIX``), as Python does on a usual install,
even where ``PYTHONDONTWRITEBYTECODE`` is set. The server is stopped at the end.

    uv run --frozen python benchmarks/command_startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchlib import clean_env

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer

COMMAND = [sys.executable, "-m", "omniflash_prefect"]
PROMPT = "A paper boat drifts across a sunlit pond"
RUN_TIMEOUT_SECONDS = 600.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU of every child this process has waited for so far (and of their waited-for
    children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int | None) -> float:
    """CPU used so far by the live process ``pid`` (0 when there is none)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def server_pid(home: Path) -> int | None:
    """The PID of the local background server, as its record in PREFECT_HOME names it."""
    try:
        return int(json.loads((home / "omniflash-server.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def timed(argv: list[str], env: dict[str, str], home: Path) -> dict[str, Any]:
    """Run one command to its end; its wall and CPU seconds (and the server's CPU meanwhile)."""
    server = server_pid(home)
    server_before = process_cpu_seconds(server)
    cpu_before = children_cpu_seconds()
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own argv
        argv, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    if argv[-1] == "--json" and json.loads(done.stdout)["status"] != "archived":
        raise RuntimeError(f"not archived:\n{done.stdout}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(children_cpu_seconds() - cpu_before, 2),
        "server_cpu_s": round(process_cpu_seconds(server) - server_before, 2),
        "announced": "Started a local Prefect server" in done.stderr,
    }


def summary(runs: list[dict[str, Any]], job_seconds: float) -> dict[str, Any]:
    """Medians of one contender's runs; ``median_over_job_s`` is the wall time beyond the job
    (polling at most 0.5 s apart, so up to 0.5 s of it is the last poll's wait)."""
    walls = [run["wall_s"] for run in runs]
    return {
        "median_wall_s": round(statistics.median(walls), 2),
        "median_over_job_s": round(statistics.median(walls) - job_seconds, 2),
        "min_wall_s": min(walls),
        "max_wall_s": max(walls),
        "median_cpu_s": round(statistics.median(run["cpu_s"] for run in runs), 2),
        "median_server_cpu_s": round(statistics.median(run["server_cpu_s"] for run in runs), 2),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--job-seconds", type=float, default=1.0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="omniflash-startup-bench-") as scratch,
        EmulatorServer(EmulatorConfig(job_seconds=args.job_seconds, unlimited_balance=True)) as emu,
    ):
        folder = Path(scratch)
        env = clean_env(
            folder / "prefect-home",
            OMNIFLASH_BASE_URL=emu.base_url,
            OMNIFLASH_API_KEY=emu.api_key,
            OMNIFLASH_ARCHIVE_DIR=str(folder / "videos"),
            # The demo's pacing for the emulator's jobs of seconds.
            OMNIFLASH_FIRST_POLL_DELAY_SECONDS="0.5",
            OMNIFLASH_POLL_MIN_SECONDS="0.25",
            OMNIFLASH_POLL_MAX_SECONDS="0.5",
            PYTHONPYCACHEPREFIX=str(folder / "pycache"),
            DO_NOT_TRACK="1",
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        generate = [*COMMAND, "generate", PROMPT, "--duration", "4", "--json"]
        temporary = {
            **env,
            "PREFECT_HOME": str(folder / "temporary-home"),
            "OMNIFLASH_PREFECT_SERVER": "temporary",
        }
        background = {**env, "PREFECT_HOME": str(folder / "background-home")}
        home = Path(background["PREFECT_HOME"])
        contenders = {
            "temporary": (generate, temporary),
            "background": (generate, background),
            "import": ([sys.executable, "-c", "import omniflash_prefect.cli.program"], env),
        }
        try:
            warm_up = {**temporary, "PREFECT_HOME": str(folder / "warm-up-home")}
            timed(generate, warm_up, home)  # the bytecode of the command and of a server
            first_temporary = timed(*contenders["temporary"], home)
            first = timed(*contenders["background"], home)
            if not first["announced"] or server_pid(home) is None:
                raise RuntimeError("the first background command started no server")
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
            for _ in range(args.rounds):
                for name, (argv, child_env) in contenders.items():
                    runs[name].append(timed(argv, child_env, home))
            if any(run["announced"] for run in runs["background"]):
                raise RuntimeError("a later background command started another server")
        finally:
            stop = [*COMMAND, "server", "stop"]
            subprocess.run(stop, env=background, capture_output=True, check=False)  # noqa: S603
    report = {
        "python": platform.python_version(),
        "prefect": version("prefect"),
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "job_seconds": args.job_seconds,
        "rounds": args.rounds,
        "first_temporary": first_temporary,
        "first_background": first,
        **{
            name: summary(each, 0.0 if name == "import" else args.job_seconds)
            for name, each in runs.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
