"""Shared pieces of the benchmark scripts: settings, a loopback Prefect server, process stats.

Nothing here imports Prefect or ``omniflash_prefect``, so the plain client script that imports
this module stays as light as a hand-written script would be.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent
#: The venv's console scripts (``prefect``).
BIN = Path(sys.executable).parent
SERVER_START_SECONDS = 180.0
STOP_GRACE_SECONDS = 20.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def group_cpu_seconds(pgid: int) -> float:
    """User plus system CPU time of every live process in the process group ``pgid``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            # After the command name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12)
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus PREFECT_*/OMNIFLASH_*, with a private PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OMNIFLASH_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


class Background:
    """A long-running child in its own process group, its output in a log file."""

    def __init__(self, command: list[str], *, env: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._log: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own argv
            command,
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self, limit: int = 8000) -> str:
        self._log.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")[-limit:]

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL if it has not exited after a grace period."""
        pid = self.process.pid
        try:
            if self.process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                try:
                    self.process.wait(STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    self.process.wait(10)
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        finally:
            self._log.close()


@dataclass
class PrefectServer:
    """A running ``prefect server start`` on loopback with SQLite under ``home``."""

    home: Path
    api_url: str
    process: Background
    startup_seconds: float

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and every process it started."""
        return group_cpu_seconds(self.process.process.pid)


def _healthy(api_url: str) -> bool:
    url = f"{api_url}/health"
    with (
        suppress(OSError, urllib.error.URLError, ValueError),
        urllib.request.urlopen(url, timeout=2) as answer,  # noqa: S310 - loopback http
    ):
        return bool(answer.status == 200 and json.loads(answer.read()) is True)
    return False


@contextmanager
def prefect_server(home: Path, database_url: str | None = None) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free loopback port with its own PREFECT_HOME; its database
    is SQLite there, or ``database_url`` (e.g. ``postgresql+asyncpg://...`` on loopback)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    argv = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    env = clean_env(
        home,
        PREFECT_UI_ENABLED="false",
        # Log why a request answered 503 (e.g. SQLite busy) into server.log.
        PREFECT_API_LOG_RETRYABLE_ERRORS="true",
        NO_PROXY="127.0.0.1,localhost",
    )
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    process = Background(argv, env=env, log=home / "server.log")
    try:
        started = time.monotonic()
        while not _healthy(api_url):
            if process.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited:\n{process.output()}")
            if time.monotonic() - started > SERVER_START_SECONDS:
                raise RuntimeError(f"the Prefect server did not start:\n{process.output()}")
            time.sleep(0.25)
        yield PrefectServer(home, api_url, process, time.monotonic() - started)
    finally:
        process.stop()


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
