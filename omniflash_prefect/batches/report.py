"""Batches, the pure part: how a row ended, the report, and what the batch run shows.

No I/O here: :mod:`omniflash_prefect.batches.flow` runs the rows and calls into this module to
classify how a row ended (:func:`outcome_of_error`) and to render the report
(:func:`report_table`, :func:`report_markdown`). Whether a row may start is the spend rule of
:mod:`omniflash_prefect.core.spending`, the same for the batch's budget and a named spend limit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from omniflash_prefect.core.media import MediaCheck
from omniflash_prefect.core.spending import SpendLimitView
from omniflash_prefect.errors import (
    AuthenticationError,
    PaymentRequiredError,
    RateLimitedError,
    may_have_been_charged,
)
from omniflash_prefect.video.observability import short_prompt, table_cell, table_section

ItemStatus = Literal[
    "archived",
    "failed",
    "skipped_invalid",
    "skipped_budget",
    "skipped_spend_limit",
    "not_submitted",
]
ITEM_STATUSES: tuple[ItemStatus, ...] = get_args(ItemStatus)


class BatchItem(BaseModel):
    """How one manifest row ended."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The row id (given, or row-<line>).")
    line: int | None = Field(default=None, description="Manifest line, when read from a file.")
    prompt: str | None = Field(default=None, description="The row's prompt.")
    status: ItemStatus
    task_id: str | None = Field(default=None, description="Provider task id, once submitted.")
    location: str | None = Field(default=None, description="Where the video was archived.")
    sha256: str | None = Field(default=None, description="SHA-256 of the archived video.")
    cost: float | None = Field(default=None, description="What the provider charged.")
    seconds: float | None = Field(default=None, description="Wall time of the row in this run.")
    error: str | None = Field(default=None, description="Why the row did not get archived.")
    flow_run_id: str | None = Field(
        default=None,
        description="The slice's flow run the row's task run ran in (fan_out 'deployments').",
    )
    task_run_id: str | None = Field(
        default=None, description="The row's generate-video task run (fan_out 'tasks')."
    )
    resumed: bool = Field(
        default=False, description="Already archived by an earlier run of this batch."
    )
    runs: int = Field(
        default=0,
        description="Video runs the row took in this batch run: more than 1 when a run was lost "
        "(its worker died) and the row ran again.",
    )
    media: MediaCheck | None = Field(
        default=None, description="What the archived file holds, and whether it is as asked."
    )
    preview_keys: dict[str, str] = Field(
        default_factory=dict, description="Keys of the video's previews in its storage."
    )

    @property
    def media_flagged(self) -> bool:
        """Archived, but not what was asked for, or unreadable."""
        return self.media is not None and self.media.flagged


class BatchReport(BaseModel):
    """What a batch did: one item per row, in manifest order, and the totals."""

    model_config = ConfigDict(frozen=True)

    batch_id: str
    items: tuple[BatchItem, ...]
    counts: dict[str, int]
    total_cost: float
    wall_seconds: float

    @property
    def ok(self) -> bool:
        """True when every row was archived."""
        return all(item.status == "archived" for item in self.items)

    @property
    def media_flagged(self) -> list[BatchItem]:
        """The archived rows whose video is not what was asked for, or unreadable."""
        return [item for item in self.items if item.media_flagged]

    @classmethod
    def of(cls, batch_id: str, items: list[BatchItem], wall_seconds: float) -> BatchReport:
        """The report of these items: counts per status (all statuses listed) and total cost."""
        tally = Counter(item.status for item in items)
        return cls(
            batch_id=batch_id,
            items=tuple(items),
            counts={status: tally.get(status, 0) for status in ITEM_STATUSES},
            total_cost=round(sum(item.cost or 0.0 for item in items), 6),
            wall_seconds=round(wall_seconds, 3),
        )

    def headline(self) -> str:
        """One line: how many rows were archived, the rest by status, and the cost."""
        rest = ", ".join(
            f"{count} {status.replace('_', ' ')}"
            for status, count in self.counts.items()
            if count and status != "archived"
        )
        verdicts: Counter[str] = Counter(
            item.media.verdict for item in self.media_flagged if item.media
        )
        flags = "".join(
            f", {verdicts[verdict]} {words}"
            for verdict, words in (("mismatch", "not as asked"), ("unreadable", "unreadable"))
            if verdicts[verdict]
        )
        return (
            f"{self.counts.get('archived', 0)} of {len(self.items)} videos archived"
            + (f" ({rest})" if rest else "")
            + flags
            + f", total cost {self.total_cost:g}"
        )


@dataclass(frozen=True)
class RowOutcome:
    """How a row's generation attempt failed, as the batch must act on it."""

    status: ItemStatus
    retry: bool = False  # refused for now (429): try the row again later
    stop_submissions: bool = False  # no later submission can succeed (402, 401)
    paid: bool = False  # the video may have been paid for (count its estimate as spent)


