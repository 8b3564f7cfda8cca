"""Fixtures of every test folder: a fake clock whose sleeps advance time instantly."""

from __future__ import annotations

import pytest

from tests.support.clock import FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
