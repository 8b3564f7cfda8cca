"""The rule and ledger of spend limits, pure: the window, start / wait / refuse, leases,
settlements counted once per task, pruning, the document's round trip, the helpers around them,
and a batch's budget, the same rule over a ledger kept in memory.

Every rule takes an explicit ``now`` (UTC); nothing here reads a clock, a file or a server.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.spending import (
    HISTORY_DAYS,
    SETTLEMENT_MEMORY,
    Budget,
    DaySpend,
    Holder,
    SpendLimit,
    checked_name,
    price_class_of,
    refusal_message,
    spend_history,
)
from omniflash_prefect.errors import (
    UsageError,
)

#: An afternoon, well away from midnight: the UTC day's window starts at MIDNIGHT.
NOW: Final = datetime(2025, 6, 1, 15, 30, tzinfo=UTC)
MIDNIGHT: Final = datetime(2025, 6, 1, tzinfo=UTC)
LEASE: Final = timedelta(minutes=5)
SIX_720: Final = "6s/720p"
TEN_4K: Final = "10s/4k"
FOUR = VideoRequest(prompt="a fox in snow", duration=4)
FOUR_OTHER_PROMPT = VideoRequest(prompt="a kite over a beach", duration=4)
EIGHT = VideoRequest(prompt="a fox in snow", duration=8)
FOUR_1080 = VideoRequest(prompt="a fox in snow", duration=4, resolution="1080p")


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


# --- a batch's budget: the same rule in memory ----------------------------------------------------


def test_without_a_budget_every_row_starts() -> None:
    """No budget: rows start whatever was spent and however many unknown-price rows are out."""
    ledger = Budget()
    ledger.settle("earlier-1", FOUR, 1_000.0)
    for number in range(5):
        assert ledger.decide(EIGHT) == "start"
        ledger.reserve(f"r{number}", EIGHT)
    assert ledger.in_flight == 5
    assert ledger.decide(FOUR) == "start"


def test_explicit_estimate_admits_rows_while_they_fit() -> None:
    """With cost_estimate, rows start while spent + reserved + estimate <= budget, then wait for
    rows in flight, and are skipped once nothing is in flight and the next would not fit."""
    ledger = Budget(9.0, 3.0)
    for row in ("a", "b", "c"):
        assert ledger.decide(FOUR) == "start"
        ledger.reserve(row, FOUR)
    assert ledger.committed == 9.0  # exactly the budget: the third row still fitted
    assert ledger.decide(FOUR) == "wait"
    assert ledger.decide(EIGHT) == "wait"  # the explicit estimate holds for every class

    ledger.settle("a", FOUR, 3.0)
    assert (ledger.spent, ledger.committed, ledger.in_flight) == (3.0, 9.0, 2)
    assert ledger.decide(FOUR) == "wait"
    ledger.settle("b", FOUR, 3.0)
    ledger.settle("c", FOUR, 3.0)
    assert (ledger.spent, ledger.in_flight) == (9.0, 0)
    assert ledger.decide(FOUR) == "refuse"


def test_a_cheaper_real_cost_frees_room_for_another_row() -> None:
    """A row charged less than its estimate leaves the difference for later rows."""
    ledger = Budget(6.0, 3.0)
    ledger.reserve("a", FOUR)
    ledger.reserve("b", FOUR)
    assert ledger.decide(FOUR) == "wait"
    ledger.settle("a", FOUR, 1.0)
    ledger.settle("b", FOUR, 1.0)
    assert ledger.spent == 2.0
    assert ledger.decide(FOUR) == "start"


def test_explicit_estimate_wins_over_observed_prices() -> None:
    """cost_estimate, when given, is the estimate of every row, whatever was observed."""
    ledger = Budget(10.0, 1.0)
    ledger.settle("earlier-2", FOUR, 5.0)
    assert ledger.estimate(FOUR) == 1.0
    assert ledger.estimate(EIGHT) == 1.0


def test_unknown_price_allows_one_probe_at_a_time_then_uses_the_learnt_price() -> None:
    """Without an estimate the first row is a probe; others of unknown price wait for it; its
    cost then prices its (duration, resolution) class."""
    ledger = Budget(10.0)
    assert ledger.estimate(FOUR) is None
    assert ledger.decide(FOUR) == "start"
    ledger.reserve("probe", FOUR)
    assert ledger.committed == 0.0  # a probe reserves nothing known
    assert ledger.decide(FOUR) == "wait"
    assert ledger.decide(EIGHT) == "wait"  # one probe at a time, of any class

    ledger.settle("probe", FOUR, 2.5)
    assert ledger.spent == 2.5
    assert ledger.estimate(FOUR_OTHER_PROMPT) == 2.5  # the prompt does not matter
    for row in ("a", "b", "c"):
        assert ledger.decide(FOUR) == "start"
        ledger.reserve(row, FOUR)
    assert ledger.committed == 10.0
    assert ledger.decide(FOUR) == "wait"
    assert ledger.decide(EIGHT) == "wait"  # committed is not under the budget any more
    for row in ("a", "b", "c"):
        ledger.settle(row, FOUR, 2.5)
    assert ledger.spent == 10.0
    assert ledger.decide(FOUR) == "refuse"
    assert ledger.decide(EIGHT) == "refuse"


def test_a_probe_may_run_beside_rows_of_known_price() -> None:
    """Known-price rows in flight do not block a probe of another class, nor does the probe
    block them."""
    ledger = Budget(10.0)
    ledger.settle("earlier-3", FOUR, 2.0)
    ledger.reserve("known", FOUR)
    assert ledger.decide(EIGHT) == "start"
    ledger.reserve("probe", EIGHT)
    assert ledger.decide(FOUR) == "start"
    assert ledger.decide(EIGHT) == "wait"


def test_a_different_resolution_is_a_new_probe() -> None:
    """A price learnt for 4 s 720p says nothing of 4 s 1080p: that row is a probe again."""
    ledger = Budget(10.0)
    ledger.reserve("probe", FOUR)
    ledger.settle("probe", FOUR, 1.0)
    assert ledger.estimate(FOUR_1080) is None
    assert ledger.decide(FOUR_1080) == "start"
    ledger.reserve("probe-1080", FOUR_1080)
    assert ledger.decide(FOUR_1080) == "wait"
    ledger.settle("probe-1080", FOUR_1080, 3.0)
    assert (ledger.estimate(FOUR), ledger.estimate(FOUR_1080)) == (1.0, 3.0)


def test_a_probe_starts_only_while_spend_is_under_the_budget() -> None:
    """A probe needs committed spend strictly under the budget; at the budget it is skipped."""
    ledger = Budget(5.0)
    ledger.settle("earlier-4", FOUR, 4.99)
    assert ledger.decide(EIGHT) == "start"
    ledger.settle("earlier-5", FOUR, 0.01)
    assert ledger.spent == 5.0
    assert ledger.decide(EIGHT) == "refuse"


def test_released_rows_cost_nothing_and_teach_no_price() -> None:
    """A refused or failed row frees its reservation, adds no spend and prices nothing."""
    ledger = Budget(10.0)
    ledger.reserve("probe", FOUR)
    ledger.release("probe")
    assert (ledger.spent, ledger.in_flight, ledger.estimate(FOUR)) == (0.0, 0, None)
    assert ledger.decide(FOUR) == "start"  # the next row is a probe again, and may start

    known = Budget(6.0, 3.0)
    known.reserve("a", FOUR)
    known.reserve("b", FOUR)
    assert known.decide(FOUR) == "wait"
    known.release("a")
    assert (known.spent, known.committed) == (0.0, 3.0)
    assert known.decide(FOUR) == "start"


def test_settling_without_a_cost_charges_the_estimate() -> None:
    """settle(cost=None) counts the row's estimate as spent, and teaches no new price."""
    explicit = Budget(10.0, 3.0)
    explicit.reserve("a", FOUR)
    explicit.settle("a", FOUR, None)
    assert (explicit.spent, explicit.in_flight) == (3.0, 0)

    learnt = Budget(10.0)
    learnt.settle("earlier-6", FOUR, 2.0)
    learnt.reserve("a", FOUR)
    learnt.settle("a", FOUR, None)
    assert learnt.spent == 4.0
    assert learnt.estimate(FOUR) == 2.0


