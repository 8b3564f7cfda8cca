"""Never paying twice, never losing a paid video: retries, re-runs and interrupted submissions."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from prefect import flow
from prefect.settings import PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW, temporary_settings

from omniflash_prefect import ArchivedVideo, VideoRequest, generate_video, submit_video
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import (
    GenerationFailedError,
    InvalidVideoRequestError,
    PaymentRequiredError,
    SubmissionOutcomeUnknownError,
)
from omniflash_prefect.video.submissions import submission_key
from tests.support.server_reads import omniflash_events

PROMPT = "A lighthouse at dusk, waves below, slow dolly in"


async def test_flow_retry_after_archive_failure_submits_nothing_new(
    emulator: EmulatorServer, credentials_block: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first archive attempt fails; the flow's retry reuses the persisted task id."""
    monkeypatch.setenv("OMNIFLASH_DOWNLOAD_ATTEMPTS", "2")
    emulator.config.drop_first_downloads = 2
    retrying = generate_video.with_options(retries=1, retry_delay_seconds=0)
    state = await retrying(prompt=PROMPT, credentials_block=credentials_block, return_state=True)
    archived = await state.aresult()
    assert isinstance(archived, ArchivedVideo)
    assert emulator.state.submission_count == 1
    assert emulator.state.downloads(archived.task_id) == 3
    assert hashlib.sha256(Path(archived.location).read_bytes()).hexdigest() == archived.sha256


async def test_same_idempotency_key_reuses_the_video_across_runs(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A second run with the same key neither submits nor downloads again."""
    key = f"catalogue-item-{uuid.uuid4()}"
    first = await generate_video(
        prompt=PROMPT, credentials_block=credentials_block, idempotency_key=key
    )
    downloads = emulator.state.downloads(first.task_id)
    second = await generate_video(
        prompt=PROMPT, credentials_block=credentials_block, idempotency_key=key
    )
    assert second.task_id == first.task_id
    assert second.location == first.location
    assert emulator.state.submission_count == 1
    assert emulator.state.downloads(first.task_id) == downloads


async def test_without_a_key_each_run_is_a_new_video(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """Idempotency is scoped to the flow run by default: two runs, two videos."""
    first = await generate_video(prompt=PROMPT, credentials_block=credentials_block)
    second = await generate_video(prompt=PROMPT, credentials_block=credentials_block)
    assert first.task_id != second.task_id
    assert emulator.state.submission_count == 2


async def test_ambiguous_submission_is_never_resent_by_a_later_run(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A submit whose outcome is unknown (502) blocks its idempotency key: a re-run with the
    provider healthy again still refuses instead of possibly paying twice."""
    key = f"nightly-{uuid.uuid4()}"
    emulator.config.server_error_rate = 1.0
    with pytest.raises(SubmissionOutcomeUnknownError):
        await generate_video(
            prompt=PROMPT, credentials_block=credentials_block, idempotency_key=key
        )
    emulator.config.server_error_rate = 0.0
    with pytest.raises(SubmissionOutcomeUnknownError, match="new idempotency key"):
        await generate_video(
            prompt=PROMPT, credentials_block=credentials_block, idempotency_key=key
        )
    assert emulator.state.submission_attempts == 1
    fresh = await generate_video(
        prompt=PROMPT, credentials_block=credentials_block, idempotency_key=key + "-checked"
    )
    assert emulator.state.submission_count == 1
    assert fresh.sha256 == emulator.state.video_sha256(fresh.task_id)


async def test_task_id_survives_a_crash_before_the_result_is_saved(
    emulator: EmulatorServer, credentials_block: str, prefect_server: Path
) -> None:
    """A run killed after the provider accepted the submit but before Prefect saved the
    ``submit_video`` task's result (simulated by deleting that result) still leaves the task id,
    recorded under its key the moment it was accepted: the re-run reuses it, and
    ``generate_video`` with the same key polls it."""
    key = f"crash-{uuid.uuid4()}"

    @flow
    async def submit() -> str:
        task_id: str = await submit_video(
            VideoRequest(prompt=PROMPT), credentials_block, idempotency_key=key
        )
        return task_id

    first = await submit()
    saved = prefect_server / submission_key(VideoRequest(prompt=PROMPT), key)
    saved.unlink()
    assert await submit() == first
    second = await generate_video(
        prompt=PROMPT, credentials_block=credentials_block, idempotency_key=key
    )
    assert second.task_id == first
    assert emulator.state.submission_attempts == 1


async def test_a_certain_refusal_does_not_block_the_key(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A 402 is a clear no: after topping up, the same key submits normally."""
    key = f"topup-{uuid.uuid4()}"
    emulator.config.balance = 0.0
    with pytest.raises(PaymentRequiredError):
        await generate_video(
            prompt=PROMPT, credentials_block=credentials_block, idempotency_key=key
        )
    emulator.config.balance = 10.0
    archived = await generate_video(
        prompt=PROMPT, credentials_block=credentials_block, idempotency_key=key
    )
    assert emulator.state.submission_count == 1
    assert archived.task_id


async def test_invalid_request_sends_nothing(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A bad duration fails the flow with the typed error before any call to the provider."""
    with pytest.raises(InvalidVideoRequestError) as info:
        await generate_video(prompt=PROMPT, duration=7, credentials_block=credentials_block)
    assert info.value.code == "invalid_duration"
    assert emulator.state.submission_attempts == 0


async def test_failed_generation_fails_the_run_and_emits_an_event(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A failed task ends the run with its reason and emits omniflash.video.failed."""
    emulator.config.task_failure_rate = 1.0
    with pytest.raises(GenerationFailedError) as info:
        await generate_video(prompt=PROMPT, credentials_block=credentials_block)
    events = await omniflash_events(info.value.task_id, {"submitted", "failed"})
    failed = [e for e in events if e.event == "omniflash.video.failed"]
    assert failed
    assert failed[0].payload["error_code"] == "task_failed"


async def test_submit_task_alone_in_a_user_flow(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """submit_video composes into any flow; called twice with one key it submits once."""

    @flow
    async def my_pipeline() -> tuple[str, str]:
        request = VideoRequest(prompt=PROMPT, duration=4)
        first = await submit_video(request, credentials_block, idempotency_key="same")
        second = await submit_video(request, credentials_block, idempotency_key="same")
        return first, second

    first, second = await my_pipeline()
    assert first == second
    assert emulator.state.submission_count == 1


async def test_submit_task_outside_a_flow_is_scoped_to_its_task_run(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """Without a flow run or a key, two calls are two deliberate submissions, not one cached."""
    request = VideoRequest(prompt=PROMPT, duration=4)
    with temporary_settings({PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore"}):
        first = await submit_video(request, credentials_block)
        second = await submit_video(request, credentials_block)
    assert first != second
    assert emulator.state.submission_count == 2
