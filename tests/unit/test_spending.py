"""The rule and ledger of shared spend limits, pure: the window, start / wait / refuse, leases,
settlements counted once per task, pruning, the document's round trip, and the helpers around them.

Every rule takes an explicit ``now`` (UTC); nothing here reads a clock, a file or a server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from omniflash_prefect.core.errors import (
    UsageError,
)
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.spending import (
    HISTORY_DAYS,
    SETTLEMENT_MEMORY,
    DaySpend,
    Holder,
    SpendLimit,
    checked_name,
    price_class_of,
    refusal_message,
    spend_history,
)

#: An afternoon, well away from midnight: the UTC day's window starts at MIDNIGHT.
NOW: Final = datetime(2025, 6, 1, 15, 30, tzinfo=UTC)
MIDNIGHT: Final = datetime(2025, 6, 1, tzinfo=UTC)
LEASE: Final = timedelta(minutes=5)
SIX_720: Final = "6s/720p"
TEN_4K: Final = "10s/4k"


def a_limit(limit: float = 10.0, rolling_hours: int | None = None) -> SpendLimit:
    return SpendLimit(name="nightly", limit=limit, rolling_hours=rolling_hours)


# --- the window ---------------------------------------------------------------------------------


def test_utc_day_window_starts_at_midnight_utc() -> None:
    limit = a_limit()
    assert limit.window_start(NOW) == MIDNIGHT
    assert limit.window_start(MIDNIGHT) == MIDNIGHT
    assert limit.period == "UTC day"


def test_utc_day_window_is_the_utc_day_even_when_now_has_another_offset() -> None:
    """01:30 at UTC+2 is still the previous UTC day: its window starts at that day's midnight."""
    now = datetime(2025, 6, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert a_limit().window_start(now) == datetime(2025, 5, 31, tzinfo=UTC)


def test_rolling_window_starts_rolling_hours_before_now() -> None:
    limit = a_limit(rolling_hours=6)
    assert limit.window_start(NOW) == NOW - timedelta(hours=6)
    assert limit.period == "6 rolling hours"


def test_settlements_before_the_utc_day_do_not_count_but_stay_in_history() -> None:
    limit = a_limit()
    limit.settle("yesterday", 4.0, MIDNIGHT - timedelta(seconds=1))
    limit.settle("today", 2.0, MIDNIGHT)
    assert limit.spent(NOW) == 2.0
    assert limit.view(NOW).videos == 1
    assert limit.days == {
        "2025-05-31": DaySpend(spent=4.0, videos=1),
        "2025-06-01": DaySpend(spent=2.0, videos=1),
    }


def test_settlements_before_a_rolling_window_do_not_count() -> None:
    limit = a_limit(rolling_hours=6)
    start = NOW - timedelta(hours=6)
    limit.settle("just-out", 4.0, start - timedelta(seconds=1))
    limit.settle("just-in", 2.0, start)
    limit.settle("earlier-today", 1.0, MIDNIGHT)  # same UTC day, outside the 6 hours
    assert limit.spent(NOW) == 2.0
    assert limit.days["2025-06-01"] == DaySpend(spent=7.0, videos=3)


# --- decide -------------------------------------------------------------------------------------


def spent_and_reserved(spent: float, reserved: float, limit: float = 10.0) -> SpendLimit:
    """A limit with ``spent`` settled today and ``reserved`` held by one live holder."""
    ledger = a_limit(limit)
    if spent:
        ledger.settle("settled", spent, NOW - timedelta(hours=1), price_class=SIX_720)
    if reserved:
        ledger.reserve("other-run", NOW, LEASE, SIX_720, reserved)
    return ledger


def test_decide_starts_when_spent_reserved_and_estimate_fit_the_limit_exactly() -> None:
    limit = spent_and_reserved(spent=4.0, reserved=3.0)
    assert limit.decide(NOW, SIX_720, 3.0) == "start"


def test_decide_waits_when_the_video_fits_only_once_reservations_settle() -> None:
    limit = spent_and_reserved(spent=4.0, reserved=3.0)
    assert limit.decide(NOW, SIX_720, 3.5) == "wait"
    assert limit.decide(NOW, SIX_720, 6.0) == "wait"  # spent + estimate == limit: it will fit


def test_decide_refuses_when_spent_and_estimate_exceed_the_limit_with_nothing_in_flight() -> None:
    limit = spent_and_reserved(spent=8.0, reserved=0.0)
    assert limit.decide(NOW, SIX_720, 2.5) == "refuse"
    busy = spent_and_reserved(spent=8.0, reserved=1.0)
    assert busy.decide(NOW, SIX_720, 2.5) == "refuse"  # settling what is in flight cannot help


def test_decide_probe_starts_while_room_is_left_and_no_probe_of_its_class_is_live() -> None:
    limit = spent_and_reserved(spent=4.0, reserved=5.5)
    assert limit.decide(NOW, TEN_4K, None) == "start"


def test_decide_probe_waits_while_a_live_holder_probes_any_class() -> None:
    """Probes reserve nothing, so one at a time in all: two at once could overshoot by two."""
    limit = a_limit()
    limit.reserve("prober", NOW, LEASE, TEN_4K, None)
    assert limit.decide(NOW, TEN_4K, None) == "wait"
    assert limit.decide(NOW, SIX_720, None) == "wait"
    assert limit.decide(NOW, SIX_720, 1.0) == "start"  # a priced video need not wait
    assert limit.decide(NOW + LEASE, TEN_4K, None) == "start"  # the prober's lease passed


def test_decide_probe_waits_when_reservations_fill_the_limit() -> None:
    limit = spent_and_reserved(spent=4.0, reserved=6.0)
    assert limit.decide(NOW, TEN_4K, None) == "wait"


def test_decide_probe_is_refused_once_spent_reaches_the_limit() -> None:
    limit = spent_and_reserved(spent=10.0, reserved=0.0)
    assert limit.decide(NOW, TEN_4K, None) == "refuse"


def test_decide_refuses_a_probe_of_a_class_paid_at_a_price_never_learnt() -> None:
    limit = a_limit()
    assert limit.settle("lost-cost", None, NOW, price_class=TEN_4K) == 0.0
    assert limit.decide(NOW, TEN_4K, None) == "refuse"
    assert limit.decide(NOW, SIX_720, None) == "start"


def test_estimate_prefers_the_given_one_then_the_highest_price_seen() -> None:
    limit = a_limit()
    limit.settle("t1", 2.5, NOW, price_class=SIX_720)
    assert limit.estimate(SIX_720, 4.0) == 4.0
    assert limit.estimate(SIX_720, None) == 2.5
    assert limit.estimate(TEN_4K, None) is None


def test_price_class_is_duration_and_resolution() -> None:
    assert price_class_of(VideoRequest(prompt="a fox", duration=6, resolution="720p")) == SIX_720
    assert price_class_of(VideoRequest(prompt="a kite", duration=10, resolution="4k")) == TEN_4K


# --- leases, renew, unreserve -------------------------------------------------------------------


def test_reservations_of_a_holder_whose_lease_passed_no_longer_count() -> None:
    limit = a_limit()
    limit.reserve("run-a", NOW, LEASE, SIX_720, 3.0)
    before = limit.view(NOW + LEASE - timedelta(seconds=1))
    assert (before.reserved, before.in_flight, before.holders) == (3.0, 1, 1)
    after = limit.view(NOW + LEASE)
    assert (after.reserved, after.in_flight, after.holders) == (0.0, 0, 0)
    assert limit.reserved(NOW + LEASE) == 0.0
    assert "run-a" in limit.holders  # still in the document until pruned


def test_prune_drops_holders_whose_lease_passed() -> None:
    limit = a_limit()
    limit.reserve("lapsed", NOW, LEASE, SIX_720, 3.0)
    limit.reserve("live", NOW + timedelta(minutes=3), LEASE, SIX_720, 2.0)
    limit.prune(NOW + LEASE)
    assert set(limit.holders) == {"live"}
    assert limit.reserved(NOW + LEASE) == 2.0


def test_renew_moves_the_lease_and_keeps_the_reservations() -> None:
    limit = a_limit()
    limit.reserve("run-a", NOW, LEASE, SIX_720, 3.0)
    renewed = limit.renew("run-a", NOW + timedelta(minutes=4), LEASE)
    assert renewed.expires_at == NOW + timedelta(minutes=9)
    assert limit.reserved(NOW + timedelta(minutes=8)) == 3.0


def test_renew_after_the_lease_passed_starts_an_empty_holder() -> None:
    limit = a_limit()
    limit.reserve("run-a", NOW, LEASE, TEN_4K, None)
    limit.reserve("run-a", NOW, LEASE, SIX_720, 3.0)
    renewed = limit.renew("run-a", NOW + LEASE, LEASE, run="flow-run-1")
    assert renewed == Holder(expires_at=NOW + 2 * LEASE, run="flow-run-1")


def test_unreserve_gives_back_one_video_and_removes_the_holder_with_its_last() -> None:
    limit = a_limit()
    limit.reserve("run-a", NOW, LEASE, SIX_720, 3.0)
    limit.reserve("run-a", NOW, LEASE, TEN_4K, None)
    limit.unreserve("run-a", SIX_720, 3.0)
    holder = limit.holders["run-a"]
    assert (holder.reserved, holder.videos, holder.probes) == (0.0, 1, [TEN_4K])
    limit.unreserve("run-a", TEN_4K, None)
    assert limit.holders == {}
    assert limit.decide(NOW, TEN_4K, None) == "start"  # the probe went with it


def test_unreserve_for_an_unknown_holder_changes_nothing() -> None:
    limit = a_limit()
    limit.reserve("run-a", NOW, LEASE, SIX_720, 3.0)
    before = limit.model_dump()
    limit.unreserve("never-held", SIX_720, 3.0)
    assert limit.model_dump() == before


# --- settle -------------------------------------------------------------------------------------


def test_settle_counts_a_task_once_at_the_same_exact_cost() -> None:
    limit = a_limit()
    assert limit.settle("task-1", 2.5, NOW, price_class=SIX_720) == 2.5
    assert limit.settle("task-1", 2.5, NOW + timedelta(minutes=1), price_class=SIX_720) == 0.0
    assert limit.spent(NOW) == 2.5
    assert limit.days["2025-06-01"] == DaySpend(spent=2.5, videos=1)


def test_a_later_exact_cost_replaces_an_estimated_settlement() -> None:
    """The estimate was counted on the day it settled: the exact cost adjusts that day, by the
    difference, without counting the video twice."""
    limit = a_limit()
    evening = datetime(2025, 5, 31, 23, 0, tzinfo=UTC)
    assert limit.settle("task-1", None, evening, price_class=SIX_720, estimate=3.0) == 3.0
    assert limit.settlements["task-1"].estimated
    added = limit.settle("task-1", 2.25, NOW, price_class=SIX_720, estimate=3.0)
    assert added == -0.75
    settlement = limit.settlements["task-1"]
    assert (settlement.amount, settlement.estimated, settlement.at) == (2.25, False, evening)
    assert limit.days == {"2025-05-31": DaySpend(spent=2.25, videos=1)}


def test_an_estimate_never_adds_to_a_task_already_settled() -> None:
    limit = a_limit()
    limit.settle("exact", 2.5, NOW, price_class=SIX_720)
    assert limit.settle("exact", None, NOW, price_class=SIX_720, estimate=4.0) == 0.0
    assert (limit.settlements["exact"].amount, limit.settlements["exact"].estimated) == (2.5, False)
    limit.settle("guessed", None, NOW, price_class=SIX_720, estimate=3.0)
    assert limit.settle("guessed", None, NOW, price_class=SIX_720, estimate=3.0) == 0.0
    assert limit.spent(NOW) == 5.5
    assert limit.days["2025-06-01"] == DaySpend(spent=5.5, videos=2)


def test_exact_costs_teach_the_highest_price_per_class_and_estimates_teach_nothing() -> None:
    limit = a_limit(limit=100.0)
    limit.settle("t1", 2.0, NOW, price_class=SIX_720)
    limit.settle("t2", 1.5, NOW, price_class=SIX_720)
    assert limit.prices == {SIX_720: 2.0}
    limit.settle("t3", 3.0, NOW, price_class=SIX_720)
    limit.settle("t4", None, NOW, price_class=SIX_720, estimate=9.0)
    limit.settle("t5", None, NOW, price_class=TEN_4K, estimate=9.0)
    assert limit.prices == {SIX_720: 3.0}


def test_settle_without_cost_or_estimate_marks_the_class_unpriced_until_an_exact_cost() -> None:
    limit = a_limit()
    assert limit.settle("t1", None, NOW, price_class=TEN_4K) == 0.0
    assert limit.settle("t2", None, NOW, price_class=TEN_4K) == 0.0
    assert limit.unpriced == [TEN_4K]
    assert (limit.settlements, limit.days, limit.spent(NOW)) == ({}, {}, 0.0)
    assert limit.settle("t3", 4.0, NOW, price_class=TEN_4K) == 4.0
    assert limit.unpriced == []
    assert limit.prices == {TEN_4K: 4.0}
    assert limit.decide(NOW, TEN_4K, limit.estimate(TEN_4K, None)) == "start"


# --- prune --------------------------------------------------------------------------------------


def test_prune_keeps_settlements_of_the_window_plus_the_settlement_memory() -> None:
    limit = a_limit()
    keep_from = MIDNIGHT - SETTLEMENT_MEMORY
    limit.settle("remembered", 2.0, keep_from)
    limit.settle("forgotten", 3.0, keep_from - timedelta(seconds=1))
    limit.prune(NOW)
    assert set(limit.settlements) == {"remembered"}
    assert limit.settle("remembered", 2.0, NOW) == 0.0  # a late second settlement adds nothing
    assert limit.days["2025-05-30"] == DaySpend(spent=2.0, videos=1)
    assert limit.days["2025-05-29"] == DaySpend(spent=3.0, videos=1)  # history outlives it


def test_prune_measures_the_settlement_memory_from_a_rolling_window() -> None:
    limit = a_limit(rolling_hours=6)
    keep_from = NOW - timedelta(hours=6) - SETTLEMENT_MEMORY
    limit.settle("remembered", 2.0, keep_from)
    limit.settle("forgotten", 3.0, keep_from - timedelta(seconds=1))
    limit.prune(NOW)
    assert set(limit.settlements) == {"remembered"}


def test_prune_keeps_history_days_of_day_spend() -> None:
    limit = a_limit()
    oldest_kept = (NOW - timedelta(days=HISTORY_DAYS)).date()
    assert oldest_kept.isoformat() == "2025-03-03"
    limit.days = {
        "2025-03-02": DaySpend(spent=1.0, videos=1),
        "2025-03-03": DaySpend(spent=2.0, videos=1),
        "2025-06-01": DaySpend(spent=3.0, videos=1),
    }
    limit.prune(NOW)
    assert set(limit.days) == {"2025-03-03", "2025-06-01"}


# --- the rule holds across runs (property) ------------------------------------------------------

CLASSES: Final = ("4s/720p", "8s/1080p", TEN_4K)
HOLDERS: Final = 3
#: Quarter units: every sum is exact in binary floating point.
quarters = st.integers(min_value=1, max_value=40).map(lambda n: n / 4)
steps = st.lists(
    st.tuples(
        st.integers(0, HOLDERS - 1),  # which run acts
        st.booleans(),  # True: try to start a video; False: settle its oldest one in flight
        st.integers(0, len(CLASSES) - 1),  # the class of the video it tries to start
    ),
    max_size=60,
)


def race(
    amount: float, prices: dict[str, float], known: set[str], moves: list[tuple[int, bool, int]]
) -> list[float]:
    """Runs sharing a limit start videos through ``decide``/``reserve`` (with the real price as
    estimate for ``known`` classes, else what the ledger learnt) and settle them at their real
    price, in the order ``moves`` says, then settle what is left. Returns spent after each move."""
    limit = a_limit(limit=amount)
    held: dict[int, list[tuple[str, float | None]]] = {run: [] for run in range(HOLDERS)}
    spent: list[float] = []
    tasks = 0

    def settle_oldest(run: int) -> None:
        nonlocal tasks
        price_class, expected = held[run].pop(0)
        limit.unreserve(f"run-{run}", price_class, expected)
        added = limit.settle(f"task-{tasks}", prices[price_class], NOW, price_class=price_class)
        assert added == prices[price_class]
        tasks += 1

    for run, wants_to_start, class_index in moves:
        if wants_to_start:
            price_class = CLASSES[class_index]
            given = prices[price_class] if price_class in known else None
            expected = limit.estimate(price_class, given)
            if limit.decide(NOW, price_class, expected) == "start":
                limit.reserve(f"run-{run}", NOW, timedelta(hours=1), price_class, expected)
                held[run].append((price_class, expected))
        elif held[run]:
            settle_oldest(run)
        spent.append(limit.spent(NOW))
    for run in held:
        while held[run]:
            settle_oldest(run)
            spent.append(limit.spent(NOW))
    assert limit.holders == {}
    assert limit.spent(NOW) == sum(s.amount for s in limit.settlements.values())
    return spent


@settings(max_examples=200, deadline=None, database=None)
@given(amount=quarters, real=st.tuples(quarters, quarters, quarters), moves=steps)
def test_runs_racing_with_exact_estimates_never_spend_past_the_limit(
    amount: float, real: tuple[float, float, float], moves: list[tuple[int, bool, int]]
) -> None:
    prices = dict(zip(CLASSES, real, strict=True))
    for spent in race(amount, prices, set(CLASSES), moves):
        assert spent <= amount


@settings(max_examples=200, deadline=None, database=None)
@given(amount=quarters, real=st.tuples(quarters, quarters, quarters), moves=steps)
def test_runs_racing_with_one_unknown_price_overshoot_by_at_most_one_video(
    amount: float, real: tuple[float, float, float], moves: list[tuple[int, bool, int]]
) -> None:
    prices = dict(zip(CLASSES, real, strict=True))
    probed = CLASSES[0]
    for spent in race(amount, prices, set(CLASSES) - {probed}, moves):
        assert spent <= amount + prices[probed]


def test_probes_of_two_unknown_classes_overshoot_by_at_most_one_video() -> None:
    price = 4.0  # every video costs the same
    limit = a_limit(limit=10.0)
    limit.settle("learnt", price, NOW - timedelta(hours=1), price_class=SIX_720)
    limit.reserve("run-a", NOW, LEASE, SIX_720, price)  # spent + reserved = 8 < 10
    assert limit.decide(NOW, TEN_4K, None) == "start"
    limit.reserve("run-b", NOW, LEASE, TEN_4K, None)
    assert limit.decide(NOW, "4s/720p", None) == "wait"  # the second probe waits its turn
    for key, (run, price_class, estimate) in enumerate(
        [("run-a", SIX_720, price), ("run-b", TEN_4K, None)]
    ):
        limit.unreserve(run, price_class, estimate)
        limit.settle(f"t{key}", price, NOW, price_class=price_class)
    assert limit.decide(NOW, "4s/720p", None) == "refuse"  # spent 12: nothing is left
    assert limit.spent(NOW) <= 10.0 + price


# --- the document -------------------------------------------------------------------------------


def test_the_document_round_trips_through_json_unchanged() -> None:
    limit = a_limit(limit=25.5, rolling_hours=12)
    limit.settle("exact", 2.5, NOW - timedelta(hours=1), price_class=SIX_720, run="flow-1")
    limit.settle("guess", None, NOW, price_class=TEN_4K, estimate=4.0)
    limit.settle("lost", None, NOW, price_class="8s/1080p")
    limit.reserve("run-a", NOW, LEASE, SIX_720, 2.5, run="flow-2")
    limit.reserve("run-a", NOW, LEASE, TEN_4K, None)
    dumped = limit.model_dump(mode="json")
    restored = SpendLimit.model_validate(json.loads(json.dumps(dumped)))
    assert restored == limit
    assert restored.model_dump(mode="json") == dumped
    assert restored.view(NOW) == limit.view(NOW)
    assert restored.settlements["guess"].at.tzinfo is not None


# --- failures, names, messages, history ---------------------------------------------------------


@pytest.mark.parametrize("name", ["nightly", "team-a-2", "a", "a" * 64])
def test_checked_name_accepts_lowercase_letters_digits_and_inner_dashes(name: str) -> None:
    assert checked_name(name) == name


@pytest.mark.parametrize("name", ["Nightly", "-x", "x-", "a_b", "", "a" * 65, "bad name"])
def test_checked_name_refuses_anything_else(name: str) -> None:
    with pytest.raises(UsageError, match="lowercase letters, digits and dashes"):
        checked_name(name)


def test_checked_name_refuses_a_trailing_newline() -> None:
    with pytest.raises(UsageError):
        checked_name("nightly\n")


def test_a_limit_with_a_bad_name_is_invalid() -> None:
    with pytest.raises(ValidationError, match="lowercase letters"):
        SpendLimit(name="Bad Name", limit=1)


@pytest.mark.parametrize(
    ("limit", "rolling_hours"), [(0.0, None), (-1.0, None), (1.0, 0), (1.0, 169)]
)
def test_a_limit_needs_a_positive_amount_and_a_window_of_at_most_a_week(
    limit: float, rolling_hours: int | None
) -> None:
    with pytest.raises(ValidationError):
        SpendLimit(name="nightly", limit=limit, rolling_hours=rolling_hours)


def test_view_shows_what_remains_and_never_below_zero() -> None:
    limit = spent_and_reserved(spent=4.0, reserved=3.5)
    view = limit.view(NOW)
    assert (view.spent, view.reserved, view.remaining) == (4.0, 3.5, 2.5)
    assert (view.videos, view.in_flight, view.holders) == (1, 1, 1)
    limit.settle("over", 5.0, NOW, price_class=SIX_720)
    assert limit.view(NOW).remaining == 0.0


def test_refusal_message_names_the_limit_and_its_numbers() -> None:
    limit = spent_and_reserved(spent=4.0, reserved=3.5, limit=25.0)
    message = refusal_message(limit, NOW, 18.0)
    assert "'nightly'" in message
    assert "25 per UTC day" in message
    assert "this video's 18" in message
    assert "spent 4," in message
    assert "reserved 3.5" in message
    assert "2025-06-01T00:00:00+00:00" in message


def test_refusal_message_of_a_probe_in_a_rolling_window() -> None:
    limit = a_limit(limit=7.5, rolling_hours=6)
    message = refusal_message(limit, NOW, None)
    assert "7.5 per 6 rolling hours" in message
    assert "a video of unknown price" in message
    assert "spent 0, reserved 0" in message


def test_spend_history_sorts_by_day_then_limit_from_the_first_day() -> None:
    team = SpendLimit(name="team-a", limit=50)
    team.days = {
        "2025-05-30": DaySpend(spent=9.0, videos=3),
        "2025-05-31": DaySpend(spent=1.0, videos=1),
    }
    nightly = a_limit()
    nightly.days = {
        "2025-06-01": DaySpend(spent=2.0, videos=1),
        "2025-05-31": DaySpend(spent=5.0, videos=2),
        "2025-05-29": DaySpend(spent=7.0, videos=2),
    }
    rows = spend_history([team, nightly], "2025-05-30")
    assert [(row.day, row.limit, row.spent, row.videos) for row in rows] == [
        ("2025-05-30", "team-a", 9.0, 3),
        ("2025-05-31", "nightly", 5.0, 2),
        ("2025-05-31", "team-a", 1.0, 1),
        ("2025-06-01", "nightly", 2.0, 1),
    ]
    assert spend_history([], "2025-01-01") == []


def test_a_free_video_teaches_no_price() -> None:
    """A cost of 0 is no price: were it learnt, every later video of its class would fit."""
    limit = a_limit()
    limit.settle("free", 0.0, NOW, price_class=SIX_720)
    assert SIX_720 not in limit.prices
    assert limit.estimate(SIX_720, None) is None