def test_recorded_costs_of_earlier_runs_count_and_price_their_class() -> None:
    """record_cost adds to the spend and prices the class at the highest cost seen."""
    ledger = Budget(10.0)
    ledger.settle("earlier-7", FOUR, 3.0)
    ledger.settle("earlier-8", FOUR, 4.0)
    ledger.settle("earlier-9", FOUR, 2.0)
    assert ledger.spent == 9.0
    assert ledger.estimate(FOUR) == 4.0
    assert ledger.estimate(EIGHT) is None
    assert ledger.decide(FOUR) == "refuse"  # 9 + 4 > 10, nothing in flight
    assert ledger.decide(EIGHT) == "start"  # a probe: 9 is under the budget

    ledger.settle("earlier-10", FOUR, None)  # an earlier row whose cost was not reported
    assert ledger.spent == 13.0  # counted at the class's estimate


_PRICES: dict[tuple[int, str], float] = {
    (4, "720p"): 0.5,
    (6, "720p"): 0.75,
    (8, "1080p"): 2.0,
    (10, "1080p"): 2.5,
    (6, "4k"): 4.0,
    (10, "4k"): 6.25,
}


def _simulate(seed: int, *, with_estimate: bool) -> tuple[float, float, float, Budget, int]:
    """Run a random batch through the ledger the way the batch flow does: rows race for
    admission in random order, rows in flight settle in random order, some fail.

    Returns (budget, highest price, what the provider charged, the ledger, rows skipped).
    """
    rng = random.Random(seed)
    classes = rng.sample(sorted(_PRICES), rng.randint(1, len(_PRICES)))
    highest = max(_PRICES[key] for key in classes)
    budget = rng.choice([0.5, 1.0, 3.0, rng.uniform(1.0, 25.0)])
    cost_estimate = highest * rng.choice([1.0, rng.uniform(1.0, 1.5)]) if with_estimate else None
    ledger = Budget(budget, cost_estimate)
    max_in_flight = rng.randint(1, 8)

    pending: list[tuple[str, VideoRequest]] = []
    for number in range(rng.randint(10, 40)):
        duration, resolution = rng.choice(classes)
        pending.append(
            (f"row-{number}", VideoRequest(prompt="p", duration=duration, resolution=resolution))
        )
    in_flight: dict[str, tuple[VideoRequest, bool]] = {}
    charged = 0.0
    skipped = 0
    while pending or in_flight:
        for row_id, request in rng.sample(pending, len(pending)):
            if len(in_flight) >= max_in_flight:
                break
            decision = ledger.decide(request)
            if decision == "start":
                in_flight[row_id] = (request, ledger.estimate(request) is not None)
                ledger.reserve(row_id, request)
                pending.remove((row_id, request))
            elif decision == "refuse":
                skipped += 1
                pending.remove((row_id, request))
        if not in_flight:
            assert not pending, "rows waited with nothing in flight"
            break
        row_id = rng.choice(sorted(in_flight))
        request, priced = in_flight.pop(row_id)
        price = _PRICES[(request.duration, request.resolution)]
        fate = rng.random()
        if fate < 0.15:
            ledger.release(row_id)  # failed or refused: not charged
        elif fate < 0.25 and priced:
            charged += price  # paid, but its cost is unknown (e.g. the download failed)
            ledger.settle(row_id, request, None)
        else:
            charged += price
            ledger.settle(row_id, request, price)
    assert ledger.in_flight == 0
    return budget, highest, charged, ledger, skipped


