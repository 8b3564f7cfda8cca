"""``omniflash fetch TASK_ID``: a task already paid for, polled and archived from the command line
with ``generate``'s exit codes, and nothing submitted.

Plain (sync) tests: the command calls ``asyncio.run`` itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from omniflash_prefect import OmniFlashClient, VideoRequest
from omniflash_prefect.cli import app
from omniflash_prefect.emulator import EmulatorServer


def paid_task(emulator: EmulatorServer, prompt: str = "A dragonfly on a reed") -> str:
    """A task submitted outside any flow, as a lost run or another tool would have left it."""

    async def submit() -> str:
        async with OmniFlashClient(emulator.api_key, base_url=emulator.base_url) as client:
            return await client.submit(VideoRequest(prompt=prompt, duration=4))

    return asyncio.run(submit())


def fetch_json(*args: str) -> tuple[int, dict[str, Any]]:
    """``omniflash fetch --json <args>`` in-process: exit code and the JSON object printed."""
    result = CliRunner().invoke(app, ["fetch", "--json", *args], env={"COLUMNS": "200"})
    return result.exit_code, json.loads(result.stdout)


def test_fetch_archives_a_paid_task_once(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """The task is polled and archived byte-exact into --archive-dir, submitting nothing; a
    second fetch reports the same file without another status call or download."""
    task_id = paid_task(emulator)
    code, first = fetch_json(task_id, "--credentials-block", block, "--archive-dir", str(tmp_path))
    assert code == 0, first
    assert first["status"] == "archived"
    assert first["task_id"] == task_id
    assert first["flow_run_id"]
    location = Path(first["location"])
    assert location.is_relative_to(tmp_path)
    assert hashlib.sha256(location.read_bytes()).hexdigest() == emulator.state.video_sha256(task_id)
    assert emulator.state.submission_count == 1  # the one made above, none by fetch
    polls, downloads = emulator.state.polls(task_id), emulator.state.downloads(task_id)

    code, second = fetch_json(task_id, "--credentials-block", block, "--archive-dir", str(tmp_path))
    assert code == 0, second
    assert second["location"] == first["location"]
    assert emulator.state.polls(task_id) == polls
    assert emulator.state.downloads(task_id) == downloads


@pytest.mark.parametrize(
    ("task_id", "code", "status"),
    [
        ("../../etc/passwd", 2, "invalid"),
        ("task_01NOSUCHTASK000000000000000", 3, "refused"),
    ],
)
def test_fetch_refuses_bad_and_unknown_task_ids(
    emulator: EmulatorServer, block: str, task_id: str, code: int, status: str
) -> None:
    """An id that could escape a path is refused before any run (exit 2); an id the provider
    does not know is its refusal (exit 3). Nothing is ever submitted."""
    exit_code, report = fetch_json(task_id, "--credentials-block", block)
    assert exit_code == code, report
    assert report["status"] == status
    assert emulator.state.submission_attempts == 0
    if code == 2:
        assert report["flow_run_id"] is None


def test_fetch_of_a_failed_generation_exits_4(emulator: EmulatorServer, block: str) -> None:
    """A task that failed at the provider: exit 4 with the provider's reason and the task id."""
    emulator.config.task_failure_rate = 1.0
    task_id = paid_task(emulator, "An avalanche in slow motion")
    code, report = fetch_json(task_id, "--credentials-block", block)
    assert code == 4, report
    assert report["status"] == "failed"
    assert report["task_id"] == task_id
    assert report["error_type"] == "GenerationFailedError"


def test_fetch_with_a_missing_credentials_block_exits_2_before_any_run(
    emulator: EmulatorServer, block: str
) -> None:
    """The block is read the way a run reads it: exit 2, the blocks there are named, no run."""
    task_id = paid_task(emulator)
    code, report = fetch_json(task_id, "--credentials-block", "no-such-block")
    assert code == 2
    assert report["error_type"] == "CredentialsBlockNotFoundError"
    # Names saved blocks (the first few of the session server's, ``block`` among them or not).
    assert re.search(r"'emulator-[0-9a-f]{12}'", report["error"]), report["error"]
    assert report["flow_run_id"] is None
    assert emulator.state.polls(task_id) == 0
