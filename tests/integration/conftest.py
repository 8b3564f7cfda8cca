"""A live emulator on a loopback port and a client wired to it, both fast."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from omniflash_prefect import OmniFlashClient
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from tests.support.fast_client import FAST_RETRIES, FAST_SCHEDULE


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
