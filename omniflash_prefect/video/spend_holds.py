"""A run's reservations on what may be spent: a :data:`SpendHold` reserves a video's estimate
before it is sent (waiting while videos in flight may leave room, else raising
:class:`SpendLimitReachedError`; ``paid``: an earlier run paid for it, so it is held whatever the
rule says), then settles its cost (None: its estimate counts) or releases it (it cost nothing).
Two kinds share the rule of :mod:`omniflash_prefect.core.spending`: :class:`BudgetHold`, a
batch's own budget kept in memory, and :class:`SpendLimitHold`, a named spend limit shared with
every other run (its ledger is kept on the Prefect server by
:mod:`omniflash_prefect.video.spend_limits`).

A :class:`SpendLimitHold` holds its run's reservations under one holder id with a lease it renews
every third of ``OMNIFLASH_SPEND_LEASE_SECONDS`` while videos are in flight, so a killed run's
reservations go when the lease ends. The changes it makes while the limit's lock is taken are
queued and written together: the rows of a batch that reserve or settle at once cost one change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.spending import (
    Budget,
    SpendLimit,
    SpendLimitView,
    checked_name,
    price_class_of,
    refusal_message,
)
from omniflash_prefect.errors import SpendLimitReachedError
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.spend_limits import (
    change_limit,
    current_run,
    emit_refused,
    emit_settled,
    must_wait,
    read_spend_limit,
)

T = TypeVar("T")

#: The longest pause between two looks at a limit a video is waiting on.
_LONGEST_WAIT: Final = 5.0

_log = logging.getLogger(__name__)


class BudgetHold:
    """A batch's own budget (:class:`~omniflash_prefect.core.spending.Budget`) as a hold: a
    video told to wait waits until a video of the batch settles or is released."""

    name = "the batch's budget"

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._changed = asyncio.Condition()

    async def reserve(
        self, key: str, request: VideoRequest, estimate: float | None = None, *, paid: bool = False
    ) -> float | None:
        async with self._changed:
            while not paid and (decision := self.budget.decide(request, estimate)) != "start":
                if decision == "refuse":
                    budget = self.budget
                    raise SpendLimitReachedError(
                        budget.refusal(),
                        limit="budget",
                        spent=budget.spent,
                        reserved=budget.committed - budget.spent,
                        amount=budget.amount or 0.0,
                    )
                await self._changed.wait()
            return self.budget.reserve(key, request, estimate)

    async def settle(
        self, key: str, task_id: str | None, cost: float | None, request: VideoRequest
    ) -> float:
        async with self._changed:
            spent = self.budget.spent
            self.budget.settle(key, request, cost, task_id)
            self._changed.notify_all()
            return self.budget.spent - spent

    async def release(self, key: str) -> None:
        async with self._changed:
            self.budget.release(key)
            self._changed.notify_all()


async def settle_holds(
    holds: list[SpendHold],
    key: str,
    request: VideoRequest,
    *,
    paid: bool,
    task_id: str | None = None,
    cost: float | None = None,
) -> None:
    """Settle a video on every hold (``paid``: its ``cost``, None counting its estimate), or
    release it (not paid). Never raises: the video's outcome is the run's, and what a hold could
    not write is released by its lease; the log says how to count a paid task by hand."""
    for hold in holds:
        try:
            if paid:
                await hold.settle(key, task_id, cost, request)
            else:
                await hold.release(key)
        except Exception as exc:
            hint = (
                f"; count it with `omniflash fetch {task_id} --spend-limit {hold.name}`"
                if paid and task_id and isinstance(hold, SpendLimitHold)
                else ""
            )
            _run_logger().warning(
                "Could not settle %s on %s (%s)%s", task_id or key, hold.name, exc, hint
            )


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The current run's logger, so a warning shows on the run in the UI; else this module's."""
    try:
        return get_run_logger()
    except MissingContextError:
        return _log


async def _apply_together(
    name: str, queued: list[tuple[Callable[[SpendLimit, datetime], Any], asyncio.Future[Any]]]
) -> None:
    """Apply queued changes in order in one change of the limit; each future gets its own
    result (with the view after all of them) or its own error."""

    def every(limit: SpendLimit, now: datetime) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        for change, _ in queued:
            try:
                outcomes.append((True, change(limit, now)))
            except Exception as exc:  # one change's error is its caller's, not the others'
                outcomes.append((False, exc))
        return outcomes

    try:
        outcomes, view = await change_limit(name, every)
    except BaseException as exc:
        for _, done in queued:
            if not done.done():
                done.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    for (_, done), (ok, outcome) in zip(queued, outcomes, strict=True):
        if not done.done():
            if ok:
                done.set_result((outcome, view))
            else:
                done.set_exception(outcome)


