"""A batch's dry-run estimate, pure: totals per price class, where each row's estimate comes from,
and how many rows fit a budget or a spend limit's room in manifest order."""

from __future__ import annotations

from typing import Final

from omniflash_prefect.batches.estimates import ClassEstimate, estimate_batch
from omniflash_prefect.core.requests import VideoRequest


def video(duration: int, resolution: str = "720p") -> VideoRequest:
    return VideoRequest(prompt="a fox in snow", duration=duration, resolution=resolution)


FOUR: Final = video(4)
SIX: Final = video(6)
EIGHT: Final = video(8)
TEN_1080: Final = video(10, "1080p")
TEN_4K: Final = video(10, "4k")
#: The highest prices seen per class, as a spend limit learns them.
PRICES: Final = {"4s/720p": 1.0, "6s/720p": 1.5, "8s/720p": 2.0, "10s/4k": 5.0}


def test_rows_are_totalled_per_price_class_in_class_order() -> None:
    estimate = estimate_batch([SIX, TEN_4K, SIX, FOUR, SIX], prices=PRICES)
    assert estimate.videos == 5
    assert estimate.classes == [
        ClassEstimate(price_class="10s/4k", videos=1, estimate=5.0, total=5.0),
        ClassEstimate(price_class="4s/720p", videos=1, estimate=1.0, total=1.0),
        ClassEstimate(price_class="6s/720p", videos=3, estimate=1.5, total=4.5),
    ]
    assert estimate.estimated_total == 10.5
    assert estimate.unpriced_videos == 0


def test_cost_estimate_beats_the_prices_seen_for_every_row() -> None:
    estimate = estimate_batch([SIX, TEN_1080, SIX], cost_estimate=2.0, prices=PRICES)
    assert [(c.price_class, c.estimate, c.total) for c in estimate.classes] == [
        ("10s/1080p", 2.0, 2.0),
        ("6s/720p", 2.0, 4.0),
    ]
    assert estimate.estimated_total == 6.0
    assert estimate.unpriced_videos == 0


def test_a_class_with_no_price_is_unknown_and_left_out_of_the_total() -> None:
    estimate = estimate_batch([TEN_1080, SIX, TEN_1080], prices=PRICES)
    assert estimate.classes[0] == ClassEstimate(
        price_class="10s/1080p", videos=2, estimate=None, total=None
    )
    assert estimate.estimated_total == 1.5
    assert estimate.unpriced_videos == 2


def test_without_prices_every_row_is_unpriced() -> None:
    estimate = estimate_batch([FOUR, SIX])
    assert [c.estimate for c in estimate.classes] == [None, None]
    assert (estimate.estimated_total, estimate.unpriced_videos) == (0.0, 2)


def test_an_empty_manifest_costs_nothing() -> None:
    estimate = estimate_batch([], prices=PRICES, budget=5.0, room=5.0)
    assert (estimate.videos, estimate.classes, estimate.estimated_total) == (0, [], 0.0)
    assert (estimate.fit_budget, estimate.fit_limit) == (0, 0)


def test_without_budget_or_room_nothing_is_counted_against_them() -> None:
    estimate = estimate_batch([FOUR, SIX], prices=PRICES)
    assert (estimate.budget, estimate.fit_budget) == (None, None)
    assert (estimate.room, estimate.fit_limit) == (None, None)


def test_a_row_that_does_not_fit_is_skipped_and_a_later_cheaper_one_may_fit() -> None:
    """Budget 9: 5 + 1 fit, the second 10s/4k (5) is skipped, the 8s (2) fits, the 6s (1.5) is
    skipped, and the last 4s (1) still fits: 9 exactly."""
    rows = [TEN_4K, FOUR, TEN_4K, EIGHT, SIX, FOUR]
    estimate = estimate_batch(rows, prices=PRICES, budget=9.0)
    assert estimate.budget == 9.0
    assert estimate.fit_budget == 4
    assert estimate_batch(rows, prices=PRICES, budget=8.0).fit_budget == 3  # no room for the 4s


def test_rows_are_counted_in_manifest_order() -> None:
    expensive_first = estimate_batch([TEN_4K, FOUR, FOUR, FOUR, FOUR, FOUR], prices=PRICES, room=5)
    cheap_first = estimate_batch([FOUR, FOUR, FOUR, FOUR, FOUR, TEN_4K], prices=PRICES, room=5)
    assert (expensive_first.room, expensive_first.fit_limit) == (5, 1)
    assert cheap_first.fit_limit == 5


def test_budget_and_room_are_counted_separately() -> None:
    estimate = estimate_batch([SIX, SIX, SIX, SIX], prices=PRICES, budget=6.0, room=3.0)
    assert (estimate.fit_budget, estimate.fit_limit) == (4, 2)


def test_unknown_price_rows_count_while_room_is_left() -> None:
    rows = [EIGHT, TEN_1080, EIGHT, TEN_1080, FOUR]  # 2.0, unknown, 2.0, unknown, 1.0
    assert estimate_batch(rows, prices=PRICES, budget=5.0).fit_budget == 5
    assert estimate_batch(rows, prices=PRICES, budget=4.0).fit_budget == 3  # full after 2nd 8s
    assert estimate_batch(rows, prices=PRICES, room=0.0).fit_limit == 0


def test_a_row_that_fills_the_room_exactly_fits_despite_float_rounding() -> None:
    """0.1 + 0.2 is 0.30000000000000004 in floating point: it still fits a room of 0.3."""
    estimate = estimate_batch([FOUR, FOUR], cost_estimate=0.1, room=0.1)
    assert estimate.fit_limit == 1
    prices = {"4s/720p": 0.1, "6s/720p": 0.2}
    assert estimate_batch([FOUR, SIX], prices=prices, room=0.3).fit_limit == 2
