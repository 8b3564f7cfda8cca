"""The generate_video flow on a real Prefect server against the emulator over loopback."""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import artifacts, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from omniflash_prefect import (
    ArchivedVideo,
    OmniFlashClient,
    VideoRequest,
    agenerate_video_task,
    generate_video,
)
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.video import observability, one_video, tasks
from omniflash_prefect.video.observability import artifact_key
from tests.support.api_calls import prefect_503
from tests.support.server_reads import omniflash_events, run_artifacts


async def test_one_video_end_to_end_is_observable(
    emulator: EmulatorServer, credentials_block: str, fast_settings: Path
) -> None:
    """Submit, poll, archive: the video is byte-exact, and the run shows progress 100, a link, a
    summary, tags and the four lifecycle events."""
    state = await generate_video(
        prompt="A red kite over green hills, aerial tracking shot",
        duration=4,
        resolution="1080P",
        credentials_block=credentials_block,
        return_state=True,
    )
    archived = await state.aresult()
    assert isinstance(archived, ArchivedVideo)
    video = Path(archived.location)
    assert video.is_relative_to(fast_settings / "omniflash")
    assert hashlib.sha256(video.read_bytes()).hexdigest() == archived.sha256
    assert archived.sha256 == emulator.state.video_sha256(archived.task_id)
    assert archived.cost == pytest.approx(0.24)
    sidecar = json.loads(Path(archived.sidecar_location).read_text())
    assert sidecar["task_id"] == archived.task_id
    assert sidecar["request"]["resolution"] == "1080p"
    assert sidecar["sha256"] == archived.sha256
    assert emulator.state.submission_count == 1

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
    assert run.name.startswith("A red kite over green hills")
    assert {"omniflash", "1080p", "4s"} <= set(run.tags)

    artifacts = {a.key: a for a in await run_artifacts(flow_run_id)}
    assert artifacts[artifact_key("progress", archived.task_id)].data == 100
    assert video.as_uri() in str(artifacts[artifact_key("video", archived.task_id)].data)
    summary = str(artifacts[artifact_key("summary", archived.task_id)].data)
    assert archived.task_id in summary
    assert archived.sha256 in summary

    events = await omniflash_events(archived.task_id, {"submitted", "completed", "archived"})
    names = {event.event.removeprefix("omniflash.video.") for event in events}
    assert {"submitted", "completed", "archived"} <= names
    related = {r.id for event in events for r in event.related}
    assert f"prefect.flow-run.{flow_run_id}" in related


@pytest.fixture
def progress_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Every write of a progress artifact by ``poll_video``: ("create" | "update", value)."""
    writes: list[tuple[str, float]] = []
    create, update = (
        observability.acreate_task_progress_artifact,
        artifacts.aupdate_progress_artifact,
    )

    async def creating(task_id: str, progress: float, description: str | None = None) -> Any:
        writes.append(("create", progress))
        return await create(task_id, progress, description)

    async def updating(artifact_id: Any, progress: float, description: str | None = None) -> Any:
        writes.append(("update", progress))
        return await update(artifact_id, progress, description)

    monkeypatch.setattr(observability, "acreate_task_progress_artifact", creating)
    monkeypatch.setattr(observability, "aupdate_progress_artifact", updating)
    return writes


@flow
async def poll_in_a_flow(
    task_id: str, credentials_block: str, first_poll_delay: float | None
) -> Any:
    return await tasks.poll_video(
        task_id, credentials_block=credentials_block, first_poll_delay=first_poll_delay
    )


async def _submitted_task(emulator: EmulatorServer) -> str:
    client = OmniFlashClient(api_key=emulator.api_key, base_url=emulator.base_url)
    async with client:
        return await client.submit(VideoRequest(prompt="A paper boat on a pond", duration=4))


async def test_progress_artifact_follows_readings_in_steps(
    emulator: EmulatorServer,
    credentials_block: str,
    progress_writes: list[tuple[str, float]],
) -> None:
    """The progress artifact is created at the first reading, then moves in steps of at least
    PROGRESS_STEP points, up to 100: a few writes per video, not one per poll."""
    # Long enough for many more polls than the at most 11 writes, even on a loaded machine.
    emulator.config.job_seconds = 3.0
    task_id = await _submitted_task(emulator)
    done = await poll_in_a_flow(task_id, credentials_block, None)
    assert done.status == "completed"
    polls = emulator.state.snapshot()["tasks"][task_id]["polls"]
    kinds = [kind for kind, _ in progress_writes]
    values = [value for _, value in progress_writes]
    assert kinds == ["create"] + ["update"] * (len(kinds) - 1)
    assert values[-1] == 100
    assert all(b - a >= observability.PROGRESS_STEP for a, b in itertools.pairwise(values[:-1]))
    assert len(progress_writes) < polls
    async with get_client() as client:
        (artifact,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key("progress", task_id)])
            )
        )
    assert artifact.metadata_ == {observability.TASK_ID_METADATA: task_id}


async def test_progress_artifact_of_a_finished_task_is_written_once(
    emulator: EmulatorServer,
    credentials_block: str,
    progress_writes: list[tuple[str, float]],
) -> None:
    """Resuming a task that is already done shows 100 at once: one write, no update from 0."""
    emulator.config.job_seconds = 0.0  # done the moment it is submitted
    task_id = await _submitted_task(emulator)
    await poll_in_a_flow(task_id, credentials_block, 0.0)
    assert progress_writes == [("create", 100.0)]


@flow
async def video_as_a_task_run(**parameters: Any) -> ArchivedVideo:
    """``generate_video_task`` inside a flow of the user's."""
    archived: ArchivedVideo = await agenerate_video_task(**parameters)
    return archived


@pytest.mark.parametrize("as_task_run", [False, True], ids=["flow-run", "task-run"])
async def test_one_body_two_runs_with_the_same_retries_and_cache(
    emulator: EmulatorServer,
    credentials_block: str,
    monkeypatch: pytest.MonkeyPatch,
    as_task_run: bool,
) -> None:
    """``generate_video`` and ``generate_video_task`` run one body: the first progress write
    gets a 503 from the Prefect API and the poll is tried again (no failed video), and a rerun
    with the same key reads the completed task from the records (no status call, no POST)."""
    refused: list[str] = []
    create = observability.acreate_task_progress_artifact

    async def busy_once(task_id: str, progress: float, description: str | None = None) -> Any:
        if not refused:
            refused.append(task_id)
            raise prefect_503()
        return await create(task_id, progress, description)

    monkeypatch.setattr(observability, "acreate_task_progress_artifact", busy_once)
    monkeypatch.setattr(one_video, "POLL_RETRY_DELAYS", (0.0, 0.0))
    make = video_as_a_task_run if as_task_run else generate_video
    parameters = {
        "prompt": "A lantern drifting on a river",
        "duration": 4,
        "credentials_block": credentials_block,
        "idempotency_key": f"body-{uuid.uuid4()}",
    }
    first = await make(**parameters)
    assert refused == [first.task_id]
    polls = emulator.state.polls(first.task_id)
    again = await make(**parameters)
    assert again == first
    assert emulator.state.polls(first.task_id) == polls
    assert emulator.state.submission_count == 1
