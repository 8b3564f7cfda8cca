"""The thin async client: the only code that talks to the provider over the network."""

from omniflash_prefect.client.api import (
    MAX_API_ANSWER_BYTES,
    SOCKET_READ_BYTES,
    OmniFlashClient,
    resolve_host,
)

__all__ = ["MAX_API_ANSWER_BYTES", "SOCKET_READ_BYTES", "OmniFlashClient", "resolve_host"]
