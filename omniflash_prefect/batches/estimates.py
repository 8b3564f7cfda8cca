"""What a batch would cost, before anything is sent: ``omniflash batch --dry-run``.

Pure. Each row's estimate is the batch's: ``cost_estimate`` when given, else the highest price
seen for its price class (duration and resolution) on the spend limit, else unknown. Rows are
counted in manifest order against the budget and the limit's room, the way the batch would start
them with every estimate exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.spending import price_class_of


class ClassEstimate(BaseModel):
    """The rows of one price class and what they are expected to cost."""

    price_class: str = Field(description="Duration and resolution, e.g. '10s/720p'.")
    videos: int
    estimate: float | None = Field(description="Expected cost of one video; None: unknown.")
    total: float | None = Field(description="videos x estimate; None: unknown.")


class BatchEstimate(BaseModel):
    """The expected cost of a manifest's valid rows, and how many fit the budget and limit."""

    videos: int
    classes: list[ClassEstimate]
    estimated_total: float = Field(description="The total of the classes whose price is known.")
    unpriced_videos: int = Field(description="Rows of a class with no estimate yet.")
    budget: float | None = None
    fit_budget: int | None = Field(
        default=None, description="Rows that would start within the budget, in manifest order."
    )
    room: float | None = Field(default=None, description="What the spend limit has left now.")
    fit_limit: int | None = Field(
        default=None, description="Rows that would start within the limit's room, in order."
    )


def _fitting(estimates: Sequence[float | None], room: float) -> int:
    """How many rows start, in order, while their estimates fit in ``room`` (a row of unknown
    price starts while anything is left, as a batch's probe would)."""
    spent, count = 0.0, 0
    for estimate in estimates:
        if estimate is None:
            if spent >= room:
                continue
            count += 1
            continue
        if spent + estimate <= room + 1e-9:
            spent += estimate
            count += 1
    return count


def estimate_batch(
    requests: Sequence[VideoRequest],
    *,
    cost_estimate: float | None = None,
    prices: Mapping[str, float] | None = None,
    budget: float | None = None,
    room: float | None = None,
) -> BatchEstimate:
    """The estimate of ``requests``; ``prices`` are the highest seen per class, ``room`` what a
    spend limit has left."""
    known = prices or {}
    per_row: list[float | None] = []
    classes: dict[str, list[float | None]] = {}
    for request in requests:
        price_class = price_class_of(request)
        estimate = cost_estimate if cost_estimate is not None else known.get(price_class)
        per_row.append(estimate)
        classes.setdefault(price_class, []).append(estimate)
    summaries = [
        ClassEstimate(
            price_class=name,
            videos=len(rows),
            estimate=rows[0],
            total=None if rows[0] is None else round(rows[0] * len(rows), 6),
        )
        for name, rows in sorted(classes.items())
    ]
    return BatchEstimate(
        videos=len(requests),
        classes=summaries,
        estimated_total=round(sum(c.total for c in summaries if c.total is not None), 6),
        unpriced_videos=sum(c.videos for c in summaries if c.estimate is None),
        budget=budget,
        fit_budget=None if budget is None else _fitting(per_row, budget),
        room=room,
        fit_limit=None if room is None else _fitting(per_row, room),
    )
