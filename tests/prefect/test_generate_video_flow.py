"""The generate_video flow on a real Prefect server against the emulator over loopback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from omniflash_prefect import ArchivedVideo, generate_video
from omniflash_prefect.emulator import EmulatorServer, video_sha256
from omniflash_prefect.observability import artifact_key
from tests.prefect.helpers import omniflash_events, run_artifacts


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
    assert archived.sha256 == video_sha256(archived.task_id, None)
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
