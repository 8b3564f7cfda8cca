"""``omniflash batch``: manifests from the command line, on a real Prefect server against the
emulator: refusal of bad rows, the JSON report and exit codes, and a batch killed with SIGKILL
mid-download that a second run finishes without paying for any row twice.

Plain (sync) tests: the command calls ``asyncio.run`` itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from omniflash_prefect.cli import app
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.emulator.state import EmulatorState


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def batch_json(*args: str) -> tuple[int, dict[str, Any]]:
    """``omniflash batch --json <args>`` in-process: exit code and the JSON object printed."""
    result = CliRunner().invoke(app, ["batch", "--json", *args], env={"COLUMNS": "200"})
    return result.exit_code, json.loads(result.stdout)


def assert_archived_exactly(item: dict[str, Any], emulator: EmulatorServer) -> None:
    assert item["status"] == "archived", item
    data = Path(item["location"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == item["sha256"]
    assert item["sha256"] == emulator.state.video_sha256(item["task_id"])


def test_invalid_rows_exit_2_and_nothing_is_sent(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """A manifest with a bad row is refused by line before any run or request; --json lists
    every problem with its line, id and API error code."""
    manifest = jsonl(
        tmp_path / "bad.jsonl",
        [
            {"id": "ok", "prompt": "A calm lake", "duration": 4},
            {"id": "too-long", "prompt": "A calm lake", "duration": 12},
        ],
    )
    code, report = batch_json(str(manifest), "--credentials-block", block)
    assert code == 2
    assert report["status"] == "invalid"
    assert report["problems"] == [
        {
            "line": 2,
            "id": "too-long",
            "message": report["problems"][0]["message"],
            "codes": ["invalid_duration"],
        }
    ]
    assert "duration" in report["problems"][0]["message"]
    assert report["flow_run_id"] is None
    assert emulator.state.submission_attempts == 0


def test_csv_manifest_reports_every_row(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """A CSV manifest (with an invalid row skipped on request) ends with exit 4, a report whose
    archived rows are byte-exact, and one submission per valid row."""
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text(
        "id,prompt,duration,resolution\n"
        "sku-1,A red sneaker turning on a plinth,4,720p\n"
        "sku-2,A blue backpack on a mountain trail,4,1080p\n"
        "sku-3,A green kettle,7,720p\n"
    )
    code, report = batch_json(
        str(manifest), "--credentials-block", block, "--skip-invalid", "--batch-id", "catalogue"
    )
    assert code == 4, report
    assert report["status"] == "partial"
    assert report["batch_id"] == "catalogue"
    assert [item["id"] for item in report["items"]] == ["sku-1", "sku-2", "sku-3"]
    for item in report["items"][:2]:
        assert_archived_exactly(item, emulator)
    assert report["items"][2]["status"] == "skipped_invalid"
    assert report["counts"]["archived"] == 2
    assert report["counts"]["skipped_invalid"] == 1
    assert report["total_cost"] == pytest.approx(sum(item["cost"] for item in report["items"][:2]))
    assert emulator.state.submission_count == 2


def test_batch_killed_mid_download_resumes_without_paying_twice(
    emulator: EmulatorServer,
    block: str,
    tmp_path: Path,
    prefect_server: Path,
    fast_settings: Path,
) -> None:
    """SIGKILL while one video is half downloaded and the others are generating; the same
    command with the same --batch-id then archives all six rows, polling the three recorded
    task ids and submitting only the three rows never sent: six submissions in all."""
    emulator.config.job_seconds = 1.5
    emulator.config.download_stall_seconds = 120  # every download stops half way
    manifest = jsonl(
        tmp_path / "nightly.jsonl",
        [{"id": f"n{i}", "prompt": f"Night scene {i}", "duration": 4} for i in range(6)],
    )
    arguments = [str(manifest), "--credentials-block", block, "--batch-id", "nightly"]
    arguments += ["--max-concurrency", "3"]
    environment = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_LOCAL_STORAGE_PATH": str(prefect_server),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    said = tmp_path / "killed-stderr.txt"
    with said.open("w") as stderr:
        killed = subprocess.Popen(
            [sys.executable, "-m", "omniflash_prefect", "batch", "--json", *arguments],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:

        def all_slots_polling_and_one_downloading(state: EmulatorState) -> bool:
            tasks = state.snapshot()["tasks"].values()
            polled = len(tasks) == 3 and all(task["polls"] for task in tasks)
            return polled and any(task["downloads"] for task in tasks)

        assert emulator.state.wait_until(all_slots_polling_and_one_downloading, timeout=120)
    finally:
        killed.kill()
        killed.wait()
    before = emulator.state.snapshot()["tasks"]
    assert len(before) == 3
    assert not any(task["completed_downloads"] for task in before.values())
    # Before it was killed, the command had said (on stderr, one line each, though --json) which
    # run to look at and every task it paid for: what a user needs to resume or fetch.
    lines = said.read_text().splitlines()
    assert any(re.fullmatch(r"flow run [0-9a-f-]{36}: \S+", line) for line in lines), lines
    assert {f"paid: task {task_id}" for task_id in before} <= set(lines)

    emulator.config.download_stall_seconds = 0
    code, report = batch_json(*arguments)
    assert code == 0, report
    assert [item["id"] for item in report["items"]] == [f"n{i}" for i in range(6)]
    for item in report["items"]:
        assert_archived_exactly(item, emulator)
    # The killed run's three paid tasks (whichever rows got the first slots) are reused.
    assert set(before) <= {item["task_id"] for item in report["items"]}
    assert emulator.state.submission_count == 6
    assert not list(fast_settings.rglob("*.part"))


def test_archive_dir_puts_every_video_there(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """--archive-dir, as for generate: every row's video and sidecar land in that directory."""
    manifest = jsonl(
        tmp_path / "shelf.jsonl",
        [{"id": f"s{i}", "prompt": f"Shelf item {i}", "duration": 4} for i in range(2)],
    )
    archive = tmp_path / "elsewhere"
    code, report = batch_json(
        str(manifest), "--credentials-block", block, "--archive-dir", str(archive)
    )
    assert code == 0, report
    for item in report["items"]:
        assert_archived_exactly(item, emulator)
        assert Path(item["location"]).is_relative_to(archive)
        assert Path(item["location"]).with_suffix(".json").is_file()


