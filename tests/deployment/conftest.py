"""A real ``prefect server start`` for this folder's tests, in a temporary PREFECT_HOME.

The server takes seconds to come up, so one serves the module; its SQLite database, profile and
result storage all live under a temporary directory and it listens on a free loopback port.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from tests.support.fleet import Deployed, deploy_with_heartbeats
from tests.support.processes import PrefectServer, readme_walkthrough, start_prefect_server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: end-to-end on a real Prefect server, work pool, deployment and worker (~1 min)",
    )
    config.addinivalue_line(
        "markers",
        "browser: looks at the Prefect UI in Chromium (`make test BROWSER_TESTS=no` leaves it out)",
    )


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """The README's ``prefect server start`` on a free port, stopped (killed if need be) after."""
    command = readme_walkthrough().command("prefect server start")
    with start_prefect_server(command, tmp_path_factory.mktemp("prefect-home")) as server:
        yield server


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """A fresh in-process emulator whose jobs take 0.5 s and whose key is unique to the test."""
    config = EmulatorConfig(job_seconds=0.5, api_key=f"sk-walkthrough-{uuid.uuid4().hex}")
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def deployed(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """Both deployments with heartbeats every 30 s, and the lost-runs automation installed."""
    return deploy_with_heartbeats(prefect_server, tmp_path_factory.mktemp("lost-workers"))
