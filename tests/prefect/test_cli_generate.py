"""``omniflash generate``: the generate_video flow from the command line, on a real Prefect server
against the emulator, with its JSON report, exit codes, image uploads and live progress.

These are plain (sync) tests: the command calls ``asyncio.run`` itself, which cannot run inside
the session event loop the async tests of this folder share.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import io
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState
from prefect.client.schemas.objects import Artifact
from prefect.states import Cancelling
from rich.console import Console
from typer.testing import CliRunner, Result

from omniflash_prefect import OmniFlashClient, OmniFlashCredentials
from omniflash_prefect.cli import app, rendering
from omniflash_prefect.cli.progress import RunProgress, progress_from_artifacts
from omniflash_prefect.cli.video_runs import run_generation
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.video.observability import TASK_ID_METADATA, artifact_key

PROMPT = "A paper lantern rising over a night market, slow upward tilt"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def save_block(emulator: EmulatorServer, api_key: str | None = None) -> str:
    """Save an OmniFlashCredentials block for the emulator (optionally with another key)."""
    name = f"cli-{uuid.uuid4().hex[:12]}"
    OmniFlashCredentials(api_key=api_key or emulator.api_key, base_url=emulator.base_url).save(name)
    return name


def invoke(*args: str) -> Result:
    """Run ``omniflash <args>`` in-process, stdout and stderr captured apart."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    """``omniflash generate --json <args>``: its exit code and the one JSON object it printed."""
    result = invoke("generate", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def only_task_of(emulator: EmulatorServer) -> str:
    (task_id,) = emulator.state.snapshot()["tasks"]
    return str(task_id)


async def completed(emulator: EmulatorServer, task_id: str) -> None:
    """Until the emulator's task is done, read as a client would."""
    async with OmniFlashClient(emulator.api_key, base_url=emulator.base_url) as client:
        await client.wait(task_id, first_poll_delay=0.0)


