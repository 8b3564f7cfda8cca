"""The ``omniflash`` command as a user runs it: a real process, real loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

COMMAND = [sys.executable, "-m", "omniflash_prefect"]


def omniflash(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run the ``omniflash`` command to completion, capturing its text output."""
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, check=False, **options)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any OMNIFLASH_* or PREFECT_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNIFLASH_", "PREFECT_"))}
    env.update(extra)
    return env


def prefect_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment whose Prefect state lives under ``tmp_path``, never in ~/.prefect,
    with no server configured and no telemetry."""
    return clean_env(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        COLUMNS="200",
        **extra,
    )


def test_demo_runs_the_flow_on_a_temporary_server_when_asked(tmp_path: Path) -> None:
    """With no key and no Prefect server, and OMNIFLASH_PREFECT_SERVER=temporary, the demo runs
    generate_video on the emulator and on Prefect's temporary server (no server is left
    running), archives the video and prints its true SHA-256. Without the variable the commands
    keep a local server running instead: see test_local_server.py."""
    env = prefect_env(tmp_path, OMNIFLASH_PREFECT_SERVER="temporary")
    result = omniflash("demo", "--job-seconds", "0.3", cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "built-in emulator" in result.stdout
    path = Path(re.search(r"video:\s+(\S+)", result.stdout).group(1))  # type: ignore[union-attr]
    sha = re.search(r"sha256:\s+([0-9a-f]{64})", result.stdout).group(1)  # type: ignore[union-attr]
    assert path.is_relative_to(tmp_path / "videos")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", path.parent.name)
    assert re.search(r"flow run:\s+[0-9a-f-]{36}", result.stdout)
    assert "temporary local Prefect server" in result.stdout
    assert "OMNIFLASH_PREFECT_SERVER" in result.stdout
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api" in result.stdout
    assert "Prefect UI:" not in result.stdout
    assert "local Prefect server at" not in result.stderr
    home = tmp_path / "prefect-home"
    assert (home / "prefect.db").is_file()
    assert not (home / "server.pid").exists()
    assert not (home / "omniflash-server.json").exists()


def test_generate_without_credentials_fails_fast_with_one_json_object(tmp_path: Path) -> None:
    """With no key and no block, generate --json exits 2 before starting any Prefect server
    (temporary or local), and stdout is exactly one JSON object."""
    result = omniflash(
        "generate",
        "a paper boat on a pond",
        "--json",
        cwd=tmp_path,
        env=prefect_env(tmp_path),
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "invalid"
    assert "OMNIFLASH_API_KEY" in report["error"]
    assert "temporary server" not in result.stderr
    assert "Prefect server" not in result.stderr
    home = tmp_path / "prefect-home"
    assert not (home / "prefect.db").exists()
    assert not (home / "server.pid").exists()
    assert not (home / "omniflash-server.lock").exists()


@pytest.fixture
def emulator_process() -> Iterator[tuple[str, str]]:
    """``omniflash emulator --port 0`` running; yields its announced base URL and key."""
    process = subprocess.Popen(
        [*COMMAND, "emulator", "--port", "0", "--api-key", "cli-key", "--job-seconds", "0.1"],
        env=clean_env(COLUMNS="200"),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        banner = process.stderr.readline()  # printed once the socket is listening
        match = re.search(r"(http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        yield match.group(1), "cli-key"
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def test_emulator_command_serves_the_api(emulator_process: tuple[str, str]) -> None:
    """The announced URL answers the API with the chosen key, and refuses others."""
    base_url, key = emulator_process
    with httpx.Client(base_url=base_url) as http:
        assert http.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).json()["success"]
        assert http.get("/v1/balance", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_emulator_command_refuses_a_public_bind() -> None:
    """Binding beyond loopback needs an explicit flag; the error says so."""
    result = omniflash(
        "emulator", "--host", "0.0.0.0", "--port", "0", env=clean_env(COLUMNS="200"), timeout=60
    )
    assert result.returncode == 2
    assert "non-loopback" in result.stderr


def test_emulator_command_refuses_bad_options() -> None:
    """A nonsensical fault rate is a usage error."""
    result = omniflash(
        "emulator", "--task-failure-rate", "2", env=clean_env(COLUMNS="200"), timeout=60
    )
    assert result.returncode == 2
    assert "task_failure_rate" in result.stderr
