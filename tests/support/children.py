"""Child processes, shared by the end-to-end tests and the benchmarks: a clean environment, a
free loopback port, a long-running child in its own process group, and ``prefect server start``.

Standard library only: the benchmarks' plain script imports this too, and must stay as light as
a hand-written script would be. Every child gets nothing of the caller's ``PREFECT_*`` or
``OMNIFLASH_*`` environment and a ``PREFECT_HOME`` of its own (profile, SQLite database, result
storage); long-running ones are terminated, then killed, whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

STOP_GRACE_SECONDS = 20.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on loopback right now."""
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
        COLUMNS="240",  # no wrapped lines in what the CLI prints
        PYTHONUNBUFFERED="1",  # a log file holds everything up to a failure
    )
    env.update(extra)
    return env


class Background:
    """A long-running child in its own process group, with its output in a log file."""

    def __init__(self, command: list[str], *, cwd: Path, env: Mapping[str, str], log: Path):
        self.command = command
        self.log = log
        self._log: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**env, "PWD": str(cwd)},  # what a shell in ``cwd`` would export
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self, limit: int = 8000) -> str:
        """The end of what the process printed."""
        self._log.flush()
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return text[-limit:]

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
            with suppress(ProcessLookupError):  # helpers it left behind in its group
                os.killpg(pid, signal.SIGKILL)
        finally:
            self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Each live process' id and the fields of its ``/proc/<pid>/stat`` after the command name
    (which may hold spaces and parentheses): state(0) ppid(1) pgrp(2) ... utime(11) stime(12)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            yield int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a process worker starts each flow run in a session of its
    own, so its process group does not hold them)."""
    children: dict[int, list[int]] = {}
    for child, fields in _proc_stats():
        children.setdefault(int(fields[1]), []).append(child)
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def group_cpu_seconds(pgid: int) -> float:
    """User plus system CPU time of every live process in the process group ``pgid``."""
    ticks = sum(
        int(fields[11]) + int(fields[12]) for _, fields in _proc_stats() if int(fields[2]) == pgid
    )
    return ticks / _CLOCK_TICKS


def is_healthy(api_url: str) -> bool:
    """Whether a Prefect server answers ``true`` at ``/health``."""
    with (
        suppress(OSError, urllib.error.URLError, ValueError),
        urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer,
    ):
        return bool(answer.status == 200 and json.loads(answer.read()) is True)
    return False


@dataclass
class PrefectServer:
    """A running ``prefect server start`` on loopback, and how to reach it."""

    home: Path
    api_url: str
    process: Background
    startup_seconds: float

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child command talking to this server."""
        return clean_env(self.home, PREFECT_API_URL=self.api_url, **extra)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and every process it started."""
        return group_cpu_seconds(self.process.process.pid)


@contextmanager
def prefect_server(
    argv: list[str], home: Path, env: Mapping[str, str], start_seconds: float
) -> Iterator[PrefectServer]:
    """``argv`` (``prefect server start``) on a free loopback port, healthy, then stopped.

    A child's readiness cannot be awaited, so this is a bounded poll of ``/health``; a server
    that exits or stays silent raises with the end of its output.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    argv = [*argv, "--host", "127.0.0.1", "--port", str(port)]
    # The UI asks the server where the API is: by default the settings' host and port, which the
    # command line's --host and --port do not change, so a UI on another port would load no data.
    env = {**env, "PREFECT_UI_API_URL": api_url}
    with Background(argv, cwd=home, env=env, log=home / "server.log") as process:
        started = time.monotonic()
        while not is_healthy(api_url):
            if process.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited:\n{process.output()}")
            if time.monotonic() - started > start_seconds:
                raise RuntimeError(
                    f"the Prefect server did not answer {api_url}/health within "
                    f"{start_seconds:.0f} s:\n{process.output()}"
                )
            time.sleep(0.25)
        yield PrefectServer(home, api_url, process, time.monotonic() - started)
