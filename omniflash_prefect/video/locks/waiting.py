"""What both lock managers share: safe keys, the holder's description, and acquiring and
waiting as rechecks, sync and async, woken at once by a release in this process."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import socket
import threading
import time

from prefect.locking.protocol import LockManager

from omniflash_prefect.errors import UsageError

logger = logging.getLogger("omniflash_prefect")

_KEY = re.compile(r"[A-Za-z0-9._-]{1,200}")
#: Waiting for a lock: the first recheck comes after this long, then twice as long each time.
_FIRST_RECHECK_SECONDS = 0.002
#: Folder of the lock files or objects, beside the records they guard.
LOCKS_FOLDER = ".omniflash-locks"


def checked_key(key: str) -> str:
    """Keys become file and object names: only safe characters (they are digests here)."""
    if not _KEY.fullmatch(key):
        raise UsageError(f"invalid lock key {key!r}")
    return key


def describe_holder(holder: str) -> bytes:
    """What a lock records about its holder, for a human looking at a stuck key."""
    return json.dumps(
        {
            "holder": holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": dt.datetime.now(dt.UTC).isoformat(),
        }
    ).encode()


class Waiting:
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


class PollingLockManager(LockManager):
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
            woken.get_loop().call_soon_threadsafe(wake_waiter, woken)

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
        waiting = Waiting(self.recheck_seconds, acquire_timeout)
        while not self._try_acquire(checked_key(key), holder):
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
        waiting = Waiting(self.recheck_seconds, acquire_timeout)
        while not await self._atry_acquire(checked_key(key), holder):
            delay = waiting.next_delay()
            if delay is None:
                return False
            await self._nap(key, delay)
        return True

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        waiting = Waiting(self.recheck_seconds, timeout)
        while self.is_locked(key):
            delay = waiting.next_delay()
            if delay is None:
                return False
            time.sleep(delay)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - the protocol's signature
        waiting = Waiting(self.recheck_seconds, timeout)
        while await self._ais_locked(key):
            delay = waiting.next_delay()
            if delay is None:
                return False
            await self._nap(key, delay)
        return True


def wake_waiter(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
