"""The pure part of batches: the spend ledger, how a failed row ends, and the report."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from omniflash_prefect.batches.report import (
    ITEM_STATUSES,
    BatchItem,
    BatchReport,
    RowOutcome,
    SpendLedger,
    outcome_of_error,
    report_markdown,
    report_table,
)
from omniflash_prefect.core.errors import (
    AuthenticationError,
    DownloadError,
    GenerationCancelledError,
    GenerationFailedError,
    InvalidRequestError,
    InvalidVideoRequestError,
    PaymentRequiredError,
    PollTimeoutError,
    RateLimitedError,
    RequestProblem,
    SpendLimitReachedError,
    SubmissionOutcomeUnknownError,
    VideoExpiredError,
)
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.spending import SpendLimitView

FOUR = VideoRequest(prompt="a fox in snow", duration=4)
FOUR_OTHER_PROMPT = VideoRequest(prompt="a kite over a beach", duration=4)
EIGHT = VideoRequest(prompt="a fox in snow", duration=8)
FOUR_1080 = VideoRequest(prompt="a fox in snow", duration=4, resolution="1080p")


# --- SpendLedger -------------------------------------------------------------------------------


def test_without_a_budget_every_row_starts() -> None:
    """No budget: rows start whatever was spent and however many unknown-price rows are out."""
    ledger = SpendLedger()
    ledger.record_cost(FOUR, 1_000.0)
    for number in range(5):
        assert ledger.decide(EIGHT) == "start"
        ledger.reserve(f"r{number}", EIGHT)
    assert ledger.in_flight == 5
    assert ledger.decide(FOUR) == "start"


def test_explicit_estimate_admits_rows_while_they_fit() -> None:
    """With cost_estimate, rows start while spent + reserved + estimate <= budget, then wait for
    rows in flight, and are skipped once nothing is in flight and the next would not fit."""
    ledger = SpendLedger(budget=9.0, cost_estimate=3.0)
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
    assert ledger.decide(FOUR) == "skip"


def test_a_cheaper_real_cost_frees_room_for_another_row() -> None:
    """A row charged less than its estimate leaves the difference for later rows."""
    ledger = SpendLedger(budget=6.0, cost_estimate=3.0)
    ledger.reserve("a", FOUR)
    ledger.reserve("b", FOUR)
    assert ledger.decide(FOUR) == "wait"
    ledger.settle("a", FOUR, 1.0)
    ledger.settle("b", FOUR, 1.0)
    assert ledger.spent == 2.0
    assert ledger.decide(FOUR) == "start"


def test_explicit_estimate_wins_over_observed_prices() -> None:
    """cost_estimate, when given, is the estimate of every row, whatever was observed."""
    ledger = SpendLedger(budget=10.0, cost_estimate=1.0)
    ledger.record_cost(FOUR, 5.0)
    assert ledger.estimate(FOUR) == 1.0
    assert ledger.estimate(EIGHT) == 1.0


def test_unknown_price_allows_one_probe_at_a_time_then_uses_the_learnt_price() -> None:
    """Without an estimate the first row is a probe; others of unknown price wait for it; its
    cost then prices its (duration, resolution) class."""
    ledger = SpendLedger(budget=10.0)
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
    assert ledger.decide(FOUR) == "skip"
    assert ledger.decide(EIGHT) == "skip"


def test_a_probe_may_run_beside_rows_of_known_price() -> None:
    """Known-price rows in flight do not block a probe of another class, nor does the probe
    block them."""
    ledger = SpendLedger(budget=10.0)
    ledger.record_cost(FOUR, 2.0)
    ledger.reserve("known", FOUR)
    assert ledger.decide(EIGHT) == "start"
    ledger.reserve("probe", EIGHT)
    assert ledger.decide(FOUR) == "start"
    assert ledger.decide(EIGHT) == "wait"


def test_a_different_resolution_is_a_new_probe() -> None:
    """A price learnt for 4 s 720p says nothing of 4 s 1080p: that row is a probe again."""
    ledger = SpendLedger(budget=10.0)
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
    ledger = SpendLedger(budget=5.0)
    ledger.record_cost(FOUR, 4.99)
    assert ledger.decide(EIGHT) == "start"
    ledger.record_cost(FOUR, 0.01)
    assert ledger.spent == 5.0
    assert ledger.decide(EIGHT) == "skip"


def test_released_rows_cost_nothing_and_teach_no_price() -> None:
    """A refused or failed row frees its reservation, adds no spend and prices nothing."""
    ledger = SpendLedger(budget=10.0)
    ledger.reserve("probe", FOUR)
    ledger.release("probe")
    assert (ledger.spent, ledger.in_flight, ledger.estimate(FOUR)) == (0.0, 0, None)
    assert ledger.decide(FOUR) == "start"  # the next row is a probe again, and may start

    known = SpendLedger(budget=6.0, cost_estimate=3.0)
    known.reserve("a", FOUR)
    known.reserve("b", FOUR)
    assert known.decide(FOUR) == "wait"
    known.release("a")
    assert (known.spent, known.committed) == (0.0, 3.0)
    assert known.decide(FOUR) == "start"


def test_settling_without_a_cost_charges_the_estimate() -> None:
    """settle(cost=None) counts the row's estimate as spent, and teaches no new price."""
    explicit = SpendLedger(budget=10.0, cost_estimate=3.0)
    explicit.reserve("a", FOUR)
    explicit.settle("a", FOUR, None)
    assert (explicit.spent, explicit.in_flight) == (3.0, 0)

    learnt = SpendLedger(budget=10.0)
    learnt.record_cost(FOUR, 2.0)
    learnt.reserve("a", FOUR)
    learnt.settle("a", FOUR, None)
    assert learnt.spent == 4.0
    assert learnt.estimate(FOUR) == 2.0


