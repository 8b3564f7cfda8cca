"""The fixtures of ``tests/prefect`` (emulator, credentials block, fast settings, moto's S3),
shared rather than copied, and a Prefect test server for this folder's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import (
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness

from tests.prefect.conftest import aws_env, block, emulator, fast_settings, moto_s3
from tests.support.s3 import Bucket

__all__ = ["aws_env", "block", "emulator", "fast_settings", "moto_s3"]


@pytest.fixture(scope="session", autouse=True)
def examples_prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Prefect test server (SQLite in a temp dir) for the examples; yields the result
    storage directory. As in ``tests/prefect``, nothing touches ``~/.prefect``."""
    results = tmp_path_factory.mktemp("examples-prefect-results")
    with (
        temporary_settings(
            {PREFECT_LOCAL_STORAGE_PATH: results, PREFECT_SERVER_ANALYTICS_ENABLED: False}
        ),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield results


@pytest.fixture
def s3_bucket(moto_s3: str, aws_env: None) -> Bucket:
    """A fresh bucket on moto with a saved S3Bucket block (folder ``renders``), saved from sync
    code as the examples' tests are."""
    made = Bucket(moto_s3)
    made.block.save(made.block_name)
    return made
