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

**Records** (JSON, in the run's result storage, next to the key's lock): ``<key>-intent`` is a
:class:`SubmissionRecord`, whose ``state`` is ``in-flight`` (sent, answer not read yet: outcome
unknown if its sender died), ``submitted`` (accepted: the task id, paid for), ``refused``
(certainly not accepted), ``released`` (freed by hand with :func:`release_submission`), or, once a
sweep has seen its video through (:mod:`omniflash_prefect.video.salvage`), ``archived``,
``failed`` (at the provider, free) or ``expired`` (paid and lost). Besides the state it keeps what
a sweep needs to finish the video without the run that paid for it: the request, where the run
archives its videos, its credentials block and spend limit, and the flow run. The
``submit_video`` task also leaves its cached result, the task id, under ``<key>``.

**The claim.** :func:`submit_once` reads the record, marks it in flight, sends and records the
answer while holding the key's claim, so callers that race wait and then read the one answer. A
submit refused with a 429 is recorded ``refused`` while the client backs off, so a process killed
then leaves a key that submits again, not one of unknown outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from uuid import UUID

from prefect.context import FlowRunContext
from prefect.filesystems import WritableFileSystem
from prefect.results import ResultStore
from prefect.runtime import flow_run, task_run
from pydantic import BaseModel, ConfigDict, Field

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
from omniflash_prefect.video.setup import VideoSetup

_KEY = re.compile(r"omniflash-submit-[0-9a-f]{64}")
_TAKES_GUARD = threading.Lock()

RecordState = Literal[
    "in-flight", "submitted", "refused", "released", "archived", "failed", "expired"
]
#: States in which the record holds a task that was paid for.
PAID_STATES: Final = ("submitted", "archived", "expired")


class SubmissionRecord(BaseModel):
    """What is recorded under a submission key (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    state: RecordState
    at: datetime = Field(description="When this state was recorded (UTC).")
    fingerprint: str = Field(description="The request's fingerprint.")
    task_id: str | None = None
    request: VideoRequest | None = Field(
        default=None, description="What was asked: the video's media is checked against it."
    )
    setup: VideoSetup | None = Field(
        default=None,
        description="Where the run archives its videos, with which credentials block; None: "
        "the run did not say (the ``submit_video`` task), so a sweep uses its own.",
    )
    flow_run_id: str | None = Field(default=None, description="The flow run that submitted.")
    spend_limit: str | None = Field(default=None, description="Where its cost is counted.")
    location: str | None = Field(default=None, description="Where it was archived.")
    cost: float | None = None

    @property
    def paid(self) -> bool:
        """The provider accepted the request: a task exists and was paid for."""
        return self.state in PAID_STATES

    def moved(self, state: RecordState, **changes: Any) -> SubmissionRecord:
        """The record in ``state`` as of now, with ``changes``."""
        return self.model_copy(update={"state": state, "at": datetime.now(UTC), **changes})


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
    """Where the record of submission ``key`` is kept."""
    return f"{key}-intent"


async def read_submission(store: ResultStore, key: str) -> SubmissionRecord | None:
    """The record of ``key``, or None when nothing was ever recorded."""
    if not await store.aexists(intent_key(key)):
        return None
    stored = (await store.aread(intent_key(key))).result
    try:
        return SubmissionRecord.model_validate(stored)
    except ValueError:
        raise OmniFlashError(f"unreadable submission record {intent_key(key)!r}") from None


async def write_submission(store: ResultStore, key: str, record: SubmissionRecord) -> None:
    """Record ``record`` under ``key`` (callers hold the key's claim, or write a state no one
    else writes: a sweep's verdict on a paid task)."""
    await store.awrite(record.model_dump(mode="json"), key=intent_key(key))


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
    return found is not None and found.task_id is not None


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
    *,
    setup: VideoSetup | None = None,
    spend_limit: str | None = None,
) -> Submitted:
    """Send ``request`` at most once per ``key``, however many callers race for it.

    Under the key's claim: a recorded task id is returned as it is; a request recorded in flight
    (its sender died, or could not tell whether it was accepted) raises
    :class:`SubmissionOutcomeUnknownError` and is never resent; otherwise the record is marked in
    flight (with ``setup`` and ``spend_limit``, for a sweep), the request sent with a client from
    ``connect``, and the answer recorded before the claim is let go.
    """
    store = record_store(storage)
    async with claim(key, storage):
        found = await read_submission(store, key)
        if found is not None and found.task_id is not None:
            return Submitted(found.task_id, sent=False)
        if found is not None and found.state == "in-flight":
            raise SubmissionOutcomeUnknownError(request.fingerprint(), submission_key=key)
        run_id = flow_run.get_id()
        in_flight = SubmissionRecord(
            state="in-flight",
            at=datetime.now(UTC),
            fingerprint=request.fingerprint(),
            request=request,
            setup=setup,
            flow_run_id=str(run_id) if run_id else None,
            spend_limit=spend_limit,
        )

        async def refused_while_waiting(seconds: float) -> None:
            # A 429 certainly created no task: a process killed during the back-off leaves a
            # key that simply submits again.
            await write_submission(store, key, in_flight.moved("refused"))
            await asyncio.sleep(seconds)
            await write_submission(store, key, in_flight.moved("in-flight"))

        async with await connect() as client:  # before the mark: a failure here sends nothing
            await write_submission(store, key, in_flight)
            try:
                task_id = await client.submit(request, between_attempts=refused_while_waiting)
            except SubmissionOutcomeUnknownError as exc:
                raise SubmissionOutcomeUnknownError(
                    exc.fingerprint, exc.cause, submission_key=key
                ) from exc
            except OmniFlashError as exc:
                if submission_certainly_refused(exc):
                    await write_submission(store, key, in_flight.moved("refused"))
                raise
        # Recorded before the claim is let go: whoever waits reads it, and a process killed
        # from here on still leaves the paid task id behind.
        await write_submission(store, key, in_flight.moved("submitted", task_id=task_id))
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
        if found is not None and found.task_id is not None:
            if wanted in (None, found.task_id):
                return "unchanged"
            raise SubmissionReleaseError(
                f"key {key} already holds task {found.task_id}; it is not changed to {wanted}"
            )
        if found is None or found.state != "in-flight":
            if wanted is None:
                return "unchanged"
            found = found or SubmissionRecord(
                state="refused", at=datetime.now(UTC), fingerprint="unknown"
            )
        if wanted is not None:
            await write_submission(store, key, found.moved("submitted", task_id=wanted))
            return "recorded"
        await write_submission(store, key, found.moved("released"))
        return "released"
