"""Spend limits shared by every run that names them: the ledger and its rule, apart from storage.

A named spend limit caps what all runs naming it spend together, per UTC day or per rolling
window of hours. Its ledger (:class:`SpendLimit`) is one document that runs read and rewrite
under a lock (see :mod:`omniflash_prefect.video.spend_limits`). It holds:

* **settlements**, what each paid video cost, keyed by task id: a task is counted once however
  many runs settle it, and a later exact cost replaces an estimate counted for it;
* **holders**, one per run that holds reservations, with the sum of its estimates in flight and
  a lease it renews: a holder whose lease has passed (its process was killed) is dropped, and its
  reservations with it, so nothing stays reserved for ever and nothing is counted twice;
* the highest **price** seen per price class (duration and resolution), learnt by every run;
* spend per UTC **day**, the history ``omniflash spend`` shows.

The rule, the batch budget's across runs
----------------------------------------
A video starts when ``spent + reserved + estimate <= limit``. A video whose price class has no
estimate yet is a probe: one probe at a time across every class and holder, and only while
``spent + reserved < limit``. So runs racing for one limit overshoot it by at most one video's cost
in all (the probe's), as long as the estimates are not below the real prices. A video that would
fit once the reservations in flight settle waits; one that could not fit even then is refused.
Nothing here reads a clock: every rule takes ``now``.

A batch's own ``budget`` is the same rule over a ledger that lives in the batch run's memory
(:class:`Budget`): one rule for every cap on spending, whether one run or every run shares it.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, Field, field_validator

from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.errors import UsageError

#: How long a settled task is remembered beyond its window, so a late second settlement of it
#: (``omniflash fetch --spend-limit`` the morning after) replaces the first instead of adding.
SETTLEMENT_MEMORY: Final = timedelta(hours=48)
#: Days of history kept for ``omniflash spend``.
HISTORY_DAYS: Final = 90
#: The longest rolling window; a week covers every schedule we know of.
MAX_ROLLING_HOURS: Final = 168
#: Names are used for a block, a global concurrency limit and a variable: the strictest of the
#: three (lowercase letters, digits and dashes; a variable's underscores are derived).
NAME_PATTERN: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_EPSILON: Final = 1e-9

Decision = Literal["start", "wait", "refuse"]


def price_class_of(request: VideoRequest) -> str:
    """Videos of the same duration and resolution are assumed to cost the same: ``6s/720p``."""
    return f"{request.duration}s/{request.resolution}"


def checked_name(name: str) -> str:
    """The limit's name, or a :class:`UsageError` saying what a name may hold."""
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(
            f"spend limit name {name!r} must be 1-64 lowercase letters, digits and dashes, "
            "starting and ending with a letter or digit"
        )
    return name


def _money(value: float) -> float:
    return round(value, 6)


class Settlement(BaseModel):
    """What one task cost, when it was settled, and by which run."""

    amount: float = Field(ge=0)
    at: datetime
    run: str | None = None
    estimated: bool = Field(
        default=False, description="The cost was not known; the estimate was counted."
    )


class Holder(BaseModel):
    """A run holding reservations: their sum, their count, its probes, and its lease."""

    expires_at: datetime
    run: str | None = None
    reserved: float = Field(default=0.0, ge=0)
    videos: int = Field(default=0, ge=0)
    probes: list[str] = Field(default_factory=list, description="Price classes being probed.")


class DaySpend(BaseModel):
    """What one UTC day's settlements came to."""

    spent: float = 0.0
    videos: int = 0


class SpendLimitView(BaseModel):
    """A limit as people read it: ``omniflash spend-limit show``, its Prefect variable."""

    name: str
    limit: float
    period: str = Field(description="'UTC day' or 'N rolling hours'.")
    rolling_hours: int | None
    window_start: datetime
    spent: float
    reserved: float
    remaining: float
    videos: int = Field(description="Videos settled in the window.")
    in_flight: int = Field(description="Videos reserved and not yet settled.")
    holders: int = Field(description="Runs holding reservations now.")


