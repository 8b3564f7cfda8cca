"""Named spend limits kept on the Prefect server: shared by every run, worker and machine.

The rule and the ledger are pure (:mod:`omniflash_prefect.core.spending`); this module keeps them
where every run that can reach the Prefect API can also reach them, with no service of its own:

* **the limit and its ledger** are a block document of type ``omniflash-spend-limit``
  (:class:`OmniFlashSpendLimit`), so a limit is made with ``omniflash spend-limit set``, or in the
  UI's Blocks page like any other block. A block has no size cap, unlike a variable (5,000
  characters), and a ledger holds a window's settlements;
* **the lock** is a global concurrency limit of one slot, ``omniflash-spend-<name>``. Every change
  reads the ledger, applies the pure rule and writes it back while holding that slot, so
  reservations are atomic across processes and machines. The slot is taken with a lease: if its
  holder is killed mid-change, the server gives the slot back when the lease ends;
* **the view** is a variable, ``omniflash-spend-<name>``, rewritten with every change (spent,
  reserved, remaining, window start), for the UI's Variables page and for flows to read;
* **each settlement** is an ``omniflash.spend.settled`` event (limit, amount, task id, run), and
  each refusal an ``omniflash.spend.refused`` event.

A run reserves through a :class:`~omniflash_prefect.video.spend_holds.SpendLimitHold`, under a
lease it renews; the reservations of a killed run are dropped by the first change after its lease
ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeVar

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import BlockDocumentUpdate, VariableCreate, VariableUpdate
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import flow_run
from pydantic import Field, ValidationError

from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.spending import (
    MAX_ROLLING_HOURS,
    SpendLimit,
    SpendLimitView,
    checked_name,
    price_class_of,
)
from omniflash_prefect.errors import SpendLimitNotFoundError, UsageError

T = TypeVar("T")

BLOCK_TYPE_SLUG: Final = "omniflash-spend-limit"
SETTLED_EVENT: Final = "omniflash.spend.settled"
#: A video the limit would not start, for an Automation to notify someone.
REFUSED_EVENT: Final = "omniflash.spend.refused"
#: The lock's lease: the least Prefect allows. A change holds the lock for a few API calls.
LOCK_LEASE_SECONDS: Final = 60.0
#: How long a change may wait for the lock before it gives up (the holder would be long dead).
LOCK_TIMEOUT_SECONDS: Final = 300.0


def utc_now() -> datetime:
    """The clock of every spend limit rule (one place, so a test can move it to tomorrow)."""
    return datetime.now(UTC)


def lock_name(name: str) -> str:
    """The global concurrency limit that serialises changes to the limit ``name``."""
    return f"omniflash-spend-{name}"


def variable_name(name: str) -> str:
    """The variable that shows the limit ``name`` in the UI."""
    return f"omniflash-spend-{name}"


class OmniFlashSpendLimit(Block):
    """A spend limit shared by every run that names it (``spend_limit=`` / ``--spend-limit``).

    Runs reserve a video's estimated cost before submitting it and settle its real cost when it
    is known; the ledger below is theirs to keep. Set the limit here or with
    ``omniflash spend-limit set NAME --per-day AMOUNT``.
    """

    _block_type_name: ClassVar[str] = "Omni-Flash-Ext Spend Limit"
    _block_type_slug: ClassVar[str] = BLOCK_TYPE_SLUG
    _description: ClassVar[str] = (
        "What every Omni-Flash-Ext run naming this limit may spend together, per UTC day or per "
        "rolling window of hours."
    )
    _documentation_url: ClassVar[Any] = "https://docs.apimart.ai"
    _code_example: ClassVar[str] = """
