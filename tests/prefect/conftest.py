"""A real Prefect server (the test harness, SQLite in a temp dir) and a live emulator.

The server lives for the whole session (it takes seconds to start); results are persisted to a
session temp dir so nothing touches ``~/.prefect``. Each test gets fast ``OMNIFLASH_*`` poll
settings, its own archive directory and a fresh emulator with a credentials block pointing at it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from prefect.settings import (
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from tests.support.s3 import Bucket, moto_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this folder's async tests on one session-wide event loop.

    Prefect caches its API clients per event loop; a loop per test would orphan them.
    """
    here = Path(__file__).parent
    for item in items:
        if not item.path.is_relative_to(here):
            continue
        if pytest_asyncio.is_async_test(item):
            item.add_marker(pytest.mark.asyncio(loop_scope="session"), append=False)


@pytest.fixture(scope="session", autouse=True)
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Prefect test server for every test in this folder; yields the result storage dir."""
    results = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings(
            {PREFECT_LOCAL_STORAGE_PATH: results, PREFECT_SERVER_ANALYTICS_ENABLED: False}
        ),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield results


@pytest.fixture(autouse=True)
def fast_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fast poll bounds, no API key in the environment, and a per-test archive dir."""
    for name in ("API_KEY", "BASE_URL"):
        monkeypatch.delenv(f"OMNIFLASH_{name}", raising=False)
    monkeypatch.setenv("OMNIFLASH_FIRST_POLL_DELAY_SECONDS", "0.05")
    monkeypatch.setenv("OMNIFLASH_POLL_MIN_SECONDS", "0.02")
    monkeypatch.setenv("OMNIFLASH_POLL_MAX_SECONDS", "0.05")
    monkeypatch.setenv("OMNIFLASH_POLL_TIMEOUT_SECONDS", "60")
    archive = tmp_path / "videos"
    monkeypatch.setenv("OMNIFLASH_ARCHIVE_DIR", str(archive))
    return archive


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """A fresh emulator whose jobs take 0.3 s."""
    with EmulatorServer(EmulatorConfig(job_seconds=0.3)) as server:
        yield server


@pytest.fixture
def block(emulator: EmulatorServer) -> str:
    """The same as ``credentials_block``, saved without the session's event loop: for the sync
    tests that run a command, which runs its own."""
    name = f"emulator-{uuid.uuid4().hex[:12]}"
    OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).save(name)
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def credentials_block(emulator: EmulatorServer) -> str:
    """The name of a saved OmniFlashCredentials block pointing at the emulator."""
    name = f"emulator-{uuid.uuid4().hex[:12]}"
    await OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).asave(name)
    return name


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's S3 in server mode on a free loopback port; yields its endpoint URL."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake AWS credentials and no shared config, so nothing reaches beyond loopback."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest_asyncio.fixture(loop_scope="session")
async def bucket(moto_s3: str, aws_env: None) -> Bucket:
    """A fresh bucket on moto with a saved S3Bucket block (folder ``renders``) pointing at it."""
    made = Bucket(moto_s3)
    await made.block.asave(made.block_name)
    return made
