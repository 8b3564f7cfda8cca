"""Reading the credentials block: once per run, however many tasks and videos need a client.

Every submit, poll and archive needs a client, and a client needs the credentials block, whose
read is a Prefect API call. :func:`credentials_read_once` makes a ``generate_video`` run (or a
whole batch) read each named block once and share it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.core.errors import BlockTypeError
from omniflash_prefect.video.blocks import OmniFlashCredentials

#: Reads of credentials blocks in the current ``generate_video`` (or batch) run, by name; see
#: :func:`credentials_read_once`. None outside such a run: every call reads the block.
_CREDENTIALS: ContextVar[dict[str, asyncio.Future[OmniFlashCredentials]] | None] = ContextVar(
    "omniflash_credentials", default=None
)


@contextlib.contextmanager
def credentials_read_once() -> Iterator[None]:
    """Within this block, each named credentials block is read from the API once.

    One video's submit, poll and archive tasks each need a client; without this each would read
    the same block (an API call) again. Tasks and subflows run in a copy of the caller's context,
    which shares the dict, so what one task read the next one reuses. Nested blocks share the
    outermost one's reads: a batch reads each block once for all its videos, even when they all
    start at the same moment (they wait for the one read in flight).
    """
    if _CREDENTIALS.get() is not None:
        yield
        return
    token = _CREDENTIALS.set({})
    try:
        yield
    finally:
        _CREDENTIALS.reset(token)


async def load_client(credentials_block: str | None = None) -> OmniFlashClient:
    """A client from the named credentials block, else from ``OMNIFLASH_*`` settings."""
    if credentials_block:
        return (await _load_credentials(credentials_block)).get_client()
    return OmniFlashClient.from_settings()


async def _load_credentials(name: str) -> OmniFlashCredentials:
    cache = _CREDENTIALS.get()
    read = cache.get(name) if cache is not None else None
    if cache is None or (read is not None and read.get_loop() is not asyncio.get_running_loop()):
        return await _read_credentials(name)  # no sharing across event loops
    if read is None or (read.done() and (read.cancelled() or read.exception() is not None)):
        read = cache[name] = asyncio.ensure_future(_read_credentials(name))  # a failure is retried
    # Shielded: one caller cancelled must not cancel the read the others wait for.
    return await asyncio.shield(read)


async def _read_credentials(name: str) -> OmniFlashCredentials:
    loaded: object = await OmniFlashCredentials.aload(name)
    if not isinstance(loaded, OmniFlashCredentials):
        raise BlockTypeError(f"block {name!r} is not an OmniFlashCredentials block")
    return loaded
