"""Shared pieces of the benchmark scripts: settings, a loopback Prefect server, process stats.

Nothing here imports Prefect or ``omniflash_prefect``, so the plain client script that imports
this module stays as light as a hand-written script would be. The child-process helpers are the
tests' own (:mod:`tests.support.children`, standard library only).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as ``python benchmarks/<script>.py``
    sys.path.insert(0, str(REPO))

from tests.support import children  # noqa: E402 - needs the checkout on sys.path
from tests.support.children import (  # noqa: E402
    Background,
    PrefectServer,
    free_port,
    group_cpu_seconds,
)

__all__ = [
    "BENCHMARKS",
    "BIN",
    "REPO",
    "Background",
    "PollBounds",
    "PrefectServer",
    "clean_env",
    "cpu_seconds",
    "emit",
    "fixed_poll_calls",
    "free_port",
    "group_cpu_seconds",
    "parse_result",
    "peak_rss_kib",
    "prefect_server",
    "run_child",
]

BENCHMARKS = Path(__file__).resolve().parent
#: The venv's console scripts (``prefect``).
BIN = Path(sys.executable).parent
SERVER_START_SECONDS = 180.0


@dataclass(frozen=True)
class PollBounds:
    """The ``OMNIFLASH_*`` poll bounds both contenders use."""

    first_delay: float
    min_interval: float
    max_interval: float
    timeout: float = 600.0

    def env(self) -> dict[str, str]:
        return {
            "OMNIFLASH_FIRST_POLL_DELAY_SECONDS": repr(self.first_delay),
            "OMNIFLASH_POLL_MIN_SECONDS": repr(self.min_interval),
            "OMNIFLASH_POLL_MAX_SECONDS": repr(self.max_interval),
            "OMNIFLASH_POLL_TIMEOUT_SECONDS": repr(self.timeout),
        }

    @classmethod
    def from_env(cls) -> PollBounds:
        return cls(
            first_delay=float(os.environ["OMNIFLASH_FIRST_POLL_DELAY_SECONDS"]),
            min_interval=float(os.environ["OMNIFLASH_POLL_MIN_SECONDS"]),
            max_interval=float(os.environ["OMNIFLASH_POLL_MAX_SECONDS"]),
            timeout=float(os.environ["OMNIFLASH_POLL_TIMEOUT_SECONDS"]),
        )


def fixed_poll_calls(job_seconds: float, interval: float = 5.0) -> int:
    """Provider calls per video of a naive client: one submit, a status read every ``interval``
    seconds from the submit on (the first one ``interval`` after it) until one reads
    ``completed``, and one download."""
    polls = max(1, math.ceil(job_seconds / interval))
    return 1 + polls + 1


def peak_rss_kib() -> int:
    """This process' peak resident set size in KiB: ``VmHWM`` from ``/proc/self/status``.

    Not ``ru_maxrss``: a child started with vfork+exec inherits its parent's peak there.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def cpu_seconds() -> float:
    """User plus system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def prefect_server(home: Path, database_url: str | None = None) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME; its database
    is SQLite there, or ``database_url`` (e.g. ``postgresql+asyncpg://...`` on loopback)."""
    env = clean_env(
        home,
        PREFECT_UI_ENABLED="false",
        # Log why a request answered 503 (e.g. SQLite busy) into server.log.
        PREFECT_API_LOG_RETRYABLE_ERRORS="true",
        NO_PROXY="127.0.0.1,localhost",
    )
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    argv = [str(BIN / "prefect"), "server", "start"]
    with children.prefect_server(argv, home, env, SERVER_START_SECONDS) as server:
        yield server


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A child's environment (see :func:`tests.support.children.clean_env`) that imports this
    checkout's package."""
    return children.clean_env(home, PYTHONPATH=str(REPO), **extra)


def emit(result: Mapping[str, Any]) -> None:
    """Print one JSON object on its own line, marked so a driver finds it among logs."""
    sys.stdout.write("BENCH-RESULT " + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


#: The longest one benchmark child may run.
CHILD_TIMEOUT_SECONDS = 3600.0


def run_child(argv: list[str], env: Mapping[str, str], log: Path) -> dict[str, Any]:
    """Run one contender to the end, its output in ``log``; its JSON result, with the wall time
    of the whole process (interpreter start and imports included) as ``process_seconds``."""
    started = time.monotonic()
    with log.open("w") as sink:
        subprocess.run(  # noqa: S603 - our own argv
            argv,
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=CHILD_TIMEOUT_SECONDS,
            check=False,
        )
    process_seconds = time.monotonic() - started
    result = parse_result(log.read_text(errors="replace"))
    result["process_seconds"] = round(process_seconds, 2)
    return result


def parse_result(output: str) -> dict[str, Any]:
    """The JSON object a child printed with :func:`emit`."""
    for line in reversed(output.splitlines()):
        if line.startswith("BENCH-RESULT "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCH-RESULT "))
            return parsed
    raise RuntimeError(f"no BENCH-RESULT line in the child's output:\n{output[-4000:]}")