class SpendLimit(BaseModel):
    """A named limit and its ledger (see the module docstring)."""

    name: str
    limit: float = Field(gt=0, description="What every run together may spend in one window.")
    rolling_hours: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ROLLING_HOURS,
        description="A rolling window of this many hours instead of the UTC day.",
    )
    settlements: dict[str, Settlement] = Field(default_factory=dict)
    holders: dict[str, Holder] = Field(default_factory=dict)
    prices: dict[str, float] = Field(default_factory=dict)
    unpriced: list[str] = Field(
        default_factory=list, description="Classes paid for at a price never learnt."
    )
    days: dict[str, DaySpend] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return checked_name(value)

    # -- the window ---------------------------------------------------------------------------

    @property
    def period(self) -> str:
        return "UTC day" if self.rolling_hours is None else f"{self.rolling_hours} rolling hours"

    def window(self) -> timedelta:
        return timedelta(hours=self.rolling_hours or 24)

    def window_start(self, now: datetime) -> datetime:
        """Midnight UTC of ``now``'s day, or ``rolling_hours`` before ``now``."""
        if self.rolling_hours is not None:
            return now - timedelta(hours=self.rolling_hours)
        return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    def live_holders(self, now: datetime) -> dict[str, Holder]:
        return {key: h for key, h in self.holders.items() if h.expires_at > now}

    def spent(self, now: datetime) -> float:
        start = self.window_start(now)
        return _money(sum(s.amount for s in self.settlements.values() if s.at >= start))

    def reserved(self, now: datetime) -> float:
        return _money(sum(h.reserved for h in self.live_holders(now).values()))

    def view(self, now: datetime) -> SpendLimitView:
        start = self.window_start(now)
        spent, reserved = self.spent(now), self.reserved(now)
        live = self.live_holders(now)
        return SpendLimitView(
            name=self.name,
            limit=self.limit,
            period=self.period,
            rolling_hours=self.rolling_hours,
            window_start=start,
            spent=spent,
            reserved=reserved,
            remaining=_money(max(self.limit - spent - reserved, 0.0)),
            videos=sum(1 for s in self.settlements.values() if s.at >= start),
            in_flight=sum(h.videos for h in live.values()),
            holders=len(live),
        )

    def prune(self, now: datetime) -> None:
        """Drop expired holders (their reservations go with them), settlements too old to be
        settled again, and history past ``HISTORY_DAYS``."""
        self.holders = self.live_holders(now)
        keep_from = self.window_start(now) - SETTLEMENT_MEMORY
        self.settlements = {k: s for k, s in self.settlements.items() if s.at >= keep_from}
        first_day = (now.astimezone(UTC) - timedelta(days=HISTORY_DAYS)).date().isoformat()
        self.days = {day: spend for day, spend in self.days.items() if day >= first_day}

    # -- the rule -----------------------------------------------------------------------------

    def estimate(self, price_class: str, given: float | None) -> float | None:
        """``given`` if any, else the highest price seen for the class (None: unknown)."""
        if given is not None:
            return given
        return self.prices.get(price_class)

    def decide(self, now: datetime, price_class: str, estimate: float | None) -> Decision:
        """Start a video of ``price_class`` now, wait for reservations to settle, or refuse it."""
        spent, reserved = self.spent(now), self.reserved(now)
        if estimate is None:
            if price_class in self.unpriced:
                return "refuse"  # paid at a price never learnt: no more probes of it
            if spent >= self.limit - _EPSILON:
                return "refuse"
            # One probe at a time across every class and holder: probes reserve nothing.
            probing = any(h.probes for h in self.live_holders(now).values())
            if probing or spent + reserved >= self.limit - _EPSILON:
                return "wait"
            return "start"
        if spent + estimate > self.limit + _EPSILON:
            return "refuse"  # would not fit even with nothing in flight
        if spent + reserved + estimate <= self.limit + _EPSILON:
            return "start"
        return "wait"

    # -- changes ------------------------------------------------------------------------------

    def renew(self, holder: str, now: datetime, lease: timedelta, run: str | None = None) -> Holder:
        """The holder's entry with its lease moved to ``now + lease`` (created if new)."""
        entry = self.holders.get(holder)
        if entry is None or entry.expires_at <= now:
            entry = Holder(expires_at=now + lease, run=run)
            self.holders[holder] = entry
        entry.expires_at = now + lease
        return entry

    def reserve(
        self,
        holder: str,
        now: datetime,
        lease: timedelta,
        price_class: str,
        estimate: float | None,
        run: str | None = None,
    ) -> None:
        """Hold ``estimate`` (or a probe of ``price_class``) for the holder's run."""
        entry = self.renew(holder, now, lease, run)
        entry.videos += 1
        if estimate is None:
            entry.probes.append(price_class)
        else:
            entry.reserved = _money(entry.reserved + estimate)

    def unreserve(self, holder: str, price_class: str, estimate: float | None) -> None:
        """Give back one reservation (settled or released). A holder whose lease passed has
        nothing left to give back: its reservations went with it."""
        entry = self.holders.get(holder)
        if entry is None:
            return
        entry.videos = max(entry.videos - 1, 0)
        if estimate is None:
            if price_class in entry.probes:
                entry.probes.remove(price_class)
        else:
            entry.reserved = _money(max(entry.reserved - estimate, 0.0))
        if entry.videos == 0:
            del self.holders[holder]  # a run with nothing in flight holds nothing

    def settle(
        self,
        key: str,
        cost: float | None,
        now: datetime,
        *,
        price_class: str | None = None,
        estimate: float | None = None,
        run: str | None = None,
    ) -> float:
        """Count what the task ``key`` cost; returns the amount it added (0 when already counted
        at that cost). ``cost`` None counts ``estimate`` (or nothing, and the class becomes
        unpriced): a later exact cost of the same task replaces it."""
        exact = cost is not None
        amount = cost if cost is not None else estimate
        if amount is None:
            if price_class is not None and price_class not in self.unpriced:
                self.unpriced.append(price_class)
            return 0.0
        if exact and amount > 0 and price_class is not None:  # a free video teaches no price
            self.prices[price_class] = max(amount, self.prices.get(price_class, 0.0))
            if price_class in self.unpriced:
                self.unpriced.remove(price_class)
        earlier = self.settlements.get(key)
        if earlier is not None and (not earlier.estimated or not exact):
            return 0.0  # counted once: an exact cost stands, an estimate does not add up
        at = earlier.at if earlier is not None else now
        self.settlements[key] = Settlement(amount=amount, at=at, run=run, estimated=not exact)
        day = self.days.setdefault(at.astimezone(UTC).date().isoformat(), DaySpend())
        added = _money(amount - (earlier.amount if earlier is not None else 0.0))
        day.spent = _money(day.spent + added)
        day.videos += 0 if earlier is not None else 1
        return added


