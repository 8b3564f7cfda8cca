"""Claims: one caller at a time acts on a key, wherever the callers run.

A claim is a Prefect transaction with ``SERIALIZABLE`` isolation over a ``ResultStore`` whose lock
manager sits beside the records (see :mod:`omniflash_prefect.video.locks`): entering it waits until
no other caller holds the key, and leaving it, normally or by an exception, lets the next one in.
Inside, the holder reads the key's records and writes new ones before anyone else may look, which
is what makes "check, then send, then record" safe against callers that race: coroutines of one
flow, threads of a task runner, processes, and machines sharing an S3 bucket.

The transaction is used as a lock scope only: it never marks itself committed from an existing
record (``overwrite``) and writes nothing on commit; the records are read and written by the
holder with :func:`record_store`, because a submission must be marked *before* its request is
sent, not only at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prefect.filesystems import WritableFileSystem
from prefect.results import ResultStore, aget_default_result_storage, get_result_store
from prefect.serializers import JSONSerializer
from prefect.transactions import CommitMode, IsolationLevel, atransaction

from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.locks import lock_manager_for


def record_store(storage: WritableFileSystem) -> ResultStore:
    """A JSON result store over ``storage`` for this package's records.

    Built afresh because a flow run's own store writes no record metadata, so its ``aexists``
    never finds the records that tasks (and batches) write; and without an in-memory cache,
    because records change (in flight, then submitted; then archived) and each read must see the
    stored one.
    """
    return ResultStore(
        result_storage=storage, serializer=JSONSerializer(), cache_result_in_memory=False
    )


async def current_record_storage(storage: WritableFileSystem | None = None) -> WritableFileSystem:
    """``storage``, else the current run's result storage, else Prefect's default one."""
    if storage is not None:
        return storage
    configured = get_result_store().result_storage
    return configured if configured is not None else await aget_default_result_storage()


def _lease_seconds() -> float:
    """The claim lease, read from the settings only for storage that has leases (S3)."""
    return OmniFlashSettings().claim_lease_seconds


@contextlib.asynccontextmanager
async def claim(key: str, storage: WritableFileSystem) -> AsyncIterator[None]:
    """Hold ``key`` (among everyone keeping records in ``storage``) for the ``async with`` body."""
    store = ResultStore(
        result_storage=storage,
        lock_manager=lock_manager_for(storage, lease_seconds=_lease_seconds),
        serializer=JSONSerializer(),
    )
    async with atransaction(
        key=key,
        store=store,
        isolation_level=IsolationLevel.SERIALIZABLE,
        commit_mode=CommitMode.EAGER,
        overwrite=True,
        write_on_commit=False,
    ):
        yield
