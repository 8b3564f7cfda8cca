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

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.locking.protocol import LockManager
from prefect.settings import PREFECT_HOME

from omniflash_prefect.core.errors import UsageError

logger = logging.getLogger("omniflash_prefect")

_KEY = re.compile(r"[A-Za-z0-9._-]{1,200}")
#: Waiting for a lock: the first recheck comes after this long, then twice as long each time.
_FIRST_RECHECK_SECONDS = 0.002
#: Folder of the lock files or objects, beside the records they guard.
LOCKS_FOLDER = ".omniflash-locks"


def _checked(key: str) -> str:
    """Keys become file and object names: only safe characters (they are digests here)."""
    if not _KEY.fullmatch(key):
        raise UsageError(f"invalid lock key {key!r}")
    return key


def _describe(holder: str) -> bytes:
    """What a lock records about its holder, for a human looking at a stuck key."""
    return json.dumps(
        {
            "holder": holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": dt.datetime.now(dt.UTC).isoformat(),
        }
    ).encode()


class _Waiting:
    """The recheck delays of one wait: short at first, never longer than ``longest``."""

    def __init__(self, longest: float, timeout: float | None) -> None:
        self._delay = _FIRST_RECHECK_SECONDS
        self._longest = longest
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def next_delay(self) -> float | None:
        """Seconds until the next recheck, or None when the timeout has passed."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return None
        delay = self._delay
        self._delay = min(self._delay * 2, self._longest)
        if self._deadline is not None:
            delay = min(delay, max(self._deadline - time.monotonic(), 0.0))
        return delay


class _PollingLockManager(LockManager):
    """Acquiring and waiting as rechecks of ``_try_acquire`` / ``is_locked``, sync and async.

    A lock released in this process wakes the coroutines waiting for it at once (whatever their
    event loop); holders elsewhere are noticed at the next recheck.
    """

    recheck_seconds: float

    def __init__(self, recheck_seconds: float) -> None:
        self.recheck_seconds = recheck_seconds
        self._guard = threading.Lock()
        self._sleepers: dict[str, set[asyncio.Future[None]]] = {}

    async def _nap(self, key: str, seconds: float) -> None:
        """Sleep up to ``seconds``, or until ``key`` is released in this process."""
        woken = asyncio.get_running_loop().create_future()
        with self._guard:
            self._sleepers.setdefault(key, set()).add(woken)
        try:
            await asyncio.wait({woken}, timeout=seconds)
        finally:
            with self._guard:
                sleepers = self._sleepers.get(key, set())
                sleepers.discard(woken)
                if not sleepers:
                    self._sleepers.pop(key, None)

    def _wake(self, key: str) -> None:
        """Wake every coroutine napping on ``key`` (from any thread)."""
        with self._guard:
            sleepers = self._sleepers.pop(key, set())
        for woken in sleepers:
            woken.get_loop().call_soon_threadsafe(_resolve, woken)

    def _try_acquire(self, key: str, holder: str) -> bool:
        raise NotImplementedError

    async def _atry_acquire(self, key: str, holder: str) -> bool:
        """``_try_acquire`` off the event loop (a network round trip); file locks override it."""
        return await asyncio.to_thread(self._try_acquire, key, holder)

    async def _ais_locked(self, key: str) -> bool:
        return await asyncio.to_thread(self.is_locked, key)

    def is_locked(self, key: str) -> bool:
        raise NotImplementedError

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        waiting = _Waiting(self.recheck_seconds, acquire_timeout)
        while not self._try_acquire(_checked(key), holder):
            delay = waiting.next_delay()
            if delay is None:
                return False
            time.sleep(delay)
        return True

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        waiting = _Waiting(self.recheck_seconds, acquire_timeout)
        while not await self._atry_acquire(_checked(key), holder):
            delay = waiting.next_delay()
            if delay is None:
                return False
            await self._nap(key, delay)
        return True

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        waiting = _Waiting(self.recheck_seconds, timeout)
        while self.is_locked(key):
            delay = waiting.next_delay()
            if delay is None:
                return False
            time.sleep(delay)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - the protocol's signature
        waiting = _Waiting(self.recheck_seconds, timeout)
        while await self._ais_locked(key):
            delay = waiting.next_delay()
            if delay is None:
                return False
            await self._nap(key, delay)
        return True


class FileLockManager(_PollingLockManager):
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
        return self.directory / f"{_checked(key)}.lock"

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
        os.write(descriptor, _describe(holder))
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


def _resolve(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


def _still_named(descriptor: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``descriptor``."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


class S3Client(Protocol):
    """The calls of a boto3 S3 client that the lock uses."""

    def put_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def delete_object(self, **kwargs: Any) -> dict[str, Any]: ...


def lease_expired(
    last_modified: dt.datetime, lease_seconds: float, bucket_now: dt.datetime
) -> bool:
    """Whether a lock object written at ``last_modified`` with that lease has run out, both
    times read from the bucket (so no machine's clock is trusted)."""
    return last_modified + dt.timedelta(seconds=lease_seconds) <= bucket_now


_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING_CODES = frozenset({"NoSuchKey", "404"})


def _error_code(error: Exception) -> str | None:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


class _Renewal:
    """Rewrites a held lock object every third of its lease, until stopped or lost."""

    def __init__(self, manager: S3LockManager, key: str, holder: str, etag: str) -> None:
        self.etag = etag
        self._manager = manager
        self._key = key
        self._holder = holder
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"omniflash-lease-{key[:16]}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._manager.lease_seconds / 3):
            try:
                self.etag = self._manager._put(self._key, self._holder, IfMatch=self.etag)
            except Exception as exc:  # lost to a taker-over, or the bucket is unreachable
                if _error_code(exc) in _PRECONDITION_CODES:
                    logger.warning("the lock of %s was taken over: its lease ran out", self._key)
                    return
                logger.warning("renewing the lock of %s failed: %s", self._key, exc)

    def stop(self) -> str:
        """Stop renewing; the object's current ETag."""
        self._stop.set()
        self._thread.join()
        return self.etag


class S3LockManager(_PollingLockManager):
    """Locks as objects ``<prefix>/<key>.lock`` in an S3 bucket, for workers on many machines.

    Exactly one conditional create (``If-None-Match: *``) of a key's object succeeds. The holder
    renews the object every third of ``lease_seconds``; a lock not renewed for a whole lease (its
    holder died, or lost the bucket) is taken over by one waiter with a conditional overwrite.
    """

    def __init__(
        self,
        client: Callable[[], S3Client],
        bucket: str,
        prefix: str,
        *,
        lease_seconds: float,
        recheck_seconds: float = 0.25,
    ) -> None:
        if lease_seconds <= 0:
            raise UsageError("lease_seconds must be positive")
        super().__init__(recheck_seconds)
        self._client_factory = client
        self._client: S3Client | None = None
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.lease_seconds = lease_seconds
        self._held: dict[str, tuple[str, _Renewal]] = {}

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = self._client_factory()  # boto3 clients are thread-safe
        return self._client

    def _object_key(self, key: str) -> str:
        name = f"{_checked(key)}.lock"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _put(self, key: str, holder: str, **condition: str) -> str:
        body = json.loads(_describe(holder))
        body["lease_seconds"] = self.lease_seconds
        answer = self.client.put_object(
            Bucket=self.bucket,
            Key=self._object_key(key),
            Body=json.dumps(body).encode(),
            ContentType="application/json",
            **condition,
        )
        return str(answer["ETag"])

    def _current(self, key: str) -> tuple[str, bool] | None:
        """The lock object's ETag and whether its lease has run out; None when there is none."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        except Exception as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise
        with answer["Body"] as body:
            recorded = json.loads(body.read() or b"{}")
        lease = recorded.get("lease_seconds", self.lease_seconds)
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        bucket_now = parsedate_to_datetime(date) if date else dt.datetime.now(dt.UTC)
        expired = lease_expired(answer["LastModified"], float(lease), bucket_now)
        return str(answer["ETag"]), expired

    def _try_acquire(self, key: str, holder: str) -> bool:
        with self._guard:
            held = self._held.get(key)
            if held is not None:
                return held[0] == holder
        try:
            etag = self._put(key, holder, IfNoneMatch="*")
        except Exception as exc:
            if _error_code(exc) not in _PRECONDITION_CODES:
                raise
            current = self._current(key)
            if current is None or not current[1]:
                return False  # held and alive, or just released: look again soon
            try:  # the holder stopped renewing: take its lock over, if nobody else did first
                etag = self._put(key, holder, IfMatch=current[0])
            except Exception as taken:
                if _error_code(taken) in _PRECONDITION_CODES | _MISSING_CODES:
                    return False
                raise
            logger.warning("took over the lock of %s: its holder's lease ran out", key)
        with self._guard:
            self._held[key] = (holder, _Renewal(self, key, holder, etag))
        return True

    def release_lock(self, key: str, holder: str) -> None:
        with self._guard:
            held = self._held.get(key)
            if held is None or held[0] != holder:
                return
            del self._held[key]
        etag = held[1].stop()
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key), IfMatch=etag)
        except Exception as exc:
            if _error_code(exc) == "NotImplemented":  # a store without conditional deletes
                self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
            elif _error_code(exc) not in _PRECONDITION_CODES | _MISSING_CODES:
                raise
        finally:
            self._wake(key)

    def is_locked(self, key: str) -> bool:
        with self._guard:
            if key in self._held:
                return True
        current = self._current(key)
        return current is not None and not current[1]

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with self._guard:
            held = self._held.get(key)
        return held is not None and held[0] == holder


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
