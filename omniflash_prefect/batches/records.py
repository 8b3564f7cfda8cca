"""Where a batch keeps what its runs did: each row's submission key, and a record per archived
row, so a run with the same ``batch_id`` resumes instead of paying again."""

from __future__ import annotations

import hashlib

from prefect.results import ResultStore

from omniflash_prefect.batches.manifest import ManifestRow
from omniflash_prefect.batches.report import BatchItem


def row_idempotency_key(batch_id: str, row_id: str) -> str:
    """The submission key of a row: one paid video per batch, row and request."""
    return f"omniflash-batch:{batch_id}:row:{row_id}"


class BatchRecords:
    """What earlier runs of a batch archived, one small JSON record per archived row."""

    def __init__(self, store: ResultStore, batch_id: str) -> None:
        self._store = store
        self._batch = hashlib.sha256(batch_id.encode()).hexdigest()[:24]

    def _key(self, row: ManifestRow) -> str:
        digest = hashlib.sha256(f"{row.id}|{row.request.fingerprint()}".encode()).hexdigest()
        return f"omniflash-batch-{self._batch}-{digest[:32]}"

    async def archived(self, row: ManifestRow) -> BatchItem | None:
        """The row's item when an earlier run archived it; no provider call."""
        key = self._key(row)
        if not await self._store.aexists(key):
            return None
        record = await self._store.aread(key)
        return BatchItem.model_validate(record.result)

    async def save(self, row: ManifestRow, item: BatchItem) -> None:
        """Record an archived row for later runs of the batch."""
        await self._store.awrite(item.model_dump(mode="json"), key=self._key(row))