def read_flow_run_state(flow_run_id: str) -> tuple[str, str]:
    """The flow name and final state type of a flow run, read back from the Prefect API."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        assert run.state is not None
        return client.read_flow(run.flow_id).name, run.state.type.value


def test_json_reports_the_archived_video(
    emulator: EmulatorServer, block: str, fast_settings: Path
) -> None:
    """Success prints one JSON object with every field; the file is there, byte-exact, paid once."""
    code, report = run_json(PROMPT, "--duration", "4", "--credentials-block", block)
    assert code == 0, report
    assert set(report) >= {
        "task_id",
        "status",
        "prompt",
        "cost",
        "location",
        "sha256",
        "size_bytes",
        "flow_run_id",
    }
    assert report["status"] == "archived"
    assert report["prompt"] == PROMPT
    assert report["cost"] == pytest.approx(0.16)
    video = Path(report["location"])
    assert video.is_relative_to(fast_settings)
    content = video.read_bytes()
    assert hashlib.sha256(content).hexdigest() == report["sha256"]
    assert report["sha256"] == emulator.state.video_sha256(report["task_id"])
    assert report["size_bytes"] == len(content)
    assert emulator.state.submission_count == 1
    assert read_flow_run_state(report["flow_run_id"]) == ("generate-video", "COMPLETED")


def test_bad_duration_exits_2_and_sends_nothing(emulator: EmulatorServer, block: str) -> None:
    """A duration the API refuses exits 2 with the typed error; no run, nothing sent."""
    code, report = run_json(PROMPT, "--duration", "7", "--credentials-block", block)
    assert code == 2
    assert report["status"] == "invalid"
    assert report["error_type"] == "InvalidVideoRequestError"
    assert "invalid_duration" in report["error"]
    assert report["flow_run_id"] is None
    assert emulator.state.submission_attempts == 0


def test_no_key_and_no_block_exits_2_saying_how_to_set_one(emulator: EmulatorServer) -> None:
    """Without OMNIFLASH_API_KEY or a block it fails fast, naming both and the demo."""
    result = invoke("generate", PROMPT)
    assert result.exit_code == 2
    assert "OMNIFLASH_API_KEY" in result.stderr
    assert "--credentials-block" in result.stderr
    assert "omniflash demo" in result.stderr
    assert emulator.state.submission_attempts == 0


def test_archive_dir_with_storage_block_exits_2(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """--archive-dir and --storage-block are mutually exclusive: exit 2, nothing sent."""
    code, report = run_json(
        PROMPT,
        "--credentials-block",
        block,
        "--archive-dir",
        str(tmp_path / "here"),
        "--storage-block",
        "local-file-system/there",
    )
    assert code == 2
    assert report["status"] == "invalid"
    assert "mutually exclusive" in report["error"]
    assert emulator.state.submission_attempts == 0


def test_unknown_credentials_block_exits_2(emulator: EmulatorServer) -> None:
    """A credentials block that does not exist is a usage error: exit 2, no run created, with
    the error Python code gets, naming the blocks there are."""
    existing = save_block(emulator)
    code, report = run_json(PROMPT, "--credentials-block", f"missing-{uuid.uuid4().hex[:8]}")
    assert code == 2
    assert report["error_type"] == "CredentialsBlockNotFoundError"
    assert repr(existing) in report["error"]
    assert report["flow_run_id"] is None
    assert emulator.state.submission_attempts == 0


def test_wrong_key_exits_3(emulator: EmulatorServer) -> None:
    """A key the API refuses (401) exits 3 with AuthenticationError, naming the failed run."""
    wrong = save_block(emulator, api_key="not-the-emulator-key")
    code, report = run_json(PROMPT, "--credentials-block", wrong)
    assert code == 3
    assert report["status"] == "refused"
    assert report["error_type"] == "AuthenticationError"
    assert read_flow_run_state(report["flow_run_id"]) == ("generate-video", "FAILED")
    assert emulator.state.submission_count == 0


def test_empty_balance_exits_3(emulator: EmulatorServer, block: str) -> None:
    """A 402 (balance spent) exits 3 with PaymentRequiredError."""
    emulator.config.balance = 0.0
    code, report = run_json(PROMPT, "--credentials-block", block)
    assert code == 3
    assert report["error_type"] == "PaymentRequiredError"
    assert emulator.state.submission_count == 0


def test_rate_limit_that_outlives_retries_exits_3(
    emulator: EmulatorServer, block: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """429 on every try is a refusal (nothing was accepted): exit 3 with RateLimitedError."""
    monkeypatch.setenv("OMNIFLASH_MAX_ATTEMPTS", "2")
    emulator.config.retry_after_seconds = 0.0
    emulator.config.rate_limit_rate = 1.0
    code, report = run_json(PROMPT, "--credentials-block", block)
    assert code == 3
    assert report["status"] == "refused"
    assert report["error_type"] == "RateLimitedError"
    assert emulator.state.submission_count == 0


def test_failed_generation_exits_4_with_its_task_id(emulator: EmulatorServer, block: str) -> None:
    """A task the provider fails exits 4 with GenerationFailedError and the task id."""
    emulator.config.task_failure_rate = 1.0
    code, report = run_json(PROMPT, "--credentials-block", block)
    assert code == 4
    assert report["status"] == "failed"
    assert report["error_type"] == "GenerationFailedError"
    assert report["task_id"] is not None
    assert emulator.state.task(report["task_id"]).will_fail
    assert report["flow_run_id"]


def test_unknown_submission_outcome_exits_1(emulator: EmulatorServer, block: str) -> None:
    """A submit answered 502 may have been accepted: exit 1 with SubmissionOutcomeUnknownError."""
    emulator.config.server_error_rate = 1.0
    code, report = run_json(PROMPT, "--credentials-block", block)
    assert code == 1
    assert report["status"] == "error"
    assert report["error_type"] == "SubmissionOutcomeUnknownError"
    assert report["task_id"] is None


def test_image_file_is_uploaded_and_submitted(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """--image-file uploads the image first; its URL (serving the same bytes) is submitted."""
    image = tmp_path / "lantern.png"
    image.write_bytes(PNG)
    code, report = run_json(PROMPT, "--credentials-block", block, "--image-file", str(image))
    assert code == 0, report
    [submitted] = emulator.state.submissions
    [url] = submitted["image_urls"]
    assert url.startswith(f"{emulator.base_url}/uploads/")
    assert httpx.get(url).content == PNG


def test_image_files_count_as_images_before_any_upload(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """One --image-url plus one --image-file is two images: refused (exit 2) before uploading."""
    image = tmp_path / "lantern.png"
    image.write_bytes(PNG)
    code, report = run_json(
        PROMPT,
        "--credentials-block",
        block,
        "--image-url",
        "https://example.com/a.png",
        "--image-file",
        str(image),
    )
    assert code == 2
    assert "unsupported_image_count" in report["error"]
    assert emulator.state.snapshot()["uploads"] == []
    assert emulator.state.submission_attempts == 0


def test_archive_dir_decides_where_the_video_goes(block: str, tmp_path: Path) -> None:
    """--archive-dir overrides OMNIFLASH_ARCHIVE_DIR for this command."""
    target = tmp_path / "chosen"
    code, report = run_json(PROMPT, "--credentials-block", block, "--archive-dir", str(target))
    assert code == 0, report
    assert Path(report["location"]).is_relative_to(target)
    assert Path(report["location"]).is_file()


def test_human_output_shows_the_location(block: str) -> None:
    """Without --json the archived file's location, SHA-256, flow run and its UI link are
    printed."""
    result = invoke("generate", PROMPT, "--credentials-block", block)
    assert result.exit_code == 0, result.stderr
    location = re.search(r"video:\s+(\S+\.mp4)", result.stdout)
    assert location, result.stdout
    sha = re.search(r"sha256:\s+([0-9a-f]{64})", result.stdout)
    assert sha, result.stdout
    assert hashlib.sha256(Path(location.group(1)).read_bytes()).hexdigest() == sha.group(1)
    run_id = re.search(r"flow run:\s+([0-9a-f-]{36})", result.stdout)
    assert run_id, result.stdout
    assert f"/runs/flow-run/{run_id.group(1)}" in result.stdout


def test_human_failure_goes_to_stderr_with_the_exit_code(
    emulator: EmulatorServer, block: str
) -> None:
    """A failure without --json is explained on stderr, stdout stays empty."""
    emulator.config.task_failure_rate = 1.0
    result = invoke("generate", PROMPT, "--credentials-block", block)
    assert result.exit_code == 4
    assert "failed" in result.stderr
    assert "task id:" in result.stderr
    assert result.stdout.strip() == ""


def test_progress_bar_follows_the_run(
    emulator: EmulatorServer, block: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal the bar shows the run's own progress as the API reports it, then the result."""
    terminal = io.StringIO()
    monkeypatch.setattr(
        rendering,
        "console",
        Console(file=terminal, force_terminal=True, width=120, color_system=None),
    )
    emulator.config.job_seconds = 2.0
    result = invoke("generate", PROMPT, "--credentials-block", block)
    assert result.exit_code == 0, result.stderr
    drawn = terminal.getvalue()
    shown = {int(p) for p in re.findall(r"generating\s+\S*\s+(\d+)%", drawn)}
    assert any(0 < p < 100 for p in shown), drawn[-2000:]
    assert "video:" in drawn