class SpendLimitHold:
    """One run's reservations on a named limit, under one holder id whose lease it renews.
    Leaving the ``async with`` gives back whatever is still held."""

    def __init__(self, name: str, *, lease_seconds: float | None = None) -> None:
        self.name = checked_name(name)
        self.holder = uuid.uuid4().hex
        self.run = current_run()
        seconds = lease_seconds or OmniFlashSettings().spend_lease_seconds
        self.lease = timedelta(seconds=seconds)
        self._held: dict[str, tuple[str, float | None]] = {}
        self._settled = asyncio.Event()
        self._renewing: asyncio.Task[None] | None = None
        #: Changes waiting for the lock, and the one writer of them at a time (see _change).
        self._queued: list[tuple[Callable[[SpendLimit, datetime], Any], asyncio.Future[Any]]] = []
        self._writing = asyncio.Lock()

    async def __aenter__(self) -> SpendLimitHold:
        await read_spend_limit(self.name)  # a missing limit fails before anything is sent
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewing
        if not self._held:
            return
        held, self._held = dict(self._held), {}

        def give_back(limit: SpendLimit, now: datetime) -> None:
            if self.holder not in limit.holders:
                return  # lapsed: already dropped with the holder
            for price_class, estimate in held.values():
                limit.unreserve(self.holder, price_class, estimate)

        try:
            await self._change(give_back)
        except Exception as exc:  # never over the run's own outcome: the lease frees them
            _log.warning(
                "Could not give back %d reservations on spend limit %r (they are released when "
                "the lease passes): %s",
                len(held),
                self.name,
                exc,
            )

    async def reserve(
        self, key: str, request: VideoRequest, estimate: float | None = None, *, paid: bool = False
    ) -> float | None:
        """Reserve ``estimate``, else the highest price seen for the video's class (None: a
        probe of an unknown price)."""
        price_class = price_class_of(request)
        pause = 0.25
        while True:

            def admit(limit: SpendLimit, now: datetime) -> tuple[str, float | None, str]:
                self._forget_if_lapsed(limit)
                expected = limit.estimate(price_class, estimate)
                decision = "start" if paid else limit.decide(now, price_class, expected)
                if decision == "start":
                    limit.reserve(self.holder, now, self.lease, price_class, expected, self.run)
                return decision, expected, refusal_message(limit, now, expected)

            self._settled.clear()
            if not paid and await must_wait(self.name, price_class, estimate):
                await self._wait(pause)
                pause = min(pause * 2, _LONGEST_WAIT)
                continue
            (decision, expected, why), view = await self._change(admit)
            if decision == "start":
                self._held[key] = (price_class, expected)
                self._keep_renewing()
                return expected
            if decision == "refuse":
                emit_refused(view, estimate=expected, price_class=price_class, key=key)
                raise SpendLimitReachedError(
                    f"{why}; nothing was sent",
                    limit=self.name,
                    spent=view.spent,
                    reserved=view.reserved,
                    amount=view.limit,
                )
            await self._wait(pause)
            pause = min(pause * 2, _LONGEST_WAIT)

    async def _wait(self, seconds: float) -> None:
        """Until a video of this run settles, or ``seconds``, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), seconds)

    async def settle(
        self, key: str, task_id: str | None, cost: float | None, request: VideoRequest
    ) -> float:
        """Count the video's cost (an unknown one's estimate counts until an exact cost of the
        same task replaces it); returns what it added."""
        counted: dict[str, float | None] = {}

        def settle(limit: SpendLimit, now: datetime) -> float:
            self._forget_if_lapsed(limit)
            held = self._held.pop(key, None)
            if held is not None:
                limit.unreserve(self.holder, *held)
            price_class = price_class_of(request)
            estimate = held[1] if held is not None else limit.estimate(price_class, None)
            counted["amount"] = cost if cost is not None else estimate
            return limit.settle(
                task_id or key, cost, now, price_class=price_class, estimate=estimate, run=self.run
            )

        added, view = await self._change(settle)
        self._settled.set()
        amount = counted.get("amount")
        if amount is not None:
            emit_settled(
                view, task_id=task_id or key, amount=amount, added=added, estimated=cost is None
            )
        return added

    async def release(self, key: str) -> None:
        if key not in self._held:
            return

        def give_back(limit: SpendLimit, now: datetime) -> None:
            self._forget_if_lapsed(limit)
            held = self._held.pop(key, None)
            if held is not None:
                limit.unreserve(self.holder, *held)

        await self._change(give_back)
        self._settled.set()

    async def _change(
        self, change: Callable[[SpendLimit, datetime], T]
    ) -> tuple[T, SpendLimitView]:
        """Apply ``change`` with every other change of this run queued meanwhile, in one hold of
        the lock: the rows of a batch that reserve or settle together cost one change, not one
        each, so a busy limit is not held up by one run's many videos."""
        done: asyncio.Future[tuple[T, SpendLimitView]] = asyncio.get_running_loop().create_future()
        self._queued.append((change, done))
        async with self._writing:
            if not done.done():
                queued, self._queued = self._queued, []
                await _apply_together(self.name, queued)
        return await done

    def _forget_if_lapsed(self, limit: SpendLimit) -> None:
        """When this run's lease lapsed (renewals did not get through), the ledger has already
        dropped its reservations: forget them here too, and hold under a new id from now on, so
        nothing is given back twice."""
        if self._held and self.holder not in limit.holders:
            _log.warning(
                "The lease on spend limit %r lapsed; %d reservations were released",
                self.name,
                len(self._held),
            )
            self._held.clear()
            self.holder = uuid.uuid4().hex

    def _keep_renewing(self) -> None:
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        """Move the holder's lease on every third of it while videos are held."""
        every = self.lease.total_seconds() / 3
        while self._held:
            await asyncio.sleep(every)
            if not self._held:
                return

            def renew(limit: SpendLimit, now: datetime) -> None:
                self._forget_if_lapsed(limit)
                if self._held:
                    limit.renew(self.holder, now, self.lease, self.run)

            try:
                await self._change(renew)
            except Exception as exc:  # the next renewal may get through; the lease has room
                _log.warning("Could not renew the lease on spend limit %r: %s", self.name, exc)


#: What a video's spending goes through, the same way whichever kind it is.
SpendHold = BudgetHold | SpendLimitHold
