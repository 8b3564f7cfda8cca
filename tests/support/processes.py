"""Child processes of the end-to-end tests: the README's commands, a Prefect server, workers,
and the in-process view of that server (its client, a copy of the checkout to deploy). The
plain process helpers they build on are :mod:`tests.support.children`, shared with the
benchmarks.

The commands are read out of the "Running on a Prefect server" section of
docs/getting-started.md, so a command
written there is a command these tests run. Every child gets a temporary PREFECT_HOME (profile,
SQLite database, result storage) and nothing from the caller's PREFECT_* or OMNIFLASH_*
environment.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.children import (
    Background,
    PrefectServer,
    clean_env,
    descendants,
    free_port,
    prefect_server,
)
from tests.support.readme import Section, readme_section

__all__ = [
    "Background",
    "PrefectServer",
    "api",
    "argv_of",
    "checkout",
    "clean_env",
    "descendants",
    "fast_worker_env",
    "free_port",
    "kill_with_its_runs",
    "on_server",
    "readme_walkthrough",
    "run",
    "start_prefect_server",
    "table_of",
]

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Running on a Prefect server"
#: The docs page that holds it.
SECTION_PAGE = "docs/getting-started.md"
#: The venv's console scripts (``prefect``), as an activated environment puts them on PATH.
BIN = Path(sys.executable).parent
#: What the README's commands say the server is at; the tests use a free port instead.
README_API_URL = "http://127.0.0.1:4200/api"

SERVER_START_SECONDS = 120.0


def readme_walkthrough() -> Section:
    """The commands and snippets of the README section the walkthrough follows."""
    return readme_section(SECTION, SECTION_PAGE)


def argv_of(command: str) -> list[str]:
    """A README command as argv, ``prefect`` resolved to this environment's script."""
    words = shlex.split(command)
    assert words[0] == "prefect", command
    return [str(BIN / "prefect"), *words[1:]]


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


def kill_with_its_runs(process: Background) -> list[int]:
    """SIGKILL a worker and every process it started, as a lost machine would lose them."""
    pids = [process.process.pid, *descendants(process.process.pid)]
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.process.wait(10)
    return pids


@contextmanager
def start_prefect_server(command: str, home: Path) -> Iterator[PrefectServer]:
    """The README's ``prefect server start`` on a free loopback port, healthy, then stopped."""
    with prefect_server(argv_of(command), home, clean_env(home), SERVER_START_SECONDS) as server:
        yield server


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
