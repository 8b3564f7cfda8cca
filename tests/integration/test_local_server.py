"""Without ``PREFECT_API_URL`` the commands keep one local Prefect server running between them.

Real ``omniflash`` processes and a real ``prefect server start --background`` on loopback, in a
temporary PREFECT_HOME (never ``~/.prefect``); every server a test starts there is killed after
it, whatever happens. Starting one takes from 20 s (quiet laptop) to a minute or two (a busy
2-core machine), so one test starts one and checks everything a newcomer meets with it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from tests.support.children import clean_env

COMMAND = [sys.executable, "-m", "omniflash_prefect"]
STARTED = re.compile(r"Started a local Prefect server at (http://127\.0\.0\.1:(\d+)/api) \(UI: ")
COMMAND_SECONDS = 600


def servers_of(home: Path) -> list[int]:
    """The Prefect server processes running with ``home`` as their PREFECT_HOME."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with suppress(OSError):
            variables = environ.read_bytes().split(b"\0")
            command = (environ.parent / "cmdline").read_bytes()
            if f"PREFECT_HOME={home}".encode() in variables and b"prefect.server" in command:
                found.append(int(environ.parent.name))
    return found


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """The test's PREFECT_HOME; any server still running there afterwards is killed."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    yield home
    for pid in servers_of(home):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def a_pid_that_is_gone() -> int:
    """The PID of a process that has ended, as a PID file left by a dead server holds."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_commands_share_one_announced_local_server_until_it_is_stopped(
    home: Path, tmp_path: Path
) -> None:
    """Two demos started together on a machine with no server configured: one starts a local
    Prefect server and says where, the other waits for it and uses it (one server process);
    each prints its run's page in that server's UI, and the server keeps the runs after both
    commands ended; ``omniflash server stop`` ends it and its records.

    Around it, what a machine may hold: a PID file left by a server that is gone (replaced), and
    Prefect's usual port taken by something else (the server takes another one).
    """
    (home / "server.pid").write_text(str(a_pid_that_is_gone()))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port = taken.getsockname()[1]
        env = clean_env(home, DO_NOT_TRACK="1", PREFECT_SERVER_API_PORT=str(busy_port))
        demos = [
            subprocess.Popen(
                [*COMMAND, "demo", "--job-seconds", "0.3"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [demo.communicate(timeout=COMMAND_SECONDS) for demo in demos]
    for demo, (stdout, stderr) in zip(demos, outputs, strict=True):
        assert demo.returncode == 0, stdout + stderr

    announced = [match for _, stderr in outputs if (match := STARTED.search(stderr))]
    assert len(announced) == 1, [stderr for _, stderr in outputs]
    api_url, port = announced[0].group(1), int(announced[0].group(2))
    assert port != busy_port
    assert "`omniflash server stop` stops it" in announced[0].string
    pid = int((home / "server.pid").read_text())
    assert json.loads((home / "omniflash-server.json").read_text()) == {
        "pid": pid,
        "api_url": api_url,
    }
    assert servers_of(home) == [pid]

    ui_url = api_url.removesuffix("/api")
    with httpx.Client(base_url=api_url, trust_env=False, timeout=30) as api:
        for stdout, _ in outputs:
            assert "temporary" not in stdout
            link = re.search(r"Prefect UI: (\S+)/runs/flow-run/([0-9a-f-]{36})", stdout)
            assert link, stdout
            assert link.group(1) == ui_url
            run = api.get(f"/flow_runs/{link.group(2)}")
            assert run.status_code == 200, run.text
            assert run.json()["state"]["type"] == "COMPLETED"

    env = clean_env(home, DO_NOT_TRACK="1")
    status = subprocess.run(
        [*COMMAND, "server", "status"], env=env, capture_output=True, text=True, check=False
    )
    assert status.returncode == 0, status.stderr
    assert api_url in status.stdout
    assert f"PID {pid}" in status.stdout

    stopped = subprocess.run(
        [*COMMAND, "server", "stop"], env=env, capture_output=True, text=True, check=False
    )
    assert stopped.returncode == 0, stopped.stderr
    assert f"Stopped the local Prefect server (PID {pid})" in stopped.stdout
    assert servers_of(home) == []
    assert not (home / "server.pid").exists()
    assert not (home / "omniflash-server.json").exists()
