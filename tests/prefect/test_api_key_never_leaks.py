"""The API key never appears in anything a run leaves behind, whether it succeeds or fails."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.events.filters import EventFilter, EventOccurredFilter
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH
from typer.testing import CliRunner

from omniflash_prefect import OmniFlashCredentials, OmniFlashError, generate_video
from omniflash_prefect.cli import app
from omniflash_prefect.emulator import EmulatorServer
from tests.support.server_reads import omniflash_events, run_artifacts

SECRET = "sk-omniflash-" + uuid.uuid4().hex
WRONG = "sk-wrong-" + uuid.uuid4().hex


async def test_no_stage_leaks_the_key(
    emulator: EmulatorServer, fast_settings: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Runs that succeed, fail at submit (401, 402), fail in generation and fail in archive
    leave no trace of either key in parameters, logs, artifacts, events, results, sidecars or
    exception text, with httpx debug logging on."""
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    emulator.config.api_key = SECRET
    good, bad = f"good-{uuid.uuid4().hex[:8]}", f"bad-{uuid.uuid4().hex[:8]}"
    await OmniFlashCredentials(api_key=SECRET, base_url=emulator.base_url).asave(good)
    await OmniFlashCredentials(api_key=WRONG, base_url=emulator.base_url).asave(bad)

    states = []
    errors: list[BaseException] = []

    async def run(block: str) -> None:
        state = await generate_video(
            prompt="a quiet harbour", credentials_block=block, return_state=True
        )
        states.append(state)
        outcome = await state.aresult(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            errors.append(outcome)

    await run(good)  # success
    await run(bad)  # 401 at submit
    emulator.config.balance = 0.0
    await run(good)  # 402 at submit
    emulator.config.balance = 100.0
    emulator.config.task_failure_rate = 1.0
    await run(good)  # failed generation
    emulator.config.task_failure_rate = 0.0
    emulator.config.url_ttl_seconds = 0
    await run(good)  # expired URL in archive
    assert [s.is_completed() for s in states] == [True, False, False, False, False]
    assert all(isinstance(e, OmniFlashError) for e in errors)

    texts: list[str] = [caplog.text]
    texts += [f"{e!s} {e!r} {e.__dict__!r}" for e in errors]
    async with get_client() as client:
        for state in states:
            run_id = state.state_details.flow_run_id
            assert run_id is not None
            flow_run = await client.read_flow_run(run_id)
            texts.append(flow_run.model_dump_json())
            logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            texts += [log.message for log in logs]
            texts += [artifact.model_dump_json() for artifact in await run_artifacts(run_id)]
        await omniflash_events("none", set())  # drains pending events to the server
        page = await client.read_events(EventFilter(occurred=EventOccurredFilter()), limit=50)
        texts += [event.model_dump_json() for event in page.events]
    storage = Path(PREFECT_LOCAL_STORAGE_PATH.value())
    texts += [p.read_text(errors="replace") for p in storage.rglob("*") if p.is_file()]
    texts += [p.read_text() for p in fast_settings.rglob("*.json")]
    assert len(texts) > 20
    leaks = [text for text in texts if SECRET in text or WRONG in text]
    assert leaks == []


def test_command_output_never_shows_the_key(
    emulator: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``omniflash generate`` and ``omniflash batch``, with ``--json`` and without, print no key
    whether they succeed, are refused (401, 402) or fail in generation, with httpx debug logging
    on; the batch's report and the manifest problems neither."""
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    emulator.config.api_key = SECRET
    good, bad = f"good-{uuid.uuid4().hex[:8]}", f"bad-{uuid.uuid4().hex[:8]}"
    OmniFlashCredentials(api_key=SECRET, base_url=emulator.base_url).save(good)
    OmniFlashCredentials(api_key=WRONG, base_url=emulator.base_url).save(bad)
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(
        '{"id": "a", "prompt": "a quiet harbour", "duration": 4}\n'
        '{"id": "b", "prompt": "a quiet harbour at night", "duration": 4}\n'
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "c", "prompt": "x", "duration": 12}\n')
    runner = CliRunner()
    outputs: list[str] = []
    codes: list[int] = []

    def every_command(block: str) -> None:
        for json_flag in ([], ["--json"]):
            for args in (
                ["generate", "a quiet harbour", "--duration", "4"],
                ["batch", str(manifest)],
            ):
                result = runner.invoke(app, [*args, *json_flag, "--credentials-block", block])
                codes.append(result.exit_code)
                outputs.append(result.stdout + result.stderr)

    every_command(good)  # success
    every_command(bad)  # 401
    emulator.config.balance = 0.0
    every_command(good)  # 402
    emulator.config.balance = 100.0
    emulator.config.task_failure_rate = 1.0
    every_command(good)  # failed generation
    result = runner.invoke(app, ["batch", str(broken), "--json", "--credentials-block", good])
    outputs.append(result.stdout + result.stderr)
    assert codes == [0, 0, 0, 0] + [3, 4, 3, 4] * 2 + [4, 4, 4, 4]
    assert result.exit_code == 2
    texts = [*outputs, caplog.text]
    assert sum(len(text) for text in texts) > 2000
    leaks = [text for text in texts if SECRET in text or WRONG in text]
    assert leaks == []
