"""Child processes of the end-to-end tests: the README's commands, a Prefect server, workers,
and the in-process view of that server (its client, a copy of the checkout to deploy).

The commands are read out of the README's "Running on a Prefect server" section, so a command
written there is a command these tests run. Every child gets a temporary PREFECT_HOME (profile,
SQLite database, result storage) and nothing from the caller's PREFECT_* or OMNIFLASH_*
environment; long-running ones live in their own process group and are terminated, then killed,
whatever happens.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.readme import Section, readme_section

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Running on a Prefect server"
#: The venv's console scripts (``prefect``), as an activated environment puts them on PATH.
BIN = Path(sys.executable).parent
#: What the README's commands say the server is at; the tests use a free port instead.
README_API_URL = "http://127.0.0.1:4200/api"

SERVER_START_SECONDS = 120.0
STOP_GRACE_SECONDS = 20.0


def readme_walkthrough() -> Section:
    """The commands and snippets of the README section the walkthrough follows."""
    return readme_section(SECTION)


def argv_of(command: str) -> list[str]:
    """A README command as argv, ``prefect`` resolved to this environment's script."""
    words = shlex.split(command)
    assert words[0] == "prefect", command
    return [str(BIN / "prefect"), *words[1:]]


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
        COLUMNS="240",  # no wrapped lines in what the CLI prints
        PYTHONUNBUFFERED="1",  # a log file holds everything up to a failure
    )
    env.update(extra)
    return env


def run(command: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float = 120) -> str:
    """Run a command to completion; fail with its output unless it exits 0."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**env, "PWD": str(cwd)},  # what a shell in ``cwd`` would export
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{shlex.join(command)} exited {result.returncode}:\n{output}"
    return output


class Background:
    """A long-running child in its own process group, with its output in a log file."""

    def __init__(self, command: list[str], *, cwd: Path, env: Mapping[str, str], log: Path):
        self.command = command
        self.log = log
        self._log: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**env, "PWD": str(cwd)},
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


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc (a process worker starts each flow run in a
    session of its own, so its process group does not hold them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            # The command name may hold spaces and parentheses: the fields follow the last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def kill_with_its_runs(process: Background) -> list[int]:
    """SIGKILL a worker and every process it started, as a lost machine would lose them."""
    pids = [process.process.pid, *descendants(process.process.pid)]
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.process.wait(10)
    return pids


@dataclass
class PrefectServer:
    """A running ``prefect server start`` and how to reach it."""

    home: Path
    api_url: str
    process: Background
    startup_seconds: float

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child command talking to this server."""
        return clean_env(self.home, PREFECT_API_URL=self.api_url, **extra)


def wait_until_healthy(api_url: str, process: Background, timeout: float) -> float:
    """Poll ``/health`` until it answers ``true``; fail with the server's output otherwise.

    A subprocess' readiness cannot be awaited, so this is a bounded poll.
    """
    started = time.monotonic()
    with httpx.Client(trust_env=False, timeout=2) as http:
        while True:
            if process.process.poll() is not None:
                pytest.fail(
                    f"the Prefect server exited with {process.process.returncode}:\n"
                    f"{process.output()}"
                )
            with suppress(httpx.HTTPError, ValueError):
                answer = http.get(f"{api_url}/health")
                if answer.status_code == 200 and answer.json() is True:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                pytest.fail(
                    f"the Prefect server did not answer {api_url}/health within {timeout:.0f} s:\n"
                    f"{process.output()}"
                )
            time.sleep(0.25)


@contextmanager
def start_prefect_server(command: str, home: Path) -> Iterator[PrefectServer]:
    """``command`` (``prefect server start``) on a free loopback port, healthy, then stopped."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    argv = [*argv_of(command), "--host", "127.0.0.1", "--port", str(port)]
    with Background(argv, cwd=home, env=clean_env(home), log=home / "server.log") as process:
        seconds = wait_until_healthy(api_url, process, SERVER_START_SECONDS)
        yield PrefectServer(home, api_url, process, seconds)


@contextmanager
def on_server(server: PrefectServer) -> Iterator[None]:
    """In-process Prefect calls go to ``server`` within this block.

    Prefect's background events worker is a process-wide singleton bound to the API URL current
    when it starts (a block load emits an event): it is drained before and after, so none stays
    bound to this server once it is stopped, nor carries other tests' events here.
    """
    EventsWorker.drain_all(timeout=30, at_exit=False)
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        try:
            yield
        finally:
            EventsWorker.drain_all(timeout=30, at_exit=False)


@contextmanager
def api(server: PrefectServer) -> Iterator[SyncPrefectClient]:
    """An in-process client of the walkthrough's server."""
    with on_server(server), get_client(sync_client=True) as client:
        yield client


def fast_worker_env(server: PrefectServer, archive: Path) -> dict[str, str]:
    """A child environment with quick polling and its own archive directory."""
    return server.env(
        OMNIFLASH_FIRST_POLL_DELAY_SECONDS="0.1",
        OMNIFLASH_POLL_MIN_SECONDS="0.1",
        OMNIFLASH_POLL_MAX_SECONDS="0.2",
        OMNIFLASH_POLL_TIMEOUT_SECONDS="60",
        OMNIFLASH_ARCHIVE_DIR=str(archive),
    )


def checkout(destination: Path) -> Path:
    """A copy of what a deployment needs from the repository: prefect.yaml and flows/."""
    destination.mkdir()
    shutil.copy2(REPO / "prefect.yaml", destination / "prefect.yaml")
    shutil.copytree(
        REPO / "flows", destination / "flows", ignore=shutil.ignore_patterns("__pycache__")
    )
    return destination


def table_of(data: Any) -> list[dict[str, Any]]:
    """A table artifact's rows (the API keeps the table as a JSON string)."""
    table = json.loads(data) if isinstance(data, str) else data
    assert isinstance(table, list), data
    return table
