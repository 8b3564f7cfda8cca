"""Settings from the environment, and the package's public surface."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import omniflash_prefect
from omniflash_prefect import OmniFlashClient, OmniFlashSettings


def test_defaults_match_the_provider_guidance() -> None:
    """5-10 s polling after a 5 s first delay, 30 min deadline, ./videos."""
    settings = OmniFlashSettings(_env_file=None)
    assert settings.base_url == "https://api.apimart.ai"
    schedule = settings.poll_schedule()
    assert (schedule.first_delay_seconds, schedule.min_interval_seconds) == (5, 5)
    assert (schedule.max_interval_seconds, schedule.timeout_seconds) == (10, 1800)
    assert settings.archive_dir == Path("videos")


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every OMNIFLASH_* knob is read from the environment; the key stays secret."""
    monkeypatch.setenv("OMNIFLASH_API_KEY", "sk-from-env")
    monkeypatch.setenv("OMNIFLASH_BASE_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("OMNIFLASH_POLL_MIN_SECONDS", "0.1")
    monkeypatch.setenv("OMNIFLASH_POLL_MAX_SECONDS", "0.2")
    monkeypatch.setenv("OMNIFLASH_FIRST_POLL_DELAY_SECONDS", "0")
    monkeypatch.setenv("OMNIFLASH_POLL_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("OMNIFLASH_ARCHIVE_DIR", "/tmp/out")
    settings = OmniFlashSettings()
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "sk-from-env"
    assert "sk-from-env" not in repr(settings)
    assert "sk-from-env" not in str(settings)
    assert settings.poll_schedule().max_interval_seconds == 0.2
    assert settings.archive_dir == Path("/tmp/out")


def test_inverted_poll_bounds_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """min > max is a configuration error naming the variables."""
    monkeypatch.setenv("OMNIFLASH_POLL_MIN_SECONDS", "20")
    with pytest.raises(ValidationError, match="OMNIFLASH_POLL_MAX_SECONDS"):
        OmniFlashSettings()


def test_client_without_key_explains_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key anywhere: a clear message, nothing sent."""
    monkeypatch.delenv("OMNIFLASH_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OMNIFLASH_API_KEY"):
        OmniFlashClient.from_settings(OmniFlashSettings())
    with pytest.raises(ValueError, match="API key is required"):
        OmniFlashClient("  ")


async def test_client_repr_hides_the_key() -> None:
    """The key is not in the client's repr."""
    async with OmniFlashClient("sk-very-secret") as client:
        assert "sk-very-secret" not in repr(client)


def test_all_is_sorted_and_exact() -> None:
    """__all__ is sorted and lists exactly the public names the package defines."""
    names = omniflash_prefect.__all__
    assert names == sorted(names)
    public = {
        name
        for name, value in vars(omniflash_prefect).items()
        if not name.startswith("_") and not isinstance(value, type(omniflash_prefect))
    }
    assert set(names) - {"__version__"} == public
    assert omniflash_prefect.__version__ == "0.1.0"