```python
from omniflash_prefect.spend_limits import OmniFlashSpendLimit

limit = OmniFlashSpendLimit.load("BLOCK_NAME")  # pass its name as spend_limit= to a flow
print(limit.limit, limit.rolling_hours)
```
"""

    limit: float = Field(gt=0, description="What all runs together may spend in one window.")
    rolling_hours: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ROLLING_HOURS,
        description="A rolling window of this many hours instead of the UTC day.",
    )
    ledger: dict[str, Any] = Field(
        default_factory=dict,
        description="Kept by the runs: settlements, reservations in flight, prices seen. Do not "
        "edit.",
    )


def _limit_of(name: str, data: dict[str, Any]) -> SpendLimit:
    return SpendLimit.model_validate(
        {
            **(data.get("ledger") or {}),
            "name": name,
            "limit": data["limit"],
            "rolling_hours": data.get("rolling_hours"),
        }
    )


def _document_of(limit: SpendLimit) -> dict[str, Any]:
    ledger = limit.model_dump(mode="json", exclude={"name", "limit", "rolling_hours"})
    return {"limit": limit.limit, "rolling_hours": limit.rolling_hours, "ledger": ledger}


async def _read_document(client: PrefectClient, name: str) -> tuple[uuid.UUID, SpendLimit]:
    try:
        document = await client.read_block_document_by_name(name, BLOCK_TYPE_SLUG)
    except ObjectNotFound:
        raise SpendLimitNotFoundError(
            f"no spend limit named {name!r} on the Prefect server; create it with "
            f"`omniflash spend-limit set {name} --per-day AMOUNT`"
        ) from None
    return document.id, _limit_of(name, document.data)


async def _show(client: PrefectClient, view: SpendLimitView) -> None:
    """Rewrite the limit's variable, the view the UI lists."""
    value = view.model_dump(mode="json")
    name = variable_name(view.name)
    try:
        await client.update_variable(VariableUpdate(name=name, value=value))
    except httpx.HTTPStatusError as exc:  # a 404 the first time: no variable yet
        if exc.response.status_code != 404:
            raise
        await client.create_variable(VariableCreate(name=name, value=value, tags=["omniflash"]))


