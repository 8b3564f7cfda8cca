"""Sync flows, the usual Prefect style: the tasks and flows called directly return results, as
prefect-aws's sync tasks do, and ``.submit()`` works on all of them."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from uuid import UUID

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.runtime import flow_run

from omniflash_prefect import (
    ArchivedVideo,
    BatchReport,
    VideoRequest,
    VideoTask,
    archive_video,
    fetch_video,
    generate_video,
    generate_video_batch,
    poll_video,
    submit_video,
)
from omniflash_prefect.emulator import EmulatorServer


def assert_intact(video: ArchivedVideo, emulator: EmulatorServer) -> None:
    content = Path(video.location).read_bytes()
    assert hashlib.sha256(content).hexdigest() == emulator.state.video_sha256(video.task_id)


def test_tasks_called_directly_in_a_sync_flow_return_results(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """submit_video, poll_video (with changed options) and archive_video called directly return
    a task id, a completed task and an archived video; their ``.submit()`` futures too."""

    @flow
    def pipeline() -> tuple[str, VideoTask, ArchivedVideo, ArchivedVideo]:
        request = VideoRequest(prompt="A pebble dropped in a well", duration=4)
        task_id = submit_video(request, credentials_block=credentials_block)
        video = poll_video.with_options(retries=0)(task_id, credentials_block=credentials_block)
        archived = archive_video(video, request=request, credentials_block=credentials_block)
        other = VideoRequest(prompt="A pebble skipping on a lake", duration=4)
        submitted = submit_video.submit(other, credentials_block=credentials_block)
        polled = poll_video.submit(submitted.result(), credentials_block=credentials_block)
        kept = archive_video.submit(
            polled.result(), request=other, credentials_block=credentials_block
        )
        return task_id, video, archived, kept.result()

    task_id, video, archived, kept = pipeline()
    assert isinstance(video, VideoTask)
    assert video.id == task_id
    assert video.status == "completed"
    assert archived.task_id == task_id
    assert kept.task_id != task_id
    assert_intact(archived, emulator)
    assert_intact(kept, emulator)
    assert emulator.state.submission_count == 2


def test_flows_called_from_a_sync_flow_run_as_its_subflows(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """generate_video, fetch_video and generate_video_batch called in a sync flow run as child
    runs of it and return their results (a batch its state, with ``return_state=True``)."""

    @flow
    def parent() -> tuple[ArchivedVideo, ArchivedVideo, BatchReport, str]:
        made = generate_video(
            prompt="A comet over a desert", duration=4, credentials_block=credentials_block
        )
        again = fetch_video(
            task_id=made.task_id, credentials_block=credentials_block, archive_prefix="again"
        )
        state = generate_video_batch(
            requests=[{"id": "one", "prompt": "A comet's tail", "duration": 4}],
            credentials_block=credentials_block,
            return_state=True,
        )
        return made, again, state.result(), str(flow_run.get_id())

    made, again, report, parent_id = parent()
    assert_intact(made, emulator)
    assert_intact(again, emulator)
    assert again.task_id == made.task_id
    assert again.location != made.location
    assert report.ok
    assert emulator.state.submission_count == 2

    async def children() -> set[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(parent_id)])
                )
            )
        return {run.name for run in runs}

    names = asyncio.run(children())
    assert len(names) == 3
    assert f"fetch-{made.task_id}" in names
