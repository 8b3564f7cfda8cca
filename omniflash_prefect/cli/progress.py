"""How far a run has got, read back from the artifacts it writes to the Prefect API.

A command follows its run the way the Prefect UI does, through the run's own artifacts, rather
than through callbacks into the flow: the same reading works for a run in this process and for
one on a worker, and showing progress never changes what the run does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import Artifact

from omniflash_prefect.video.observability import TASK_ID_METADATA, artifact_key

_PROGRESS_KEY_PREFIX: Final = artifact_key("progress", "") + "-"
_VIDEO_KEY_PREFIX: Final = artifact_key("video", "") + "-"
_BATCH_PROGRESS_PREFIX: Final = artifact_key("batch-progress", "")


@dataclass(frozen=True)
class RunProgress:
    """How far a flow run has got, as read back from the Prefect API."""

    stage: str
    percent: float
    task_id: str | None = None
    #: Every task the run has paid for so far (a batch's rows, or the one video).
    task_ids: tuple[str, ...] = ()


ProgressCallback = Callable[[RunProgress], None]


def progress_from_artifacts(artifacts: Sequence[Artifact]) -> RunProgress:
    """The stage of a ``generate_video`` run from the artifacts it has written so far.

    ``poll_video`` creates a progress artifact (its metadata naming the task) when it starts and
    moves it with the API's progress, up to 100 when the video is ready; the run adds a link
    artifact once the video is archived.
    """
    progress = [a for a in artifacts if (a.key or "").startswith(_PROGRESS_KEY_PREFIX)]
    paid = paid_task_ids(progress)
    first = paid[0] if paid else None
    if any((a.key or "").startswith(_VIDEO_KEY_PREFIX) for a in artifacts):
        return RunProgress("archived", 100.0, first, paid)
    if not progress:
        return RunProgress("submitting", 0.0)
    values = [float(a.data) for a in progress if isinstance(a.data, int | float)]
    percent = min(max(values, default=0.0), 100.0)
    stage = "downloading" if percent >= 100 else "generating"
    return RunProgress(stage, percent, first, paid)


def paid_task_ids(artifacts: Sequence[Artifact]) -> tuple[str, ...]:
    """The tasks named by progress artifacts, in the order they were created, once each: a
    progress artifact is created as soon as its task is submitted, so these are the tasks paid
    for."""
    named = (
        (artifact.metadata_ or {}).get(TASK_ID_METADATA)
        for artifact in sorted(artifacts, key=_creation_time)
        if (artifact.key or "").startswith(_PROGRESS_KEY_PREFIX)
    )
    return tuple(dict.fromkeys(task_id for task_id in named if task_id))


def _creation_time(artifact: Artifact) -> float:
    return artifact.created.timestamp() if artifact.created is not None else 0.0


async def read_artifacts_of(client: PrefectClient, flow_run_id: UUID) -> list[Artifact]:
    """Every artifact of a flow run, those of its task runs included."""
    return await client.read_artifacts(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )


async def read_run_progress(client: PrefectClient, flow_run_id: UUID) -> RunProgress:
    """One read of a ``generate_video`` (or ``fetch_video``) run's progress."""
    return progress_from_artifacts(await read_artifacts_of(client, flow_run_id))


async def read_batch_progress(client: PrefectClient, flow_run_id: UUID) -> RunProgress | None:
    """One read of a ``generate_video_batch`` run's progress: the percent of rows done, if shown
    yet, and the tasks its rows have paid for (rows run as task runs of the batch run; those of
    another run, ``fan_out="deployments"``, are not read here)."""
    artifacts = await read_artifacts_of(client, flow_run_id)
    percent: float | None = None
    for artifact in artifacts:
        key = artifact.key or ""
        if key.startswith(_BATCH_PROGRESS_PREFIX) and isinstance(artifact.data, int | float):
            percent = float(artifact.data)
    paid = paid_task_ids(artifacts)
    if percent is None and not paid:
        return None
    return RunProgress("videos", percent or 0.0, paid[0] if paid else None, paid)