async def _take_lock(client: PrefectClient, name: str) -> uuid.UUID:
    """Take the one slot of the limit's lock with a lease, waiting as the server advises (its
    ``Retry-After``); the lease's id. A lock that is missing (a limit created in the UI's Blocks
    page) is made first."""
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    while True:
        try:
            response = await client.increment_concurrency_slots_with_lease(
                names=[lock_name(name)],
                slots=1,
                mode="concurrency",
                lease_duration=LOCK_LEASE_SECONDS,
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(float(exc.response.headers.get("Retry-After", 0.1)))
            continue
        granted = response.json()
        lease = uuid.UUID(granted["lease_id"])
        if granted.get("limits"):
            return lease
        # No such limit: nothing was held. Make it, then take it.
        await client.release_concurrency_slots_with_lease(lease)
        await _make_lock(client, name)


async def _make_lock(client: PrefectClient, name: str) -> None:
    """Make the limit's lock (a one-slot global concurrency limit), if no one else has."""
    with contextlib.suppress(ObjectAlreadyExists):
        await client.upsert_global_concurrency_limit_by_name(lock_name(name), 1)


@contextlib.asynccontextmanager
async def _locked(client: PrefectClient, name: str) -> AsyncIterator[None]:
    """Hold the limit's lock: the one slot of its global concurrency limit, with a lease the
    server ends by itself if this process dies holding it."""
    lease = await _take_lock(client, name)
    try:
        yield
    finally:
        await client.release_concurrency_slots_with_lease(lease)


async def change_limit(
    name: str, change: Callable[[SpendLimit, datetime], T]
) -> tuple[T, SpendLimitView]:
    """Apply ``change`` to the limit's ledger under its lock, and show the result.

    The ledger is read, pruned (expired holders and their reservations dropped), changed and
    written back while the lock is held; ``change`` gets the clock's ``now``. A change that
    changed nothing (a video told to wait, a task counted already) writes nothing.
    """
    async with get_client() as client, _locked(client, name):
        document_id, limit = await _read_document(client, name)
        before = _document_of(limit)
        now = utc_now()
        limit.prune(now)
        result = change(limit, now)
        view = limit.view(now)
        after = _document_of(limit)
        if after != before:
            await client.update_block_document(
                document_id, BlockDocumentUpdate(data=after, merge_existing_data=False)
            )
            await _show(client, view)
    return result, view


async def read_spend_limit(name: str) -> SpendLimit:
    """The limit ``name`` as stored (no lock: a reading, not a change)."""
    async with get_client() as client:
        return (await _read_document(client, checked_name(name)))[1]


async def list_spend_limits() -> list[SpendLimit]:
    """Every spend limit on the server, by name."""
    async with get_client() as client:
        try:
            documents = await client.read_block_documents_by_type(BLOCK_TYPE_SLUG)
        except ObjectNotFound:
            return []  # the block type was never registered: no limit was ever set
    limits = [_limit_of(d.name, d.data) for d in documents if d.name and not d.is_anonymous]
    return sorted(limits, key=lambda limit: limit.name)


async def define_spend_limit(
    name: str, limit: float, rolling_hours: int | None = None
) -> SpendLimitView:
    """Create the limit, or change its amount and window (its ledger is kept)."""
    checked_name(name)
    try:
        checked = SpendLimit(name=name, limit=limit, rolling_hours=rolling_hours)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid spend limit {name!r}: {problems}") from None
    async with get_client() as client:
        await _make_lock(client, name)
    try:
        await OmniFlashSpendLimit(limit=limit, rolling_hours=rolling_hours).asave(name)
    except ValueError:  # it exists: change it under its lock, keeping the ledger
        pass
    else:
        async with get_client() as client:
            view = checked.view(utc_now())
            await _show(client, view)
        return view

    def redefine(stored: SpendLimit, now: datetime) -> None:
        stored.limit = limit
        stored.rolling_hours = rolling_hours

    return (await change_limit(name, redefine))[1]


async def delete_spend_limit(name: str) -> None:
    """Remove the limit, its lock and its variable (its settlements' events stay)."""
    async with get_client() as client:
        try:
            document = await client.read_block_document_by_name(checked_name(name), BLOCK_TYPE_SLUG)
        except ObjectNotFound:
            raise SpendLimitNotFoundError(f"no spend limit named {name!r}") from None
        await client.delete_block_document(document.id)
        with contextlib.suppress(ObjectNotFound):
            await client.delete_global_concurrency_limit_by_name(lock_name(name))
        with contextlib.suppress(ObjectNotFound):
            await client.delete_variable_by_name(variable_name(name))


def current_run() -> str | None:
    """The flow run this code runs in, named in the ledger and the events."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def _emit(event: str, view: SpendLimitView, **payload: object) -> None:
    """An ``omniflash.spend.*`` event about the limit, with its numbers, related to the run."""
    run = current_run()
    related = (
        [{"prefect.resource.id": f"prefect.flow-run.{run}", "prefect.resource.role": "flow-run"}]
        if run
        else []
    )
    emit_event(
        event,
        resource={
            "prefect.resource.id": f"omniflash.spend-limit.{view.name}",
            "prefect.resource.name": view.name,
        },
        related=related,
        payload={
            "limit": view.name,
            **payload,
            "run": run,
            "spent": view.spent,
            "reserved": view.reserved,
            "limit_amount": view.limit,
            "window_start": view.window_start.isoformat(),
        },
    )


def emit_refused(
    view: SpendLimitView, *, estimate: float | None, price_class: str, key: str
) -> None:
    """The ``omniflash.spend.refused`` event of a video the limit would not start."""
    _emit(REFUSED_EVENT, view, estimate=estimate, price_class=price_class, key=key)


def emit_settled(
    view: SpendLimitView, *, task_id: str, amount: float, added: float, estimated: bool
) -> None:
    """The ``omniflash.spend.settled`` event of one settlement."""
    _emit(SETTLED_EVENT, view, amount=amount, added=added, estimated=estimated, task_id=task_id)


async def record_settlement(
    name: str, task_id: str, cost: float | None, request: VideoRequest | None = None
) -> float:
    """Count a task's cost on the limit without a reservation (``omniflash fetch``): what it
    added, 0 when the task was already counted at that cost."""
    price_class = price_class_of(request) if request is not None else None

    def settle(limit: SpendLimit, now: datetime) -> float:
        return limit.settle(task_id, cost, now, price_class=price_class, run=current_run())

    added, view = await change_limit(checked_name(name), settle)
    if cost is not None:
        emit_settled(view, task_id=task_id, amount=cost, added=added, estimated=False)
    return added


async def must_wait(name: str, price_class: str, estimate: float | None) -> bool:
    """Whether a video would be told to wait now, from a reading without the lock: while it
    would, the lock is left to those who can start or settle."""
    limit = await read_spend_limit(name)
    return limit.decide(utc_now(), price_class, limit.estimate(price_class, estimate)) == "wait"
