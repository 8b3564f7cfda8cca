"""``omniflash demo`` in-process: the real generate_video flow on a throwaway emulator.

Plain (sync) tests: the command calls ``asyncio.run`` itself.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)
from typer.testing import CliRunner, Result

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.cli import app
from omniflash_prefect.cli.demo import DEMO_BLOCK_NAME
from omniflash_prefect.cli.flow_runs import (
    TEMPORARY_SERVER_STARTUP_SECONDS,
    flow_run_ui_url,
    server_for_command,
)
from omniflash_prefect.cli.local_server import CHOICE_VARIABLE
from omniflash_prefect.errors import UsageError


def run_demo(*args: str) -> Result:
    """``omniflash demo <args>`` in-process."""
    return CliRunner().invoke(app, ["demo", *args], env={"COLUMNS": "200"})


def test_demo_runs_the_flow_and_links_the_run(fast_settings: Path) -> None:
    """The demo archives through a generate_video run on the emulator and prints its UI link."""
    result = run_demo("--job-seconds", "0.3")
    assert result.exit_code == 0, result.stderr
    assert "built-in emulator" in result.stdout
    video = Path(re.search(r"video:\s+(\S+)", result.stdout).group(1))  # type: ignore[union-attr]
    sha = re.search(r"sha256:\s+([0-9a-f]{64})", result.stdout).group(1)  # type: ignore[union-attr]
    assert video.is_relative_to(fast_settings)
    assert hashlib.sha256(video.read_bytes()).hexdigest() == sha
    run_id = re.search(r"flow run:\s+(\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        assert client.read_flow(run.flow_id).name == "generate-video"
    assert run.state is not None
    assert run.state.is_completed()
    assert run.parameters["credentials_block"] == DEMO_BLOCK_NAME
    assert f"/runs/flow-run/{run_id}" in result.stdout
    assert "temporary local Prefect server" not in result.stdout


def test_demo_saves_its_block_and_restores_the_environment() -> None:
    """The block is (over)written to point at the demo's emulator; fast poll settings end with
    the run."""
    stale = "http://127.0.0.1:9"
    OmniFlashCredentials(api_key="stale", base_url=stale).save(DEMO_BLOCK_NAME, overwrite=True)
    before = dict(os.environ)
    result = run_demo("--job-seconds", "0.1")
    assert result.exit_code == 0, result.stderr
    block = OmniFlashCredentials.load(DEMO_BLOCK_NAME)
    assert isinstance(block, OmniFlashCredentials)
    assert block.base_url.startswith("http://127.0.0.1:")
    assert block.base_url != stale
    assert dict(os.environ) == before


def test_demo_honours_the_archive_dir_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMNIFLASH_ARCHIVE_DIR decides where the demo archives."""
    monkeypatch.setenv("OMNIFLASH_ARCHIVE_DIR", str(tmp_path / "elsewhere"))
    result = run_demo("--emulator", "--job-seconds", "0.1")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "elsewhere").rglob("*.mp4"))) == 1


def test_demo_live_without_a_key_exits_2() -> None:
    """--live with no OMNIFLASH_API_KEY is a usage error that says how to set one."""
    result = run_demo("--live")
    assert result.exit_code == 2
    assert "OMNIFLASH_API_KEY" in result.stderr


def test_with_a_server_configured_a_command_uses_it_and_starts_none(tmp_path: Path) -> None:
    """PREFECT_API_URL set: the command's runs go there, as they always did; nothing is looked
    for or written in PREFECT_HOME."""
    with temporary_settings({PREFECT_HOME: tmp_path}):
        configured = PREFECT_API_URL.value()
        assert configured
        with server_for_command():
            assert PREFECT_API_URL.value() == configured
        assert flow_run_ui_url(uuid4()) is not None
    assert not any(tmp_path.iterdir())


def test_asked_for_a_temporary_server_a_command_starts_no_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMNIFLASH_PREFECT_SERVER=temporary: Prefect's temporary server, given longer than its
    default 20 s to start; no local server is looked for, and there is no UI link to print."""
    monkeypatch.setenv(CHOICE_VARIABLE, "temporary")
    with temporary_settings({PREFECT_HOME: tmp_path}, restore_defaults={PREFECT_API_URL}):
        assert flow_run_ui_url(uuid4()) is None
        with server_for_command():
            assert PREFECT_API_URL.value() is None
            timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
            assert timeout >= TEMPORARY_SERVER_STARTUP_SECONDS
    assert not any(tmp_path.iterdir())


def test_an_unknown_server_choice_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt OMNIFLASH_PREFECT_SERVER stops the command (exit 2) before any server starts."""
    monkeypatch.setenv(CHOICE_VARIABLE, "temporal")
    with (
        temporary_settings({PREFECT_HOME: tmp_path}, restore_defaults={PREFECT_API_URL}),
        pytest.raises(UsageError, match="'background'"),
        server_for_command(),
    ):
        pytest.fail("entered")
    assert not any(tmp_path.iterdir())