def test_archive_dir_is_refused_where_it_cannot_apply(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """--archive-dir names a directory of this machine: with --fan-out deployments (the workers
    archive) or with --storage-block it is a usage error, exit 2, nothing sent."""
    manifest = jsonl(tmp_path / "one.jsonl", [{"prompt": "A calm lake", "duration": 4}])
    for extra in (["--fan-out", "deployments"], ["--storage-block", "s3-bucket/videos"]):
        code, report = batch_json(
            str(manifest), "--credentials-block", block, "--archive-dir", str(tmp_path), *extra
        )
        assert code == 2, report
        assert "--archive-dir" in report["error"]
    assert emulator.state.submission_attempts == 0


def test_a_missing_credentials_block_exits_2_before_any_run(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """A block name with no block is refused before the batch run is created, with the error
    Python code gets, listing the credentials blocks there are."""
    manifest = jsonl(tmp_path / "rows.jsonl", [{"id": "a", "prompt": "A calm lake"}])
    code, report = batch_json(str(manifest), "--credentials-block", "no-such-block")
    assert code == 2
    assert report["error_type"] == "CredentialsBlockNotFoundError"
    # Names saved blocks (the first few of the session server's, ``block`` among them or not).
    assert re.search(r"'emulator-[0-9a-f]{12}'", report["error"]), report["error"]
    assert report["flow_run_id"] is None
    assert emulator.state.submission_attempts == 0