async def test_run_generation_reports_rising_progress_of_the_real_run(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """The watcher reads the run's progress artifact: it rises, ends at 100, names the task."""
    emulator.config.job_seconds = 1.0
    seen: list[RunProgress] = []
    outcome = await run_generation(
        {"prompt": PROMPT, "duration": 4, "credentials_block": credentials_block},
        on_progress=seen.append,
        watch_interval=0.05,
    )
    assert outcome.archived is not None
    percents = [update.percent for update in seen]
    assert percents == sorted(percents)
    assert any(0 < p < 100 for p in percents)
    task_id = outcome.archived.task_id
    assert seen[-1] == RunProgress("archived", 100.0, task_id, (task_id,))


def make_artifact(key: str, data: object, task_id: str | None = None) -> Artifact:
    """An artifact as read back from the API (a progress artifact names its task in its
    metadata)."""
    metadata = {TASK_ID_METADATA: task_id} if task_id else None
    return Artifact(key=key, type="progress", data=data, metadata_=metadata)


def test_stage_comes_from_the_artifacts_the_run_wrote() -> None:
    """No progress yet: submitting; progress: generating; 100: downloading; a link: archived."""
    key = artifact_key("progress", "task_AbC")
    assert progress_from_artifacts([]) == RunProgress("submitting", 0.0)
    assert progress_from_artifacts([make_artifact(key, 42.0, "task_AbC")]) == RunProgress(
        "generating", 42.0, "task_AbC", ("task_AbC",)
    )
    assert progress_from_artifacts([make_artifact(key, 100, "task_AbC")]).stage == "downloading"
    link = make_artifact(artifact_key("video", "task_AbC"), "file:///v.mp4")
    done = progress_from_artifacts([make_artifact(key, 100.0, "task_AbC"), link])
    assert done == RunProgress("archived", 100.0, "task_AbC", ("task_AbC",))


def test_the_task_id_is_read_from_metadata_never_from_the_description() -> None:
    """The artifact key is lower-cased and the description is prose: only the metadata keeps
    the task id exactly as the provider wrote it."""
    key = artifact_key("progress", "Task_MiXeD")
    prose = Artifact(
        key=key, type="progress", data=10.0, description="Generation progress of task other"
    )
    assert progress_from_artifacts([prose]) == RunProgress("generating", 10.0, None)
    named = make_artifact(key, 10.0, "Task_MiXeD")
    assert progress_from_artifacts([prose, named]).task_id == "Task_MiXeD"


def test_a_cancel_from_the_ui_ends_the_run_cancelled_and_hands_the_paid_task_over(
    emulator: EmulatorServer, block: str, fast_settings: Path
) -> None:
    """``prefect flow-run cancel`` (here: the Cancelling state it sets) while the video
    generates: the command stops within a watch tick, exits 130 naming the paid task, the run
    ends Cancelled (never stuck Cancelling) with a message that names the task and the sweep,
    and ``omniflash sweep`` for that run archives the video, paid once."""
    emulator.config.job_seconds = 4.0
    finished: list[Result] = []
    # In a thread of its own (as a command is a process of its own), with this test's settings.
    command = threading.Thread(
        target=contextvars.copy_context().run,
        args=(lambda: finished.append(invoke("generate", PROMPT, "--credentials-block", block)),),
    )
    command.start()
    assert emulator.state.wait_until(lambda state: state.submission_count == 1, 60)
    with get_client(sync_client=True) as client:
        (running,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type={"any_": ["RUNNING"]}))
        )
        asked = time.monotonic()
        client.set_flow_run_state(running.id, Cancelling(), force=True)
    command.join(timeout=60)
    stopped = time.monotonic() - asked
    (result,) = finished
    task_id = only_task_of(emulator)
    assert result.exit_code == 130, result.output
    assert task_id in result.stderr
    flow_name, state = read_flow_run_state(str(running.id))
    assert (flow_name, state) == ("generate-video", "CANCELLED")
    with get_client(sync_client=True) as client:
        message = client.read_flow_run(running.id).state.message  # type: ignore[union-attr]
    assert task_id in (message or "")
    print(f"\ncancel to Cancelled: {stopped:.1f} s")

    asyncio.run(completed(emulator, task_id))
    swept = invoke("sweep", "--flow-run-id", str(running.id), "--json")
    assert swept.exit_code == 0, swept.output
    report = json.loads(swept.stdout)
    (video,) = report["videos"]
    assert (video["outcome"], video["task_id"]) == ("archived", task_id)
    assert Path(video["location"]).is_relative_to(fast_settings)
    assert emulator.state.submission_count == 1
    assert emulator.state.downloads(task_id) == 1


def test_ids_are_said_on_stderr_as_soon_as_known_even_with_json(block: str) -> None:
    """With --json, stdout is the one JSON object; stderr says the run's id with its UI link, then
    the task paid for, one line each, in the order they became known."""
    result = invoke("generate", "--json", PROMPT, "--credentials-block", block)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    lines = result.stderr.splitlines()
    started = f"flow run {report['flow_run_id']}: "
    paid = f"paid: task {report['task_id']}"
    [run_line] = [line for line in lines if line.startswith(started)]
    assert run_line.endswith(f"/runs/flow-run/{report['flow_run_id']}")
    assert lines.count(paid) == 1
    assert lines.index(run_line) < lines.index(paid)
