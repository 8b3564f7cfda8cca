"""The thin async client: the only code that talks to the provider over the network.

:mod:`~omniflash_prefect.client.api` (``OmniFlashClient``: API calls, retries, polling) is where to
start; :mod:`~omniflash_prefect.client.downloads` streams videos to disk and
:mod:`~omniflash_prefect.client.transport` is how connections are made and checked.
"""

from omniflash_prefect.client.api import MAX_API_ANSWER_BYTES, OmniFlashClient
from omniflash_prefect.client.transport import SOCKET_READ_BYTES, resolve_host

__all__ = ["MAX_API_ANSWER_BYTES", "SOCKET_READ_BYTES", "OmniFlashClient", "resolve_host"]
