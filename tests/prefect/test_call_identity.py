"""Which calls are the same video and which are new ones: takes within a run, reuse on retry,
explicit keys across runs."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

from prefect import flow, unmapped

from omniflash_prefect import (
    ArchivedVideo,
    VideoRequest,
    archive_video,
    asubmit_video,
    poll_video,
    submit_video,
)
from omniflash_prefect.emulator import EmulatorServer


def test_map_with_duplicates_and_a_retry_pays_once_per_call(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A sync flow with ``retries=1`` maps submit, poll and archive over four prompts, two of
    them identical (two takes of one shot); its first attempt fails after all four were
    submitted. The retry reuses the four videos one for one: four submissions, four distinct
    videos archived, each byte-exact."""
    prompts = ["A fox in deep snow", "A heron at dawn", "A heron at dawn", "Fog over a bay"]
    attempts: list[list[str]] = []

    @flow(retries=1, retry_delay_seconds=0)
    def storyboard() -> list[ArchivedVideo]:
        requests = [VideoRequest(prompt=prompt, duration=4) for prompt in prompts]
        task_ids = submit_video.map(requests, credentials_block=unmapped(credentials_block))
        attempts.append([future.result() for future in task_ids])
        if len(attempts) == 1:
            raise RuntimeError("the worker was lost after submitting")
        videos = poll_video.map(task_ids, credentials_block=unmapped(credentials_block))
        archived = archive_video.map(
            videos, request=requests, credentials_block=unmapped(credentials_block)
        )
        return [future.result() for future in archived]

    archived = storyboard()
    first, retried = attempts
    assert len(set(first)) == 4
    assert sorted(retried) == sorted(first)
    assert retried[0] == first[0]  # a unique prompt keeps its own video
    assert retried[3] == first[3]
    assert emulator.state.submission_count == 4
    assert {video.task_id for video in archived} == set(first)
    for video in archived:
        content = Path(video.location).read_bytes()
        assert hashlib.sha256(content).hexdigest() == emulator.state.video_sha256(video.task_id)


async def test_identical_calls_in_one_run_are_takes_and_a_key_is_one_video(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """Without a key, two identical calls gathered in one run are two videos; with one
    ``idempotency_key`` they are one, in this run and in the next."""
    request = VideoRequest(prompt="A lighthouse beam sweeping fog", duration=4)
    key = f"campaign-{uuid.uuid4()}"

    @flow
    async def takes() -> tuple[list[str], list[str]]:
        free = await asyncio.gather(
            asubmit_video(request, credentials_block), asubmit_video(request, credentials_block)
        )
        keyed = await asyncio.gather(
            asubmit_video(request, credentials_block, idempotency_key=key),
            asubmit_video(request, credentials_block, idempotency_key=key),
        )
        return list(free), list(keyed)

    (take_a, take_b), (keyed_a, keyed_b) = await takes()
    assert take_a != take_b
    assert keyed_a == keyed_b
    assert keyed_a not in (take_a, take_b)
    assert emulator.state.submission_count == 3
    (_, again) = await takes()
    assert set(again) == {keyed_a}
    assert emulator.state.submission_count == 5