def test_recorded_costs_of_earlier_runs_count_and_price_their_class() -> None:
    """record_cost adds to the spend and prices the class at the highest cost seen."""
    ledger = SpendLedger(budget=10.0)
    ledger.record_cost(FOUR, 3.0)
    ledger.record_cost(FOUR, 4.0)
    ledger.record_cost(FOUR, 2.0)
    assert ledger.spent == 9.0
    assert ledger.estimate(FOUR) == 4.0
    assert ledger.estimate(EIGHT) is None
    assert ledger.decide(FOUR) == "skip"  # 9 + 4 > 10, nothing in flight
    assert ledger.decide(EIGHT) == "start"  # a probe: 9 is under the budget

    ledger.record_cost(FOUR, None)  # an earlier row whose cost was not reported
    assert ledger.spent == 13.0  # counted at the class's estimate


_PRICES: dict[tuple[int, str], float] = {
    (4, "720p"): 0.5,
    (6, "720p"): 0.75,
    (8, "1080p"): 2.0,
    (10, "1080p"): 2.5,
    (6, "4k"): 4.0,
    (10, "4k"): 6.25,
}


def _simulate(seed: int, *, with_estimate: bool) -> tuple[float, float, float, SpendLedger, int]:
    """Run a random batch through the ledger the way the batch flow does: rows race for
    admission in random order, rows in flight settle in random order, some fail.

    Returns (budget, highest price, what the provider charged, the ledger, rows skipped).
    """
    rng = random.Random(seed)
    classes = rng.sample(sorted(_PRICES), rng.randint(1, len(_PRICES)))
    highest = max(_PRICES[key] for key in classes)
    budget = rng.choice([0.5, 1.0, 3.0, rng.uniform(1.0, 25.0)])
    cost_estimate = highest * rng.choice([1.0, rng.uniform(1.0, 1.5)]) if with_estimate else None
    ledger = SpendLedger(budget=budget, cost_estimate=cost_estimate)
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
            elif decision == "skip":
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
    ledger = SpendLedger(budget=1.0)
    started = 0
    for number in range(5):
        if ledger.decide(FOUR) != "start":
            break
        started += 1
        ledger.reserve(f"probe-{number}", FOUR)
        ledger.settle(f"probe-{number}", FOUR, None)  # e.g. DownloadError: paid, cost unknown
    assert started == 1
    assert ledger.decide(FOUR) == "skip"


# --- outcome_of_error --------------------------------------------------------------------------

_RETRY = RowOutcome("not_submitted", retry=True)
_STOP = RowOutcome("not_submitted", stop_submissions=True)
_FAILED_FREE = RowOutcome("failed")
_FAILED_PAID = RowOutcome("failed", paid=True)

