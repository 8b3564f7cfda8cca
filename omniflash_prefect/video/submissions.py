"""One paid video per submission key: what a key is, what is recorded under it, and the claim.

The provider has no idempotency key of its own, so these records are all that stands between a
pipeline and a double charge.

**Keys.** ``omniflash-submit-<sha256 of the request's fingerprint and a scope>``. The scope is:

* the ``idempotency_key`` when one is given: one video per request and key, across runs;
* else the flow run and the call's *take*: the n-th call with this very request in this attempt
  of the run (take 0 is the first). Prefect builds a fresh flow run context for every attempt and
  shares it with the run's tasks and threads, so a retried run numbers its calls the same way and
  reuses its videos one for one, while two identical calls in one run are two takes, two videos;
* outside any flow run, the task run: every call is its own video.

**Records** (JSON, in the submit task's result storage, next to its lock):

* ``<key>``: the task id, the submit task's cached result (a later call is ``Cached``);
* ``<key>-intent``: ``"in-flight"`` (sent, answer not read yet: outcome unknown if its sender
  died), ``{"task_id": ...}`` (accepted), ``"refused"`` (certainly not accepted) or
  ``"released"`` (freed by hand with :func:`release_submission`).

**The claim.** :func:`submit_once` reads the intent, marks it in flight, sends and records the
answer while holding the key's claim, so callers that race wait and then read the one answer.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal
from uuid import UUID

from prefect.context import FlowRunContext
from prefect.filesystems import WritableFileSystem
from prefect.results import ResultStore
from prefect.runtime import flow_run, task_run

from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.core.models import validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.retry import submission_certainly_refused
from omniflash_prefect.errors import (
    OmniFlashError,
    SubmissionOutcomeUnknownError,
    SubmissionReleaseError,
)
from omniflash_prefect.video.claims import claim, current_record_storage, record_store

IN_FLIGHT: Final = "in-flight"
REFUSED: Final = "refused"
RELEASED: Final = "released"
_KEY = re.compile(r"omniflash-submit-[0-9a-f]{64}")
_TAKES_GUARD = threading.Lock()

State = Literal["absent", "in-flight", "submitted", "refused", "released"]


def submission_key(request: VideoRequest, idempotency_key: str | None, *, take: int = 0) -> str:
    """The record key of one submission (see the module docstring for the scope)."""
    scope = idempotency_key or _run_scope(take)
    digest = hashlib.sha256(f"{request.fingerprint()}|{scope}".encode()).hexdigest()
    return f"omniflash-submit-{digest}"


def _run_scope(take: int) -> str:
    run_id = flow_run.get_id()
    if not run_id:
        return f"task-run-{task_run.get_id()}"
    # Take 0 keeps the scope of releases that knew no takes: their records still resume.
    return f"flow-run-{run_id}" + (f"/take-{take}" if take else "")


def call_take(request: VideoRequest, task_run_id: UUID | None) -> int:
    """This submit call's take: how many calls with the same request came before it in this
    attempt of the flow run (0 outside one). Asked again for the same task run, it answers the
    same, so a cache key and the task body agree."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return 0
    counters: dict[str, Any] = context.task_run_dynamic_keys
    memo = f"omniflash-take-of:{task_run_id}" if task_run_id else None
    with _TAKES_GUARD:  # the run's tasks may run in threads
        if memo is not None and memo in counters:
            return int(counters[memo])
        counted = f"omniflash-takes:{request.fingerprint()}"
        take = int(counters.get(counted, 0))
        counters[counted] = take + 1
        if memo is not None:
            counters[memo] = take
    return take


def intent_key(key: str) -> str:
    """Where the intent of submission ``key`` is recorded."""
    return f"{key}-intent"


@dataclass(frozen=True)
class Submission:
    """What the records say of one submission key."""

    state: State
    task_id: str | None = None


