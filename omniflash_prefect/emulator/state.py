"""What the emulated provider remembers, and what tests read back to check a client's behaviour.

Tasks, accepted submissions, uploads, the money spent and per-task counters (polls, first poll
time, download attempts) live here behind one ``threading.Lock``: the app mutates them from the
server thread while a test reads them from its own thread. Readers get copies, never live
records. A task's whole timeline (when it finishes, whether it fails) and its video (shape,
size, injected media fault) are fixed at submit time, so changing the config later never
rewrites a task in flight; its status is then a pure function of the injectable clock, which is
how tests move time forward without waiting.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import math
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .clips import VideoShape
from .videos import VideoFault, VideoLayout, video_layout, video_sha256

Status = Literal["pending", "processing", "completed", "failed"]

#: Share of ``job_seconds`` a task spends ``pending`` before it turns ``processing``.
PENDING_SHARE = 0.1
#: The provider over-estimates: ``estimated_time`` is this many times the real job time.
ESTIMATE_FACTOR = 2.5

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(now: float, rng: random.Random) -> str:
    """A 26-character Crockford base32 ULID: 48 bits of milliseconds then 80 random bits."""
    value = (int(now * 1000) % 2**48) << 80 | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass
class TaskRecord:
    """One submitted task: its fixed timeline and what the client has done with it so far."""

    task_id: str
    request: dict[str, Any]
    created_at: float
    finishes_at: float
    estimated_time: int
    will_fail: bool
    price: float
    video_size_bytes: int | None
    shape: VideoShape
    video_fault: VideoFault | None
    polls: int = 0
    first_poll_at: float | None = None
    downloads: int = 0
    completed_downloads: int = 0

    def status_at(self, now: float) -> Status:
        """Pending for the first 10% of the job, processing until it ends, then terminal."""
        job = self.finishes_at - self.created_at
        if now >= self.finishes_at:
            return "failed" if self.will_fail else "completed"
        if now < self.created_at + PENDING_SHARE * job:
            return "pending"
        return "processing"

    def progress_at(self, now: float) -> int:
        """0 while pending, 1..99 rising linearly while processing, 100 when terminal."""
        status = self.status_at(now)
        if status == "pending":
            return 0
        if status != "processing":
            return 100
        job = self.finishes_at - self.created_at
        started = self.created_at + PENDING_SHARE * job
        share = (now - started) / (self.finishes_at - started)
        return min(99, 1 + math.floor(98 * share))

    def cost_at(self, now: float) -> float:
        """The reserved price, or 0 once the task has failed (the price is refunded)."""
        return 0.0 if self.status_at(now) == "failed" else self.price

    def video_layout(self) -> VideoLayout:
        """How this task's video is made (encodes its clip if not cached: not on the event loop)."""
        return video_layout(
            self.task_id, self.video_size_bytes, shape=self.shape, fault=self.video_fault
        )

    def as_dict(self, now: float) -> dict[str, Any]:
        """JSON-able view, with the status, progress and cost as of ``now``."""
        return {
            **dataclasses.asdict(self),
            "status": self.status_at(now),
            "progress": self.progress_at(now),
            "cost": self.cost_at(now),
        }


@dataclass(frozen=True)
class Upload:
    """An image received by the upload endpoint, served back under ``name``."""

    name: str
    filename: str
    content_type: str
    data: bytes
    created_at: float


class InsufficientBalanceError(Exception):
    """A submit would cost more than the remaining balance (the provider's 402)."""

    def __init__(self, price: float, remaining: float) -> None:
        super().__init__(f"price {price} exceeds the remaining balance {remaining}")
        self.price = price
        self.remaining = remaining


