"""The Prefect block that holds the API credentials, so no key lives in code or run parameters.

Flows take the block's *name* and load it inside the run: a block object or a plain key passed as
a flow parameter would be stored with the run, in clear text for the key.
"""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr, field_validator

from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.client.transport import http_timeout
from omniflash_prefect.settings import DEFAULT_BASE_URL, DEFAULTS, OmniFlashSettings


class OmniFlashCredentials(CredentialsBlock):
    """Credentials for the Omni-Flash-Ext video generation API.

    Poll pacing, retries and download limits come from ``OMNIFLASH_*`` settings on the machine that
    runs the flow; the block holds what identifies the account.
    """

    _block_type_name: ClassVar[str] = "Omni-Flash-Ext Credentials"
    _block_type_slug: ClassVar[str] = "omniflash-credentials"
    _description: ClassVar[str] = (
        "API key and endpoint of the Omni-Flash-Ext video generation API "
        "(text-to-video, image-to-video and reference fusion)."
    )
    _documentation_url: ClassVar[Any] = "https://docs.apimart.ai"
    _code_example: ClassVar[str] = """
```python
from omniflash_prefect import OmniFlashCredentials

credentials = OmniFlashCredentials.load("BLOCK_NAME")
async with credentials.get_client() as client:
    balance = await client.get_balance()
```
"""

    api_key: SecretStr = Field(
        description="The Omni-Flash-Ext API key, sent as a bearer token.",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="Root URL of the API; point it at an emulator to dry-run pipelines.",
    )
    request_timeout_seconds: float = Field(
        default=DEFAULTS.request_timeout_seconds,
        gt=0,
        description="Timeout of one HTTP read or write, in seconds.",
    )
    connect_timeout_seconds: float = Field(
        default=DEFAULTS.connect_timeout_seconds,
        gt=0,
        description="Timeout to establish a connection, in seconds.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("base_url must be an http(s) URL")
        return value.rstrip("/")

    def get_client(self, **overrides: Any) -> OmniFlashClient:
        """A client for this account; poll and retry bounds come from ``OMNIFLASH_*`` settings."""
        options: dict[str, Any] = {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "timeout": http_timeout(self.request_timeout_seconds, self.connect_timeout_seconds),
        }
        options.update(overrides)
        return OmniFlashClient.from_settings(OmniFlashSettings(), **options)