@pytest.mark.parametrize("seed", range(40))
def test_random_batches_overshoot_by_at_most_one_video(seed: int) -> None:
    """Learning prices by probing, the spend never passes the budget by more than the highest
    single video price, and the ledger only skips rows when little budget is left."""
    budget, highest, charged, ledger, skipped = _simulate(seed, with_estimate=False)
    assert charged <= budget + highest + 1e-6
    assert ledger.spent == pytest.approx(charged)
    if skipped:
        assert charged > budget - highest - 1e-6


@pytest.mark.parametrize("seed", range(40))
def test_random_batches_with_a_safe_estimate_never_pass_the_budget(seed: int) -> None:
    """With cost_estimate at or above every real price, the spend never exceeds the budget."""
    budget, _, charged, ledger, skipped = _simulate(seed, with_estimate=True)
    estimate = ledger.cost_estimate
    assert estimate is not None
    assert charged <= budget + 1e-6
    assert ledger.spent >= charged - 1e-6  # unknown costs were counted at the estimate
    if skipped:
        assert ledger.spent > budget - estimate - 1e-6


def test_the_simulation_does_hit_the_budget() -> None:
    """Most simulated batches run out of budget, so the bounds above are really exercised."""
    runs = [_simulate(seed, with_estimate=False) for seed in range(40)]
    over = [charged for budget, _, charged, _, _ in runs if charged > budget]
    assert sum(1 for *_, skipped in runs if skipped) >= 30
    assert over  # the probe's one-video overshoot does happen


def test_paid_failures_of_probes_keep_the_spend_bounded() -> None:
    """A probe that may have been paid but taught no price stops its class: one probe only."""
    ledger = Budget(1.0)
    started = 0
    for number in range(5):
        if ledger.decide(FOUR) != "start":
            break
        started += 1
        ledger.reserve(f"probe-{number}", FOUR)
        ledger.settle(f"probe-{number}", FOUR, None)  # e.g. DownloadError: paid, cost unknown
    assert started == 1
    assert ledger.decide(FOUR) == "refuse"