async def read_submission(store: ResultStore, key: str) -> Submission:
    """The recorded state of ``key`` (``absent`` when nothing was ever recorded)."""
    if not await store.aexists(intent_key(key)):
        return Submission("absent")
    intent = (await store.aread(intent_key(key))).result
    if isinstance(intent, dict) and isinstance(intent.get("task_id"), str):
        return Submission("submitted", validate_task_id(intent["task_id"]))
    if intent in (IN_FLIGHT, REFUSED, RELEASED):
        state: State = intent
        return Submission(state)
    raise OmniFlashError(f"unreadable submission record {intent_key(key)!r}: {intent!r}")


async def submission_recorded(
    request: VideoRequest, idempotency_key: str, store: ResultStore
) -> bool:
    """Whether a task id is recorded for this request and key (so running it again costs nothing
    and the video only needs polling). A hint read without the key's claim: a record being
    written at that moment reads as not there."""
    try:
        found = await read_submission(store, submission_key(request, idempotency_key))
    except (ValueError, OSError):
        return False
    return found.task_id is not None


@dataclass(frozen=True)
class Submitted:
    """The task id of a submission, and whether this call is the one that sent it."""

    task_id: str
    sent: bool


async def submit_once(
    request: VideoRequest,
    key: str,
    storage: WritableFileSystem,
    connect: Callable[[], Awaitable[OmniFlashClient]],
) -> Submitted:
    """Send ``request`` at most once per ``key``, however many callers race for it.

    Under the key's claim: a recorded task id is returned as it is; a request recorded in flight
    (its sender died, or could not tell whether it was accepted) raises
    :class:`SubmissionOutcomeUnknownError` and is never resent; otherwise the intent is marked in
    flight, the request sent with a client from ``connect``, and the answer recorded before the
    claim is let go.
    """
    store = record_store(storage)
    async with claim(key, storage):
        found = await read_submission(store, key)
        if found.task_id is not None:
            return Submitted(found.task_id, sent=False)
        if found.state == IN_FLIGHT:
            raise SubmissionOutcomeUnknownError(request.fingerprint(), submission_key=key)
        async with await connect() as client:  # before the mark: a failure here sends nothing
            await store.awrite(IN_FLIGHT, key=intent_key(key))
            try:
                task_id = await client.submit(request)
            except SubmissionOutcomeUnknownError as exc:
                raise SubmissionOutcomeUnknownError(
                    exc.fingerprint, exc.cause, submission_key=key
                ) from exc
            except OmniFlashError as exc:
                if submission_certainly_refused(exc):
                    await store.awrite(REFUSED, key=intent_key(key))
                raise
        # Recorded before the claim is let go: whoever waits reads it, and a process killed
        # from here on still leaves the paid task id behind.
        await store.awrite({"task_id": task_id}, key=intent_key(key))
    return Submitted(task_id, sent=True)


Released = Literal["released", "recorded", "unchanged"]


async def release_submission(
    key: str, storage: WritableFileSystem | None = None, *, task_id: str | None = None
) -> Released:
    """Resolve a submission key by hand, after checking the provider.

    With ``task_id`` (the task the interrupted submission did create), the key resumes that task:
    the next call with the key polls and archives it. Without, a key left in flight is freed: the
    next call with it sends the request again. A key that already holds a different task id is
    never changed (:class:`SubmissionReleaseError`). ``storage`` is where the records are kept
    (default: Prefect's result storage). Waits for a caller holding the key.
    """
    if not _KEY.fullmatch(key):
        raise SubmissionReleaseError(
            f"{key!r} is not a submission key (omniflash-submit-<64 hex digits>, as printed by "
            "SubmissionOutcomeUnknownError)"
        )
    wanted = validate_task_id(task_id) if task_id is not None else None
    storage = await current_record_storage(storage)
    store = record_store(storage)
    async with claim(key, storage):
        found = await read_submission(store, key)
        if found.task_id is not None:
            if wanted in (None, found.task_id):
                return "unchanged"
            raise SubmissionReleaseError(
                f"key {key} already holds task {found.task_id}; it is not changed to {wanted}"
            )
        if wanted is not None:
            await store.awrite({"task_id": wanted}, key=intent_key(key))
            return "recorded"
        if found.state != IN_FLIGHT:
            return "unchanged"
        await store.awrite(RELEASED, key=intent_key(key))
        return "released"
