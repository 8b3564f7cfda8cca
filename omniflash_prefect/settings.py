"""Configuration from the environment (``OMNIFLASH_*``), for use outside a Prefect block.

A credentials block, when one is named, wins over these; they are the fallback for scripts, the
command line and the emulator. The API key is a ``SecretStr`` so it never prints.

The one place of the client's defaults: timeouts, attempts and the size cap are declared here,
and the poll and retry bounds are those of the pure :class:`PollSchedule` and
:class:`RetryPolicy`. The client (constructed without them) and the credentials block read
:data:`DEFAULTS`, so the three can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from omniflash_prefect.core.polling import PollSchedule
from omniflash_prefect.core.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.apimart.ai"


class OmniFlashSettings(BaseSettings):
    """Every knob of the client, read from ``OMNIFLASH_<NAME>`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="OMNIFLASH_", extra="ignore")

    api_key: SecretStr | None = Field(default=None, description="The provider's API key.")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="Root URL of the API.")
    poll_min_seconds: float = Field(
        default=PollSchedule.min_interval_seconds, ge=0, description="Shortest poll interval."
    )
    poll_max_seconds: float = Field(
        default=PollSchedule.max_interval_seconds, ge=0, description="Longest poll interval."
    )
    first_poll_delay_seconds: float = Field(
        default=PollSchedule.first_delay_seconds,
        ge=0,
        description="Wait after submitting before the first status read.",
    )
    poll_timeout_seconds: float = Field(
        default=PollSchedule.timeout_seconds,
        gt=0,
        description="Give up waiting for a task after this long.",
    )
    archive_dir: Path = Field(default=Path("videos"), description="Where videos are archived.")
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of one HTTP read or write."
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout to establish a connection."
    )
    max_attempts: int = Field(
        default=RetryPolicy.max_attempts,
        ge=1,
        description="Tries of one API call (first try included) on retryable errors.",
    )
    download_attempts: int = Field(
        default=5, ge=1, description="Tries of one download, resuming where the last one broke."
    )
    max_download_bytes: int = Field(
        default=4 * 1024**3, gt=0, description="Refuse videos larger than this."
    )
    spend_lease_seconds: float = Field(
        default=120.0,
        ge=1,
        description="Lease of a run's reservations on a spend limit: the run renews it every "
        "third of it while it has videos in flight, and the reservations of a run that died "
        "(killed, its machine gone) are released this long after its last renewal at most.",
    )
    claim_lease_seconds: float = Field(
        default=60.0,
        ge=3,
        description="Lease of a claim kept in an S3 bucket: a holder renews it every third of it "
        "while it lives, and a holder that died blocks its key this long at most (local claims "
        "end with their process). At least 3 s: the bucket's clock reads whole seconds.",
    )

    @model_validator(mode="after")
    def _poll_bounds_ordered(self) -> OmniFlashSettings:
        if self.poll_max_seconds < self.poll_min_seconds:
            raise ValueError("OMNIFLASH_POLL_MAX_SECONDS must be >= OMNIFLASH_POLL_MIN_SECONDS")
        return self

    def poll_schedule(self) -> PollSchedule:
        """The poll loop's bounds as the pure schedule uses them."""
        return PollSchedule(
            first_delay_seconds=self.first_poll_delay_seconds,
            min_interval_seconds=self.poll_min_seconds,
            max_interval_seconds=self.poll_max_seconds,
            timeout_seconds=self.poll_timeout_seconds,
        )

    def retry_policy(self) -> RetryPolicy:
        """The API-call retry policy."""
        return RetryPolicy(max_attempts=self.max_attempts)


#: Every setting at its default, whatever the environment says.
DEFAULTS: Final = OmniFlashSettings.model_construct()
