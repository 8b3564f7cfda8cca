"""``poll_video``: a completed task is cached by its id; Prefect retries only what is transient
and share one deadline."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.states import Failed

from omniflash_prefect import (
    OmniFlashClient,
    VideoRequest,
    VideoTask,
    apoll_video,
    asubmit_video,
    poll_video,
)
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import (
    GenerationFailedError,
    InvalidTaskIdError,
    NotFoundError,
    PollTimeoutError,
)
from omniflash_prefect.video import observability, tasks
from tests.support.api_calls import prefect_503


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (prefect_503(), True),
        (httpx.ConnectError("refused"), True),
        (GenerationFailedError("task_1", error_code="task_failed", error_message="no"), False),
        (InvalidTaskIdError("../etc"), False),
        (NotFoundError("no such task", status_code=404), False),
        (PollTimeoutError("task_1", waited_seconds=10, last_status="processing"), False),
        (RuntimeError("a bug"), False),
    ],
)
def test_retry_condition_accepts_only_an_unavailable_prefect_api(
    error: BaseException, retried: bool
) -> None:
    """A busy or unreachable Prefect API is retried; the provider's verdicts are final."""
    state: State[Any] = Failed(data=error)
    assert tasks.poll_failure_is_transient(apoll_video, None, state) is retried  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("run_count", "started_seconds_ago", "spent"),
    [(1, 40.0, 0.0), (2, 40.0, 40.0), (3, 5.0, 5.0), (2, None, 0.0)],
)
def test_a_retry_waits_out_what_is_left_of_the_deadline(
    run_count: int, started_seconds_ago: float | None, spent: float
) -> None:
    """The first attempt spent nothing; a retry has spent the time since the run started."""
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    started = (
        None if started_seconds_ago is None else now - dt.timedelta(seconds=started_seconds_ago)
    )
    assert tasks.seconds_spent_before(run_count, started, now) == spent


async def test_a_completed_task_is_polled_once_across_runs(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """The second run polling a task that completed makes no status call and gets the same
    task (Prefect reports it Cached)."""

    @flow
    async def submit() -> str:
        return await asubmit_video(
            VideoRequest(prompt="Dew on a leaf", duration=4), credentials_block
        )

    @flow
    async def wait(task_id: str) -> State[VideoTask]:
        state: State[VideoTask] = await poll_video(task_id, credentials_block, return_state=True)
        return state

    task_id = await submit()
    first = await wait(task_id)
    polls = emulator.state.polls(task_id)
    second = await wait(task_id)
    assert emulator.state.polls(task_id) == polls
    assert second.is_completed()
    assert second.name == "Cached"
    assert (await second.aresult()) == (await first.aresult())


async def test_failures_and_timeouts_are_never_cached(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A poll that timed out, and a task that failed, are read again by the next poll."""
    emulator.config.job_seconds = 3.0

    @flow
    async def wait(task_id: str, seconds: float) -> VideoTask:
        return await apoll_video(task_id, credentials_block, max_wait_seconds=seconds)

    async with OmniFlashClient(emulator.api_key, base_url=emulator.base_url) as client:
        slow = await client.submit(VideoRequest(prompt="Tide coming in", duration=4))
        emulator.config.task_failure_rate = 1.0
        doomed = await client.submit(VideoRequest(prompt="Tide going out", duration=4))
    with pytest.raises(PollTimeoutError):
        await wait(slow, 0.01)
    assert (await wait(slow, 30)).status == "completed"
    for _ in range(2):
        polls = emulator.state.polls(doomed)
        with pytest.raises(GenerationFailedError):
            await wait(doomed, 30)
        assert emulator.state.polls(doomed) > polls


async def test_a_busy_prefect_api_costs_a_progress_write_and_a_failed_generation_fails_at_once(
    emulator: EmulatorServer,
    credentials_block: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The progress artifact's first write gets a 503 from the Prefect API: the poll goes on and
    completes in its first run, the write lost with a warning (what the UI shows never fails a
    video). A failed generation fails at once (run count 1), not retried."""
    refused: list[str] = []
    create = observability.acreate_task_progress_artifact

    async def busy_once(task_id: str, progress: float, description: str | None = None) -> Any:
        if not refused:
            refused.append(task_id)
            raise prefect_503()
        return await create(task_id, progress, description)

    monkeypatch.setattr(observability, "acreate_task_progress_artifact", busy_once)
    quick = poll_video.with_options(retry_delay_seconds=0)

    @flow
    async def wait(prompt: str) -> tuple[bool, UUID | None]:
        task_id = await asubmit_video(VideoRequest(prompt=prompt, duration=4), credentials_block)
        state: State[VideoTask] = await quick(task_id, credentials_block, return_state=True)
        return state.is_completed(), state.state_details.task_run_id

    async def run_count(task_run_id: UUID | None) -> int:
        assert task_run_id is not None
        async with get_client() as client:
            return (await client.read_task_run(task_run_id)).run_count

    completed, polled = await wait("Sparks from a grinder")
    assert completed
    assert refused
    assert await run_count(polled) == 1
    assert f"Progress of task {refused[0]} not shown" in caplog.text

    emulator.config.task_failure_rate = 1.0
    completed, polled = await wait("A kettle boiling over")
    assert not completed
    assert await run_count(polled) == 1
