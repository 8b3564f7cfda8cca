"""Poll and retry bounds that keep a real client fast against a local server."""

from __future__ import annotations

from omniflash_prefect.core.polling import PollSchedule
from omniflash_prefect.core.retry import RetryPolicy

FAST_SCHEDULE = PollSchedule(
    first_delay_seconds=0.05,
    min_interval_seconds=0.02,
    max_interval_seconds=0.05,
    timeout_seconds=30,
)
FAST_RETRIES = RetryPolicy(max_attempts=5, backoff_base_seconds=0.01, backoff_max_seconds=0.05)
