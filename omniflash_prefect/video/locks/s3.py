"""Locks across machines: one object per key in the records' S3 bucket, taken with a conditional
write and held by a lease its holder renews."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from omniflash_prefect.errors import UsageError
from omniflash_prefect.video.locks.waiting import (
    PollingLockManager,
    checked_key,
    describe_holder,
    logger,
)


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


class S3LockManager(PollingLockManager):
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
        name = f"{checked_key(key)}.lock"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _put(self, key: str, holder: str, **condition: str) -> str:
        body = json.loads(describe_holder(holder))
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
