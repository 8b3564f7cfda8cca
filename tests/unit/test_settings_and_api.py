"""Settings from the environment, and the package's public surface."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

import omniflash_prefect
from omniflash_prefect import OmniFlashClient, OmniFlashCredentials
from omniflash_prefect.settings import OmniFlashSettings


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


#: What ``from omniflash_prefect import ...`` offers: what a pipeline author uses, 30 names at
#: most; the rest lives in modules a reader can guess (``errors``, ``spend_limits``, ...).
PUBLIC_NAMES = [
    "ArchivedVideo",
    "BatchItem",
    "BatchReport",
    "BatchRunOptions",
    "OmniFlashClient",
    "OmniFlashCredentials",
    "OmniFlashError",
    "VideoRequest",
    "VideoTask",
    "__version__",
    "aarchive_video",
    "afetch_video",
    "agenerate_video",
    "agenerate_video_batch",
    "agenerate_video_task",
    "apoll_video",
    "archive_video",
    "asubmit_video",
    "asweep_paid_videos",
    "aupload_image",
    "fetch_video",
    "generate_video",
    "generate_video_batch",
    "generate_video_task",
    "poll_video",
    "submit_video",
    "sweep_paid_videos",
    "upload_image",
]


def test_the_video_task_and_the_video_flow_are_one_function() -> None:
    """``generate_video_task`` and ``generate_video`` are one body wrapped twice: the same
    parameters, so a batch (or a user) can pass one's parameters to the other."""
    assert omniflash_prefect.agenerate_video_task.fn is omniflash_prefect.agenerate_video.fn
    assert omniflash_prefect.agenerate_video_task.name == omniflash_prefect.agenerate_video.name


def test_the_public_api_is_exactly_these_names() -> None:
    assert len(PUBLIC_NAMES) <= 30
    """Every documented name is importable from the package root, and nothing else is offered
    there (modules aside): moving code between modules keeps the public imports."""
    assert omniflash_prefect.__all__ == PUBLIC_NAMES
    offered = {
        name
        for name, value in vars(omniflash_prefect).items()
        if not name.startswith("_") and not isinstance(value, type(omniflash_prefect))
    }
    assert offered == set(PUBLIC_NAMES) - {"__version__"}


def test_client_defaults_are_the_settings_defaults() -> None:
    """Timeouts, attempts and the size cap are declared once (in the settings): a client built
    without them, and a credentials block, use the same values."""
    defaults = OmniFlashSettings.model_construct()
    client = OmniFlashClient("sk-test")
    assert client._http.timeout.read == defaults.request_timeout_seconds
    assert client._http.timeout.connect == defaults.connect_timeout_seconds
    assert client.downloads.max_download_bytes == defaults.max_download_bytes
    assert client.downloads.download_attempts == defaults.download_attempts
    assert client.retry_policy == defaults.retry_policy()
    assert client.poll_schedule == defaults.poll_schedule()
    block = OmniFlashCredentials(api_key="sk-test")
    assert block.request_timeout_seconds == defaults.request_timeout_seconds
    assert block.connect_timeout_seconds == defaults.connect_timeout_seconds
