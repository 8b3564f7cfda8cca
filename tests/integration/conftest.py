"""A live emulator on a loopback port and a client wired to it, both fast."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from omniflash_prefect import OmniFlashClient, PollSchedule, RetryPolicy
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer

FAST_SCHEDULE = PollSchedule(
    first_delay_seconds=0.05,
    min_interval_seconds=0.02,
    max_interval_seconds=0.05,
    timeout_seconds=30,
)
FAST_RETRIES = RetryPolicy(max_attempts=5, backoff_base_seconds=0.01, backoff_max_seconds=0.05)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(job_seconds=0.3)) as server:
        yield server


@pytest.fixture
async def client(emulator: EmulatorServer) -> AsyncIterator[OmniFlashClient]:
    async with OmniFlashClient(
        emulator.api_key,
        base_url=emulator.base_url,
        poll_schedule=FAST_SCHEDULE,
        retry_policy=FAST_RETRIES,
        timeout=5.0,
    ) as client:
        yield client