def outcome_of_error(error: BaseException | type[BaseException]) -> RowOutcome:
    """What the batch does after a row's run raised ``error`` (an exception, or its class: all
    that is known of a deployment run's failure).

    A 429 that outlived the client's retries is a certain refusal, so the row is tried again after
    a pause. 402 (balance) and 401 (key) refuse every later submission too. Any other failure
    fails the row, counted as paid when the error's class says the video may have been paid for
    (:func:`~omniflash_prefect.errors.may_have_been_charged`).
    """
    kind = error if isinstance(error, type) else type(error)
    if issubclass(kind, RateLimitedError):
        return RowOutcome("not_submitted", retry=True)
    if issubclass(kind, PaymentRequiredError | AuthenticationError):
        return RowOutcome("not_submitted", stop_submissions=True)
    return RowOutcome("failed", paid=may_have_been_charged(kind))


def report_table(report: BatchReport) -> list[dict[str, object]]:
    """The rows of the batch's table artifact: one per video, with the run that made it."""
    return [
        {
            "id": item.id,
            "prompt": short_prompt(item.prompt or "", 60),
            "status": item.status + (" (earlier run)" if item.resumed else ""),
            "task_id": item.task_id or "",
            "cost": "" if item.cost is None else f"{item.cost:g}",
            "seconds": "" if item.seconds is None else f"{item.seconds:.1f}",
            "runs": item.runs,
            "media": item.media.describe() if item.media is not None else "",
            "location_or_error": item.location or item.error or "",
            "flow_run": item.flow_run_id or "",
            "task_run": item.task_run_id or "",
        }
        for item in report.items
    ]


def report_markdown(
    report: BatchReport,
    *,
    budget: float | None = None,
    run_url: Callable[[str], str | None] | None = None,
    task_run_url: Callable[[str], str | None] | None = None,
    thumbnails: Mapping[str, str] | None = None,
    spend_limit: SpendLimitView | None = None,
) -> str:
    """The batch's markdown summary: counts, total cost (and the ``spend_limit`` it counted
    on, as it stood when the batch ended), wall time, every row that was not
    archived or not as asked, linked to its video run (``run_url`` and ``task_run_url`` turn a
    flow run's or a task run's id into its page), and a gallery of ``thumbnails`` (``data:``
    URIs by row id, already bounded by the caller), each linked to its video's run."""

    def link(item: BatchItem) -> str:
        run_id = item.flow_run_id or item.task_run_id
        url = _run_url(item, run_url, task_run_url)
        return f"[{run_id}]({url})" if url else run_id or ""

    lines = [
        f"# Batch {report.batch_id}",
        "",
        report.headline() + ".",
        "",
        "| Status | Videos |",
        "|---|---|",
        *(f"| {status} | {count} |" for status, count in report.counts.items()),
        "",
        *_totals(report, budget, spend_limit),
    ]
    unfinished = [item for item in report.items if item.status != "archived"]
    lines += table_section(
        "Rows not archived",
        ["Row", "Status", "Task id", "Run"],
        [[item.id, item.status, item.task_id or "", link(item)] for item in unfinished],
    )
    lines += table_section(
        "Videos not as asked",
        ["Row", "Media check", "Run"],
        [
            [item.id, table_cell(item.media.describe() if item.media else ""), link(item)]
            for item in report.media_flagged
        ],
    )
    if thumbnails:
        archived = sum(1 for item in report.items if item.status == "archived")
        lines += ["", "## Gallery", "", f"The first {len(thumbnails)} of {archived} videos.", ""]
        for item in report.items:
            uri = thumbnails.get(item.id)
            if uri is None:
                continue
            image = f"![{item.id}]({uri})"
            url = _run_url(item, run_url, task_run_url)
            lines.append(f"[{image}]({url})" if url else image)
    return "\n".join(lines) + "\n"


def _totals(
    report: BatchReport, budget: float | None, spend_limit: SpendLimitView | None
) -> list[str]:
    """The summary's list of totals: cost, the spend limit as the batch left it, wall time."""
    lines = [f"- Total cost: {report.total_cost:g}" + (f" (budget {budget:g})" if budget else "")]
    if spend_limit is not None:
        lines.append(
            f"- Spend limit `{spend_limit.name}`: {spend_limit.spent:g} of "
            f"{spend_limit.limit:g} spent per {spend_limit.period} by every run naming it "
            f"(reserved {spend_limit.reserved:g}, since "
            f"{spend_limit.window_start.isoformat(timespec='minutes')})"
        )
    return [
        *lines,
        f"- Wall time: {report.wall_seconds:.1f} s",
        f"- Re-run with batch_id `{report.batch_id}` to resume: archived rows are kept, "
        "submitted rows are polled, only rows never submitted are submitted.",
    ]


def _run_url(
    item: BatchItem,
    run_url: Callable[[str], str | None] | None,
    task_run_url: Callable[[str], str | None] | None,
) -> str | None:
    """The page of the row's video run, a flow run or else a task run, when known."""
    run_id, page_of = item.flow_run_id, run_url
    if run_id is None:
        run_id, page_of = item.task_run_id, task_run_url
    if run_id is None or page_of is None:
        return None
    return page_of(run_id)
