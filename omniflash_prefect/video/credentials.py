"""Reading the credentials block (and storage blocks): once per run, however many tasks and videos
need them.

Every submit, poll and archive needs a client, and a client needs the credentials block, whose
read is a Prefect API call. :func:`credentials_read_once` makes a ``generate_video`` run (or a
whole batch) read each named block once and share it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.errors import BlockTypeError, CredentialsBlockNotFoundError
from omniflash_prefect.video.blocks import OmniFlashCredentials

B = TypeVar("B")

#: Reads of blocks in the current ``generate_video`` (or batch) run, by name; see
#: :func:`credentials_read_once`. None outside such a run: every call reads the block.
_BLOCKS: ContextVar[dict[str, asyncio.Future[Any]] | None] = ContextVar(
    "omniflash_blocks", default=None
)


@contextlib.contextmanager
def credentials_read_once() -> Iterator[None]:
    """Within this block, each named credentials (or storage) block is read from the API once.

    One video's submit, poll and archive tasks each need a client; without this each would read
    the same block (an API call) again, and each video of a batch its storage blocks. Tasks and
    subflows run in a copy of the caller's context, which shares the dict, so what one task read
    the next one reuses. Nested blocks share the outermost one's reads: a batch reads each block
    once for all its videos, even when they all start at the same moment (they wait for the one
    read in flight).
    """
    if _BLOCKS.get() is not None:
        yield
        return
    token = _BLOCKS.set({})
    try:
        yield
    finally:
        _BLOCKS.reset(token)


async def load_client(credentials_block: str | None = None) -> OmniFlashClient:
    """A client from the named credentials block, else from ``OMNIFLASH_*`` settings."""
    if credentials_block:
        return (await load_credentials(credentials_block)).get_client()
    return OmniFlashClient.from_settings()


async def load_credentials(name: str) -> OmniFlashCredentials:
    """The credentials block ``name`` (read once per :func:`credentials_read_once` scope).

    The one place a credentials block is loaded, for flows, tasks and the command line alike:
    a name with no block raises :class:`CredentialsBlockNotFoundError` listing those that exist,
    a block of another type :class:`BlockTypeError`.
    """
    return await read_block_once(name, _read_credentials)


async def read_block_once(name: str, read: Callable[[str], Awaitable[B]]) -> B:
    """``read(name)``, once per :func:`credentials_read_once` scope and event loop: callers at
    the same moment wait for the one read in flight, and a failed read is tried again."""
    cache = _BLOCKS.get()
    key = f"{getattr(read, '__qualname__', read)}:{name}"
    done = cache.get(key) if cache is not None else None
    if cache is None or (done is not None and done.get_loop() is not asyncio.get_running_loop()):
        return await read(name)  # no sharing across event loops
    if done is None or (done.done() and (done.cancelled() or done.exception() is not None)):
        done = cache[key] = asyncio.ensure_future(read(name))
    # Shielded: one caller cancelled must not cancel the read the others wait for.
    result: B = await asyncio.shield(done)
    return result


async def _read_credentials(name: str) -> OmniFlashCredentials:
    try:
        loaded: object = await OmniFlashCredentials.aload(name)
    except ValueError as exc:
        # Prefect turns the server's 404 into a bare ValueError; say which blocks there are.
        if not isinstance(exc.__cause__, ObjectNotFound):
            raise
        raise CredentialsBlockNotFoundError(name, await credentials_block_names()) from None
    if not isinstance(loaded, OmniFlashCredentials):
        raise BlockTypeError(f"block {name!r} is not an OmniFlashCredentials block")
    return loaded


async def credentials_block_names() -> tuple[str, ...]:
    """The names of the saved ``omniflash-credentials`` blocks, sorted (read without their
    secrets); none when the block type was never registered on the server."""
    async with get_client() as client:
        try:
            documents = await client.read_block_documents_by_type(
                OmniFlashCredentials.get_block_type_slug(), include_secrets=False
            )
        except ObjectNotFound:
            return ()
    return tuple(
        sorted(
            document.name
            for document in documents
            if document.name is not None and not document.is_anonymous
        )
    )
