"""The ``omniflash`` command as a user runs it: a real process, real loopback HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

COMMAND = [sys.executable, "-m", "omniflash_prefect"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any OMNIFLASH_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIFLASH_")}
    env.update(extra)
    return env


def test_demo_archives_a_video_without_an_api_key(tmp_path: Path) -> None:
    """With no key configured the demo runs on the emulator and prints the archived file."""
    result = subprocess.run(
        [*COMMAND, "demo", "--job-seconds", "0.3"],
        cwd=tmp_path,
        env=clean_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "built-in emulator" in result.stdout
    path = Path(re.search(r"video:\s+(\S+)", result.stdout).group(1))  # type: ignore[union-attr]
    sha = re.search(r"sha256:\s+([0-9a-f]{64})", result.stdout).group(1)  # type: ignore[union-attr]
    assert path.is_relative_to(tmp_path / "videos")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", path.parent.name)


def test_demo_honours_the_archive_dir_setting(tmp_path: Path) -> None:
    """OMNIFLASH_ARCHIVE_DIR decides where the demo archives."""
    result = subprocess.run(
        [*COMMAND, "demo", "--emulator", "--job-seconds", "0.2"],
        cwd=tmp_path,
        env=clean_env(OMNIFLASH_ARCHIVE_DIR=str(tmp_path / "elsewhere"), COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "elsewhere").rglob("*.mp4"))) == 1


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
    result = subprocess.run(
        [*COMMAND, "emulator", "--host", "0.0.0.0", "--port", "0"],
        env=clean_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "non-loopback" in result.stderr


def test_emulator_command_refuses_bad_options() -> None:
    """A nonsensical fault rate is a usage error."""
    result = subprocess.run(
        [*COMMAND, "emulator", "--task-failure-rate", "2"],
        env=clean_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "task_failure_rate" in result.stderr
