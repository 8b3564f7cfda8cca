"""When a poll writes its progress artifact: rarely enough for a batch of hundreds of videos,
often enough to follow a job of minutes."""

from __future__ import annotations

import logging

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from omniflash_prefect.core.models import VideoTask
from omniflash_prefect.video.observability import (
    PROGRESS_MIN_SECONDS,
    PROGRESS_STEP,
    PROGRESS_WRITES_IN_FLIGHT,
    TaskProgress,
    progress_write_due,
)
from tests.support.children import free_port


def due(shown: float | None, progress: float, seconds: float, minimum: float) -> bool:
    return progress_write_due(
        shown=shown, progress=progress, seconds_since_shown=seconds, min_seconds=minimum
    )


def test_the_first_reading_is_always_shown() -> None:
    for progress in (0.0, 35.0, 100.0):
        assert due(None, progress, 0.0, PROGRESS_MIN_SECONDS)


def test_a_rise_is_shown_only_when_big_enough_and_late_enough() -> None:
    late, early = PROGRESS_MIN_SECONDS, PROGRESS_MIN_SECONDS - 0.1
    assert due(20.0, 20.0 + PROGRESS_STEP, late, PROGRESS_MIN_SECONDS)
    assert not due(20.0, 20.0 + PROGRESS_STEP, early, PROGRESS_MIN_SECONDS)
    assert not due(20.0, 20.0 + PROGRESS_STEP - 1, 10 * late, PROGRESS_MIN_SECONDS)


def test_a_video_of_its_own_moves_with_every_step() -> None:
    """No minimum time: ``omniflash generate`` follows a single video's bar live."""
    assert due(20.0, 20.0 + PROGRESS_STEP, 0.0, 0.0)
    assert not due(20.0, 20.0 + PROGRESS_STEP - 1, 0.0, 0.0)


def test_completion_is_left_to_the_end_of_the_poll() -> None:
    """100 is written once, by ``finish`` (with the summary, for a batch's video)."""
    assert not due(40.0, 100.0, 1000.0, 0.0)


async def test_a_prefect_api_out_of_reach_costs_the_progress_not_the_video(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens where the API should be: ``finish`` warns and returns, so the paid,
    archived video's run goes on (as with a pool timeout when hundreds of videos share one
    process' client)."""
    unreachable = f"http://127.0.0.1:{free_port()}/api"
    progress = TaskProgress("task_unshown", logging.getLogger("omniflash-test"))
    with temporary_settings({PREFECT_API_URL: unreachable, PREFECT_CLIENT_MAX_RETRIES: 0}):
        await progress.finish("## Video generated")
    assert progress.artifact_id is None
    assert "Progress of task task_unshown not shown" in caplog.text


async def test_a_reading_is_not_shown_while_the_process_has_its_fill_of_progress_writes(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With as many progress writes waiting on the API as allowed, a due reading sends nothing
    (the unreachable API would have logged a warning for a try); with one free, it tries."""
    unreachable = f"http://127.0.0.1:{free_port()}/api"
    reading = VideoTask(id="task_busy", status="processing", progress=40)
    progress = TaskProgress("task_busy", logging.getLogger("omniflash-test"))
    with temporary_settings({PREFECT_API_URL: unreachable, PREFECT_CLIENT_MAX_RETRIES: 0}):
        monkeypatch.setattr(TaskProgress, "writing", PROGRESS_WRITES_IN_FLIGHT)
        await progress.report(reading)
        assert "not shown" not in caplog.text
        monkeypatch.setattr(TaskProgress, "writing", PROGRESS_WRITES_IN_FLIGHT - 1)
        await progress.report(reading)
    assert "Progress of task task_busy not shown" in caplog.text
    assert TaskProgress.writing == PROGRESS_WRITES_IN_FLIGHT - 1  # given back after the try