_OUTCOMES: list[tuple[BaseException, RowOutcome]] = [
    (RateLimitedError("slow down", retry_after=2.0), _RETRY),
    (PaymentRequiredError("insufficient balance", status_code=402), _STOP),
    (AuthenticationError("invalid api key", status_code=401), _STOP),
    (
        GenerationFailedError("task_1", error_code="content_policy", error_message="no"),
        _FAILED_FREE,
    ),
    (GenerationCancelledError("task_1"), _FAILED_FREE),
    (InvalidRequestError("bad duration", status_code=400, code="invalid_duration"), _FAILED_FREE),
    (
        InvalidVideoRequestError([RequestProblem("invalid_duration", "duration", 7, "no")]),
        _FAILED_FREE,
    ),
    (SpendLimitReachedError("full", limit="n", spent=1.0, reserved=0.0, amount=1.0), _FAILED_FREE),
    (SubmissionOutcomeUnknownError("ab" * 32), _FAILED_PAID),
    (DownloadError("the transfer broke"), _FAILED_PAID),
    (VideoExpiredError("the URL expired"), _FAILED_PAID),
    (PollTimeoutError("task_1", waited_seconds=600.0, last_status="processing"), _FAILED_PAID),
    (ValueError("a bug"), _FAILED_PAID),
    (RuntimeError("something else"), _FAILED_PAID),
]


@pytest.mark.parametrize(("error", "expected"), _OUTCOMES, ids=lambda v: type(v).__name__)
def test_outcome_of_an_error(error: BaseException, expected: RowOutcome) -> None:
    """429 retries, 402/401 stop submissions, unpaid failures cost nothing, the rest is paid."""
    assert outcome_of_error(error) == expected


@pytest.mark.parametrize(("error", "expected"), _OUTCOMES, ids=lambda v: type(v).__name__)
def test_outcome_of_an_error_class(error: BaseException, expected: RowOutcome) -> None:
    """The class alone (all a deployment run's failure tells) gives the same outcome."""
    assert outcome_of_error(type(error)) == expected


# --- the report --------------------------------------------------------------------------------


def _items() -> list[BatchItem]:
    return [
        BatchItem(
            id="fox",
            line=1,
            prompt="a fox   in snow\n" + "and a very long description " * 4,
            status="archived",
            task_id="task_1",
            location="s3://videos/fox.mp4",
            cost=1.5,
            seconds=12.34,
            runs=2,
            task_run_id="tr-fox",
        ),
        BatchItem(
            id="kite",
            prompt="a kite",
            status="failed",
            error="DownloadError: broke",
            flow_run_id="run-kite",
        ),
        BatchItem(id="owl", status="archived", location="/data/owl.mp4", cost=2.25, resumed=True),
        BatchItem(id="bee", status="skipped_budget", error="would exceed the budget (spent 3.75)"),
    ]


def test_report_counts_every_status_and_sums_known_costs() -> None:
    """counts lists all six statuses (zeros too); total_cost adds the costs that are known."""
    report = BatchReport.of("b-1", _items(), wall_seconds=61.23456)
    assert report.counts == {
        "archived": 2,
        "failed": 1,
        "skipped_invalid": 0,
        "skipped_budget": 1,
        "skipped_spend_limit": 0,
        "not_submitted": 0,
    }
    assert report.total_cost == 3.75
    assert report.wall_seconds == 61.235
    assert [item.id for item in report.items] == ["fox", "kite", "owl", "bee"]


def test_total_cost_is_rounded() -> None:
    """Float noise does not leak into the total (0.1 + 0.2 is 0.3)."""
    items = [
        BatchItem(id=f"r{n}", status="archived", location="x", cost=cost)
        for n, cost in enumerate((0.1, 0.2))
    ]
    assert BatchReport.of("b", items, 0.0).total_cost == 0.3


def test_report_is_ok_only_when_every_row_was_archived() -> None:
    """One row not archived, whatever its status, makes the batch not ok."""
    archived = BatchItem(id="a", status="archived", location="x", cost=1.0)
    assert BatchReport.of("b", [archived], 1.0).ok
    assert BatchReport.of("b", [archived, archived.model_copy(update={"resumed": True})], 1.0).ok
    others = [status for status in ITEM_STATUSES if status != "archived"]
    assert len(others) == 5
    for status in others:
        other = BatchItem(id="o", status=status)
        assert not BatchReport.of("b", [archived, other], 1.0).ok, status


