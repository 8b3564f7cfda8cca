"""The poll schedule: within the provider's 5-10 s band, faster when a video should be done."""

from __future__ import annotations

import pytest

from omniflash_prefect import VideoTask
from omniflash_prefect.core.polling import PollSchedule, estimate_remaining_seconds

SCHEDULE = PollSchedule(first_delay_seconds=5, min_interval_seconds=5, max_interval_seconds=10)


def task(**fields: object) -> VideoTask:
    return VideoTask.model_validate({"id": "task_1", "status": "processing", **fields})


def test_no_information_polls_at_the_slow_end() -> None:
    """Without progress or estimate, wait the maximum interval."""
    assert SCHEDULE.interval_after(task(), elapsed_seconds=30) == 10


def test_far_from_done_polls_slowly() -> None:
    """10% after 30 s means ~270 s to go: the slow end."""
    assert SCHEDULE.interval_after(task(progress=10), elapsed_seconds=30) == 10


def test_nearly_done_polls_quickly() -> None:
    """95% after 190 s means ~10 s to go... at 98% the fast end."""
    assert SCHEDULE.interval_after(task(progress=98), elapsed_seconds=200) == 5


def test_remaining_between_bounds_is_used_as_is() -> None:
    """80% after 28 s means 7 s to go: poll in 7 s."""
    assert SCHEDULE.interval_after(task(progress=80), elapsed_seconds=28) == pytest.approx(7)


def test_estimated_time_is_used_when_progress_is_missing() -> None:
    """estimated_time minus elapsed, clamped to the band."""
    assert SCHEDULE.interval_after(task(estimated_time=600), elapsed_seconds=30) == 10
    assert SCHEDULE.interval_after(task(estimated_time=600), elapsed_seconds=594) == 6
    assert SCHEDULE.interval_after(task(estimated_time=600), elapsed_seconds=900) == 5


def test_estimate_prefers_progress_rate() -> None:
    """Progress is measured, estimated_time is pessimistic: progress wins."""
    assert estimate_remaining_seconds(task(progress=50, estimated_time=600), 100) == 100
    assert estimate_remaining_seconds(task(progress=0, estimated_time=600), 100) == 500
    assert estimate_remaining_seconds(task(), 100) is None


def test_never_more_calls_than_a_fixed_minimum_interval() -> None:
    """A simulated 240 s job polls no more often than every 5 s (the provider's floor)."""
    elapsed, calls = SCHEDULE.first_delay_seconds, 0
    while elapsed < 240:
        calls += 1
        progress = int(100 * elapsed / 240)
        elapsed += SCHEDULE.interval_after(task(progress=progress, estimated_time=600), elapsed)
    assert calls <= 240 / 5
    assert calls < 240 / 5 * 0.75, "a long job should mostly poll at the slow end"


def test_schedule_bounds_are_checked() -> None:
    """Inconsistent bounds are refused."""
    with pytest.raises(ValueError, match="max_interval"):
        PollSchedule(min_interval_seconds=10, max_interval_seconds=5)
    with pytest.raises(ValueError, match="negative"):
        PollSchedule(first_delay_seconds=-1)
    with pytest.raises(ValueError, match="timeout"):
        PollSchedule(timeout_seconds=0)
