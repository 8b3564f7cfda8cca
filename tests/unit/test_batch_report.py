"""The pure part of batches: how a failed row ends, and the report."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from omniflash_prefect.batches.report import (
    ITEM_STATUSES,
    BatchItem,
    BatchReport,
    RowOutcome,
    outcome_of_error,
    report_markdown,
    report_table,
)
from omniflash_prefect.core.spending import SpendLimitView
from omniflash_prefect.errors import (
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
