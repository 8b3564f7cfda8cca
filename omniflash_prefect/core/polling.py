"""When to read a task's status next: a pure schedule, so it is tested with no clock and no network.

The provider asks for a first read 5-10 s after submitting and then one every 5-10 s. Within that
band the schedule polls slowly while the video is far from done and quickly when it should be
about to finish, so a finished video is noticed soon without spending calls: never more calls than
a fixed poll at the minimum interval. The remaining time is estimated from the rate of progress
when the API reports progress, else from its (pessimistic) ``estimated_time``.
"""

from __future__ import annotations

from dataclasses import dataclass

from omniflash_prefect.core.models import VideoTask
from omniflash_prefect.errors import UsageError


def estimate_remaining_seconds(task: VideoTask, elapsed_seconds: float) -> float | None:
    """Seconds until ``task`` should finish, or None when nothing in the answer tells.

    ``elapsed_seconds`` is how long the task has been running as seen by the caller.
    """
    progress = task.progress
    if progress is not None and 0 < progress < 100 and elapsed_seconds > 0:
        rate = progress / elapsed_seconds
        return (100 - progress) / rate
    if task.estimated_time is not None:
        return max(task.estimated_time - elapsed_seconds, 0.0)
    return None


@dataclass(frozen=True)
class PollSchedule:
    """The bounds of a poll loop; all of them come from settings so tests can run them fast."""

    first_delay_seconds: float = 5.0
    min_interval_seconds: float = 5.0
    max_interval_seconds: float = 10.0
    timeout_seconds: float = 1800.0

    def __post_init__(self) -> None:
        if self.first_delay_seconds < 0 or self.min_interval_seconds < 0:
            raise UsageError("poll delays must not be negative")
        if self.max_interval_seconds < self.min_interval_seconds:
            raise UsageError("max_interval_seconds must be >= min_interval_seconds")
        if self.timeout_seconds <= 0:
            raise UsageError("timeout_seconds must be positive")

    def interval_after(self, task: VideoTask, elapsed_seconds: float) -> float:
        """Seconds to wait after reading ``task``, within [min, max] interval."""
        remaining = estimate_remaining_seconds(task, elapsed_seconds)
        if remaining is None:
            return self.max_interval_seconds
        return min(max(remaining, self.min_interval_seconds), self.max_interval_seconds)
