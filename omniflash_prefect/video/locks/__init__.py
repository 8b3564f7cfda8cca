"""Who may act on a key right now: lock managers for claims, on one machine and across many.

Both classes implement Prefect's ``LockManager`` protocol, so a ``ResultStore`` built with one
gives a Prefect transaction its ``SERIALIZABLE`` isolation (see
:mod:`omniflash_prefect.video.claims`).
They sit where the records they guard sit, so whatever storage the records are shared through
also shares the locks:

* :class:`FileLockManager` (records in a local directory, the default): ``flock(2)`` on one file
  per key. Exclusive between coroutines, threads and processes of a machine; the kernel drops a
  dead process's locks the moment it dies, so a holder killed with SIGKILL never blocks its key.
* :class:`S3LockManager` (records in an S3 bucket, shared by many machines): one object per key,
  created with a conditional write (``If-None-Match: *``) so exactly one writer succeeds. A holder
  renews its lease while it lives; a lock whose lease ran out (judged on the bucket's clock:
  ``Last-Modified`` plus the lease against the answer's ``Date``) is taken over with a
  conditional overwrite (``If-Match``), so a dead machine blocks its keys for one lease at most.

Prefect ships ``FileSystemLockManager``; it is not used because it is not safe where money is at
stake: it creates a lock file and writes its content in two steps (a racing reader fails on the
empty file), a racer that loses waits with ``time.sleep`` inside the event loop (so coroutines of
one flow deadlock), and locks taken by transactions carry no expiry (a killed holder blocks its
key for good). Releasing a lock one does not hold is a no-op here, as Prefect's nested
transactions release their children's locks a second time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.locking.protocol import LockManager
from prefect.settings import PREFECT_HOME

from omniflash_prefect.video.locks.files import FileLockManager
from omniflash_prefect.video.locks.s3 import S3LockManager, lease_expired
from omniflash_prefect.video.locks.waiting import LOCKS_FOLDER, logger

__all__ = ["LOCKS_FOLDER", "FileLockManager", "S3LockManager", "lease_expired", "lock_manager_for"]

_MANAGERS: dict[tuple[str, ...], LockManager] = {}
_MANAGERS_GUARD = threading.Lock()


def lock_manager_for(
    storage: WritableFileSystem, *, lease_seconds: Callable[[], float]
) -> LockManager:
    """The lock manager for records kept in ``storage``: one per place, shared in the process.

    A local directory gets :class:`FileLockManager` in its ``.omniflash-locks`` folder; an S3
    bucket gets :class:`S3LockManager` under the bucket folder, with the lease
    ``lease_seconds()`` gives (asked only then). Any other storage gets file locks in
    ``$PREFECT_HOME/omniflash-locks``, exclusive on this machine only (logged once).
    """
    place, make = _place_of(storage, lease_seconds)
    with _MANAGERS_GUARD:
        manager = _MANAGERS.get(place)
        if manager is None:
            manager = _MANAGERS[place] = make()
        return manager


def _place_of(
    storage: WritableFileSystem, lease_seconds: Callable[[], float]
) -> tuple[tuple[str, ...], Callable[[], LockManager]]:
    if isinstance(storage, LocalFileSystem):
        base = Path(storage.basepath).expanduser() if storage.basepath else Path.cwd()
        directory = base.resolve() / LOCKS_FOLDER
        return ("file", str(directory)), lambda: FileLockManager(directory)
    bucket = getattr(storage, "bucket_name", None)
    credentials = getattr(storage, "credentials", None)
    get_client = getattr(credentials, "get_s3_client", None)
    if isinstance(bucket, str) and callable(get_client):
        folder = str(getattr(storage, "bucket_folder", "") or "").strip("/")
        prefix = f"{folder}/{LOCKS_FOLDER}" if folder else LOCKS_FOLDER
        parameters = getattr(credentials, "aws_client_parameters", None)
        endpoint = str(getattr(parameters, "endpoint_url", "") or "")
        lease = lease_seconds()
        place = ("s3", endpoint, bucket, prefix, str(lease))
        return place, lambda: S3LockManager(get_client, bucket, prefix, lease_seconds=lease)
    directory = Path(PREFECT_HOME.value()).expanduser().resolve() / "omniflash-locks"

    def machine_local() -> LockManager:
        logger.warning(
            "records kept in %s: claims on them are exclusive on this machine only (share an "
            "S3 bucket between machines for claims that hold across them)",
            type(storage).__name__,
        )
        return FileLockManager(directory)

    return ("file", str(directory)), machine_local