class EmulatorState:
    """Thread-safe memory of one emulated provider, plus its seeded RNG and clock."""

    def __init__(self, *, seed: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # A condition (over a re-entrant lock) so callers can wait for calls to be recorded.
        self._lock = threading.Condition()
        # Not for security: reproducible fault injection and task ids from a seed.
        self._rng = random.Random(seed)  # noqa: S311
        self._url_key = secrets.token_bytes(32)
        self._tasks: dict[str, TaskRecord] = {}
        self._submissions: list[dict[str, Any]] = []
        self._submission_attempts = 0
        self._uploads: dict[str, Upload] = {}

    def chance(self, rate: float) -> bool:
        """Draw from the seeded RNG: True with probability ``rate`` (no draw for 0 or 1)."""
        with self._lock:
            return self._chance(rate)

    def _chance(self, rate: float) -> bool:
        if rate <= 0.0 or rate >= 1.0:
            return rate >= 1.0
        return self._rng.random() < rate

    def _used_balance(self, now: float) -> float:
        return round(sum(task.cost_at(now) for task in self._tasks.values()), 4)

    def used_balance(self) -> float:
        """Money charged so far: reserved prices of all tasks except failed (refunded) ones."""
        with self._lock:
            return self._used_balance(self.clock())

    def count_submission_attempt(self) -> None:
        """Count a POST that reached the submit handler, whether or not it is accepted."""
        with self._lock:
            self._submission_attempts += 1
            self._lock.notify_all()

    def create_task(
        self,
        request: dict[str, Any],
        *,
        price: float,
        balance: float | None,
        job_seconds: float,
        failure_rate: float,
        video_size_bytes: int | None,
        shape: VideoShape,
        video_fault: VideoFault | None = None,
    ) -> TaskRecord:
        """Accept a validated submit: reserve its price, decide its fate, record it.

        ``balance`` is the account credit, or None when unlimited. Raises
        ``InsufficientBalanceError`` (and records nothing) when the price exceeds what remains.
        """
        with self._lock:
            now = self.clock()
            if balance is not None:
                remaining = round(balance - self._used_balance(now), 4)
                if price > remaining:
                    raise InsufficientBalanceError(price, remaining)
            task_id = f"task_{new_ulid(now, self._rng)}"
            while task_id in self._tasks:
                task_id = f"task_{new_ulid(now, self._rng)}"
            record = TaskRecord(
                task_id=task_id,
                request=copy.deepcopy(request),
                created_at=now,
                finishes_at=now + job_seconds,
                estimated_time=max(1, math.ceil(job_seconds * ESTIMATE_FACTOR)),
                will_fail=self._chance(failure_rate),
                price=price,
                video_size_bytes=video_size_bytes,
                shape=shape,
                video_fault=video_fault,
            )
            self._tasks[task_id] = record
            self._submissions.append(copy.deepcopy(request))
            self._lock.notify_all()
            return copy.deepcopy(record)

    def find(self, task_id: str) -> TaskRecord | None:
        """A copy of the task's record, or None if no such task was accepted."""
        with self._lock:
            record = self._tasks.get(task_id)
            return None if record is None else copy.deepcopy(record)

    def task(self, task_id: str) -> TaskRecord:
        """A copy of the task's record; ``KeyError`` if unknown."""
        record = self.find(task_id)
        if record is None:
            raise KeyError(task_id)
        return record

    def record_poll(self, task_id: str) -> None:
        """Count one status read of the task (and remember when the first one came)."""
        with self._lock:
            record = self._tasks.get(task_id)
            if record is not None:
                record.polls += 1
                if record.first_poll_at is None:
                    record.first_poll_at = self.clock()
                self._lock.notify_all()

    def record_download_attempt(self, task_id: str) -> int:
        """Count one attempt to fetch the task's video; return how many there have been."""
        with self._lock:
            record = self._tasks[task_id]
            record.downloads += 1
            self._lock.notify_all()
            return record.downloads

    def record_download_complete(self, task_id: str) -> None:
        """Count one download answer whose body was sent to its end."""
        with self._lock:
            self._tasks[task_id].completed_downloads += 1
            self._lock.notify_all()

    def video_sha256(self, task_id: str) -> str:
        """SHA-256 of the video the task serves, from its size, shape and fault fixed at submit
        time (``serve_non_mp4`` is applied per download and is not part of it); ``KeyError`` if
        the task is unknown. What a test compares an archived file with."""
        record = self.task(task_id)
        return video_sha256(
            record.task_id, record.video_size_bytes, shape=record.shape, fault=record.video_fault
        )

    def video_size(self, task_id: str) -> int:
        """Byte size of the video the task serves; ``KeyError`` if the task is unknown."""
        return self.task(task_id).video_layout().total

    def wait_until(self, predicate: Callable[[EmulatorState], bool], timeout: float) -> bool:
        """Block until ``predicate(state)`` holds, re-checked after every recorded call, or until
        ``timeout`` seconds pass; returns whether it holds. For tests driving another process."""
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self), timeout)

    def polls(self, task_id: str) -> int:
        """How many status reads the task has had."""
        return self.task(task_id).polls

    def downloads(self, task_id: str) -> int:
        """How many attempts to fetch the task's video there have been (cut ones included)."""
        return self.task(task_id).downloads

    @property
    def submission_attempts(self) -> int:
        """Every POST that reached the submit handler, refused ones included."""
        with self._lock:
            return self._submission_attempts

    @property
    def submission_count(self) -> int:
        """Accepted submits, i.e. tasks created (and paid for)."""
        with self._lock:
            return len(self._submissions)

    @property
    def submissions(self) -> list[dict[str, Any]]:
        """Copies of the accepted request bodies, in order."""
        with self._lock:
            return copy.deepcopy(self._submissions)

    def add_upload(self, filename: str, content_type: str, extension: str, data: bytes) -> Upload:
        """Store an uploaded image under a fresh name and return it."""
        with self._lock:
            now = self.clock()
            name = f"img_{new_ulid(now, self._rng)}.{extension}".lower()
            upload = Upload(name, filename, content_type, data, now)
            self._uploads[name] = upload
            return upload

    def upload(self, name: str) -> Upload | None:
        """The stored upload called ``name``, if any."""
        with self._lock:
            return self._uploads.get(name)

    def sign(self, task_id: str, expires: int) -> str:
        """Signature binding a video URL to its task and expiry, as a CDN signed URL does."""
        message = f"{task_id}\n{expires}".encode()
        return hmac.new(self._url_key, message, hashlib.sha256).hexdigest()[:32]

    def signature_ok(self, task_id: str, expires: str, signature: str) -> bool:
        """True if ``signature`` is what :meth:`sign` gives for this task and ``expires``."""
        if not (expires.isascii() and expires.isdigit()):
            return False
        return hmac.compare_digest(self.sign(task_id, int(expires)), signature)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able summary of everything above, as of the clock's now."""
        with self._lock:
            now = self.clock()
            return {
                "now": now,
                "submission_attempts": self._submission_attempts,
                "submission_count": len(self._submissions),
                "submissions": copy.deepcopy(self._submissions),
                "used_balance": self._used_balance(now),
                "tasks": {tid: task.as_dict(now) for tid, task in self._tasks.items()},
                "uploads": [
                    {
                        "name": upload.name,
                        "filename": upload.filename,
                        "content_type": upload.content_type,
                        "bytes": len(upload.data),
                        "created_at": upload.created_at,
                    }
                    for upload in self._uploads.values()
                ],
            }