class LimitDay(BaseModel):
    """One limit's settlements on one UTC day: a row of ``omniflash spend``."""

    day: str
    limit: str
    spent: float
    videos: int


def spend_history(limits: list[SpendLimit], first_day: str) -> list[LimitDay]:
    """Every limit's spend per UTC day from ``first_day`` (``YYYY-MM-DD``) on, by day and name."""
    rows = [
        LimitDay(day=day, limit=limit.name, spent=spend.spent, videos=spend.videos)
        for limit in limits
        for day, spend in limit.days.items()
        if day >= first_day
    ]
    return sorted(rows, key=lambda row: (row.day, row.limit))


def refusal_message(limit: SpendLimit, now: datetime, estimate: float | None) -> str:
    """Why a video was not started, with the limit's numbers."""
    view = limit.view(now)
    wanted = "a video of unknown price" if estimate is None else f"this video's {estimate:g}"
    return (
        f"spend limit {limit.name!r} ({limit.limit:g} per {limit.period}) cannot hold {wanted}: "
        f"spent {view.spent:g}, reserved {view.reserved:g} since "
        f"{view.window_start.isoformat(timespec='seconds')}"
    )


class Budget:
    """A batch's own budget: the rule of :class:`SpendLimit` over a ledger kept in the batch
    run's memory, keyed by row, with the whole run as its window.

    The ledger's clock stands still at a fixed moment, so no settlement ever leaves the window and
    the run's one holder never loses its lease. ``cost_estimate``, when given, is the estimate of
    every video; otherwise a class's estimate is the highest price its videos cost so far. Without
    an ``amount`` every video starts, and the budget only learns prices (a spend limit may use
    them as its estimates).
    """

    _NOW: Final = datetime(2000, 1, 1, tzinfo=UTC)
    _LEASE: Final = timedelta(days=1)
    _HOLDER: Final = "batch"

    def __init__(self, amount: float | None = None, cost_estimate: float | None = None) -> None:
        self.amount = amount
        self.cost_estimate = cost_estimate
        self._ledger = SpendLimit(name="budget", limit=amount or math.inf)
        self._held: dict[str, tuple[str, float | None]] = {}

    @property
    def spent(self) -> float:
        return self._ledger.spent(self._NOW)

    @property
    def committed(self) -> float:
        """Spent, plus the estimates held by videos in flight."""
        return _money(self.spent + self._ledger.reserved(self._NOW))

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def estimate(self, request: VideoRequest, given: float | None = None) -> float | None:
        """``given``, else ``cost_estimate``, else the highest price seen for its class."""
        return self._ledger.estimate(
            price_class_of(request), self.cost_estimate if given is None else given
        )

    def decide(self, request: VideoRequest, given: float | None = None) -> Decision:
        """Start the video now, wait for a video in flight to settle, or refuse it."""
        if self.amount is None:
            return "start"
        price_class = price_class_of(request)
        return self._ledger.decide(self._NOW, price_class, self.estimate(request, given))

    def reserve(self, key: str, request: VideoRequest, given: float | None = None) -> float | None:
        """Hold the video's estimate (None: a probe) under ``key``; returns the estimate."""
        price_class, estimate = price_class_of(request), self.estimate(request, given)
        self._ledger.reserve(self._HOLDER, self._NOW, self._LEASE, price_class, estimate)
        self._held[key] = (price_class, estimate)
        return estimate

    def settle(
        self, key: str, request: VideoRequest, cost: float | None, task_id: str | None = None
    ) -> None:
        """Count what the video cost (None: its estimate) and give back its reservation; a video
        reserved by no one (archived by an earlier run) is counted all the same."""
        held = self._held.pop(key, None)
        if held is not None:
            self._ledger.unreserve(self._HOLDER, *held)
        estimate = held[1] if held is not None else self.estimate(request)
        self._ledger.settle(
            task_id or key, cost, self._NOW, price_class=price_class_of(request), estimate=estimate
        )

    def release(self, key: str) -> None:
        """Give back the reservation of a video that cost nothing (refused, failed)."""
        held = self._held.pop(key, None)
        if held is not None:
            self._ledger.unreserve(self._HOLDER, *held)

    def refusal(self) -> str:
        """Why a video was not started, with the budget's numbers."""
        return f"the budget ({self.amount:g}) cannot cover it (spent {self.spent:g})"