def test_headline() -> None:
    """The headline says how many were archived, the other statuses present, and the cost."""
    report = BatchReport.of("b-1", _items(), 1.0)
    assert report.headline() == (
        "2 of 4 videos archived (1 failed, 1 skipped budget), total cost 3.75"
    )
    clean = BatchReport.of("b-2", _items()[:1], 1.0)
    assert clean.headline() == "1 of 1 videos archived, total cost 1.5"


def test_report_table_has_one_row_per_item() -> None:
    """Each item becomes a row, in order, with its location or else its error."""
    rows = report_table(BatchReport.of("b-1", _items(), 1.0))
    assert [row["id"] for row in rows] == ["fox", "kite", "owl", "bee"]
    fox, kite, owl, bee = rows
    assert fox == {
        "id": "fox",
        "prompt": fox["prompt"],
        "status": "archived",
        "task_id": "task_1",
        "cost": "1.5",
        "seconds": "12.3",
        "runs": 2,
        "media": "",
        "location_or_error": "s3://videos/fox.mp4",
        "flow_run": "",
        "task_run": "tr-fox",
    }
    prompt = fox["prompt"]
    assert isinstance(prompt, str)
    assert prompt.startswith("a fox in snow and a very long")
    assert len(prompt) == 60
    assert "\n" not in prompt
    assert kite["location_or_error"] == "DownloadError: broke"
    assert (kite["cost"], kite["seconds"], kite["task_id"]) == ("", "", "")
    assert (kite["flow_run"], kite["task_run"]) == ("run-kite", "")
    assert owl["status"] == "archived (earlier run)"
    assert owl["location_or_error"] == "/data/owl.mp4"
    assert bee["prompt"] == ""
    assert bee["location_or_error"] == "would exceed the budget (spent 3.75)"


def test_report_markdown_names_the_batch_counts_and_budget() -> None:
    """The summary has the batch id, a count per status, the cost with the budget, and how to
    resume."""
    report = BatchReport.of("batch-42", _items(), 61.3)
    text = report_markdown(report, budget=5.0)
    assert text.startswith("# Batch batch-42\n")
    assert "2 of 4 videos archived (1 failed, 1 skipped budget), total cost 3.75." in text
    for line in (
        "| archived | 2 |",
        "| failed | 1 |",
        "| skipped_invalid | 0 |",
        "| skipped_budget | 1 |",
        "| not_submitted | 0 |",
    ):
        assert line in text.splitlines()
    assert "- Total cost: 3.75 (budget 5)" in text
    assert "- Wall time: 61.3 s" in text
    assert "batch_id `batch-42` to resume" in text
    assert "budget" not in report_markdown(report).replace("skipped budget", "").replace(
        "skipped_budget", ""
    )


def test_report_markdown_links_every_row_not_archived_to_its_run() -> None:
    """Rows not archived are listed with their status and a link to their video run when the
    run's page is known (its bare id otherwise); archived rows are not listed."""
    elk = BatchItem(id="elk", status="failed", error="GenerationFailedError", task_run_id="tr-elk")
    report = BatchReport.of("batch-42", [*_items(), elk], 61.3)
    linked = report_markdown(
        report,
        run_url=lambda run: f"http://ui/runs/flow-run/{run}",
        task_run_url=lambda run: f"http://ui/runs/task-run/{run}",
    )
    assert "| kite | failed |  | [run-kite](http://ui/runs/flow-run/run-kite) |" in linked
    assert "| elk | failed |  | [tr-elk](http://ui/runs/task-run/tr-elk) |" in linked
    assert "| bee | skipped_budget |  |  |" in linked
    assert "| fox |" not in linked
    assert "| kite | failed |  | run-kite |" in report_markdown(report)


def test_summary_shows_the_spend_limit_as_the_batch_left_it() -> None:
    """With a spend limit, the summary says what every run naming it has spent of it."""
    view = SpendLimitView(
        name="nightly",
        limit=2.0,
        period="UTC day",
        rolling_hours=None,
        window_start=datetime(2026, 12, 3, tzinfo=UTC),
        spent=1.6,
        reserved=0.4,
        remaining=0.0,
        videos=4,
        in_flight=1,
        holders=1,
    )
    report = BatchReport.of("b", _items(), 1.0)
    shown = report_markdown(report, spend_limit=view)
    assert (
        "- Spend limit `nightly`: 1.6 of 2 spent per UTC day by every run naming it "
        "(reserved 0.4, since 2026-12-03T00:00+00:00)" in shown
    )
    assert "Spend limit" not in report_markdown(report)
