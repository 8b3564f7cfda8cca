"""Fixtures: a fake clock, a live emulator on loopback driven by it, and an authorised client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer

from .helpers import FakeClock, http_client


@pytest.fixture
def clock() -> FakeClock:
    """Time as the emulator sees it; tests advance it instead of sleeping."""
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[EmulatorServer]:
    """A running emulator (10 s jobs in fake time); tests change ``emulator.config`` live."""
    with EmulatorServer(EmulatorConfig(job_seconds=10.0), clock=clock) as emu:
        yield emu


@pytest.fixture
async def client(emulator: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for ``emulator`` that sends the right bearer token."""
    async with http_client(emulator.base_url, emulator.api_key) as http:
        yield http


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[EmulatorServer]:
    """One emulator for a module's read-only tests (starting one per case costs ~0.2 s).

    Tests using it must not change its config and must not count on an empty state.
    """
    config = EmulatorConfig(job_seconds=10.0, unlimited_balance=True)
    with EmulatorServer(config, clock=FakeClock()) as emu:
        yield emu


@pytest.fixture
async def shared_client(shared_emulator: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """An authorised HTTP client for ``shared_emulator``."""
    async with http_client(shared_emulator.base_url, shared_emulator.api_key) as http:
        yield http
