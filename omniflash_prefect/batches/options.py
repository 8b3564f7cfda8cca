"""How a batch runs, declared once: :class:`BatchRunOptions` is the ``options`` parameter of the
``generate_video_batch`` flow (Prefect validates it, and the UI shows it as one form), and
``omniflash batch`` takes its option defaults and help from it.

Pure: no Prefect and no I/O, so the rules are unit-tested alone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from omniflash_prefect.errors import UsageError

DEFAULT_DEPLOYMENT: Final = "generate-video-batch/generate-video-batch"
#: What a deployment run of a row may take beyond the poll deadline: waiting for a worker,
#: starting, and archiving the video.
ROW_MARGIN_SECONDS: Final = 900.0


class FanOut(StrEnum):
    """Where a batch runs its videos.

    ``tasks`` (the default): each video is a ``generate-video`` task run of the batch run, in
    its process, with its submit, poll and archive inside it; task runs reach the server as
    events over one connection, which costs the server a fraction of a flow run.
    ``deployments``: the rows go out in slices of ``rows_per_run``, each a run of the batch's
    deployment that any worker of its pool picks up and that makes its rows the same way, as
    task runs, all in flight at once: a worker holds a slice of videos in one process.
    """

    TASKS = "tasks"
    DEPLOYMENTS = "deployments"


class BatchRunOptions(BaseModel):
    """The knobs of a batch run (not what it makes, nor where the videos and records go)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    skip_invalid: bool = Field(
        default=False,
        description="Report invalid rows as skipped_invalid instead of refusing to start.",
    )
    batch_id: str | None = Field(
        default=None,
        description="Names the batch; run again with the same id to resume it "
        "(default: the run's id).",
    )
    max_concurrency: int = Field(
        default=8, ge=1, description="Videos in flight at once in this run."
    )
    concurrency_limit: str | None = Field(
        default=None,
        description="Name of a Prefect global concurrency limit that caps videos in flight "
        "across every run and worker using it ('prefect gcl create NAME --limit N').",
    )
    budget: float | None = Field(
        default=None,
        gt=0,
        description="Never start a video that could take the batch's spend past this.",
    )
    cost_estimate: float | None = Field(
        default=None,
        ge=0,
        description="Expected cost of one video (default: learnt from finished ones).",
    )
    check_balance: bool = Field(
        default=False,
        description="Read the balance first; refuse to start if it cannot cover the budget.",
    )
    fan_out: FanOut = Field(
        default=FanOut.TASKS,
        description="'tasks' (task runs of this run) or 'deployments' (slices of rows_per_run "
        "rows, each a run of deployment_name that any worker of its pool picks up).",
    )
    rows_per_run: int = Field(
        default=250,
        ge=1,
        description="With fan_out='deployments', the rows one deployment run makes at once "
        "(one process, or one pod, holds that many videos in flight).",
    )
    deployment_name: str = Field(
        default=DEFAULT_DEPLOYMENT,
        description="The generate_video_batch deployment that runs the slices of "
        "fan_out='deployments'.",
    )
    row_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="With fan_out='deployments', how long to wait for a slice's run before its "
        "unfinished rows count as lost and run again (default: the poll deadline plus "
        f"{ROW_MARGIN_SECONDS:g} s to wait for a worker and archive).",
    )

    @classmethod
    def checked(cls, **options: Any) -> BatchRunOptions:
        """The options, or :class:`UsageError` naming every one out of range."""
        try:
            return cls(**options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise UsageError(f"invalid batch options: {problems}") from None

    def row_deadline(self, poll_timeout_seconds: float) -> float:
        """How long one deployment run of a row may take before it counts as lost."""
        if self.row_timeout_seconds is not None:
            return self.row_timeout_seconds
        return poll_timeout_seconds + ROW_MARGIN_SECONDS
