"""Locks on one machine: ``flock(2)`` on one file per key, dropped by the kernel when the
holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from omniflash_prefect.video.locks.waiting import PollingLockManager, checked_key, describe_holder


class FileLockManager(PollingLockManager):
    """``flock(2)`` locks on ``<directory>/<key>.lock``: one machine, released at death.

    A lock lives exactly as long as its holder: ``hold_timeout`` is accepted for the protocol's
    sake and not needed (the kernel releases the lock of a process that dies). The lock file is
    removed on release, while still locked; an acquirer that finds it locked a file already
    removed starts over, so two holders can never hold two different files of one key.
    """

    def __init__(self, directory: Path, *, recheck_seconds: float = 0.05) -> None:
        super().__init__(recheck_seconds)
        self.directory = directory.expanduser().resolve()
        self._held: dict[str, tuple[str, int]] = {}

    def _path(self, key: str) -> Path:
        return self.directory / f"{checked_key(key)}.lock"

    async def _atry_acquire(self, key: str, holder: str) -> bool:
        return self._try_acquire(key, holder)  # non-blocking system calls: no thread needed

    async def _ais_locked(self, key: str) -> bool:
        return self.is_locked(key)

    def _try_acquire(self, key: str, holder: str) -> bool:
        with self._guard:
            held = self._held.get(key)
            if held is not None:  # held in this process: no system call needed to know
                return held[0] == holder
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        if not _still_named(descriptor, path):  # released and removed between open and flock
            os.close(descriptor)
            return False
        os.ftruncate(descriptor, 0)
        os.write(descriptor, describe_holder(holder))
        with self._guard:
            self._held[key] = (holder, descriptor)
        return True

    def release_lock(self, key: str, holder: str) -> None:
        with self._guard:
            held = self._held.get(key)
            if held is None or held[0] != holder:
                return  # not (or no longer) this holder's: nothing to release
            del self._held[key]
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()  # still locked: nobody can lock this file after us
        os.close(held[1])
        self._wake(key)

    def is_locked(self, key: str) -> bool:
        with self._guard:
            if key in self._held:
                return True
        try:
            descriptor = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)  # closing drops the shared lock taken to look
        return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with self._guard:
            held = self._held.get(key)
        return held is not None and held[0] == holder


def _still_named(descriptor: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``descriptor``."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
