"""Salvage on a real Prefect server against the emulator over loopback: paid videos that no run
will archive (a pipeline that failed after ``submit_video``, a run that timed out, a batch cut
short) are found from their records and archived where their run would have put them, once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore
from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH
from typer.testing import CliRunner

from omniflash_prefect import (
    BatchRunOptions,
    OmniFlashClient,
    OmniFlashError,
    VideoRequest,
    asubmit_video,
    generate_video,
    generate_video_batch,
    sweep_paid_videos,
)
from omniflash_prefect.batches.manifest import manifest_from_records
from omniflash_prefect.batches.records import row_idempotency_key
from omniflash_prefect.batches.report import BatchReport
from omniflash_prefect.cli import app
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.video.claims import current_record_storage, record_store
from omniflash_prefect.video.salvage import IN_FLIGHT_GRACE_SECONDS, SweepReport
from omniflash_prefect.video.submissions import (
    SubmissionRecord,
    read_submission,
    release_submission,
    submission_key,
    write_submission,
)
from tests.support.server_reads import omniflash_events


async def sweep(**parameters: object) -> SweepReport:
    state = await sweep_paid_videos(return_state=True, **parameters)
    report = await state.aresult(raise_on_failure=False)
    assert isinstance(report, SweepReport)
    return report


async def completed(emulator: EmulatorServer, task_id: str) -> None:
    """Until the emulator's task is done (read as a client would: one status call a poll)."""
    async with OmniFlashClient(emulator.api_key, base_url=emulator.base_url) as client:
        await client.wait(task_id, first_poll_delay=0.0)


async def state_message(flow_run_id: UUID | None) -> str:
    assert flow_run_id is not None
    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
    assert run.state is not None
    return run.state.message or ""


def only_task(emulator: EmulatorServer) -> str:
    (task_id,) = emulator.state.snapshot()["tasks"]
    return str(task_id)


async def test_a_pipeline_failing_after_submit_video_leaves_a_video_the_sweep_archives(
    emulator: EmulatorServer, credentials_block: str, fast_settings: Path
) -> None:
    """The user's flow fails between ``submit_video`` and ``archive_video``: its run is tagged
    ``omniflash`` (the sweep's Automation watches those); the sweep scoped to it archives the
    video byte-exact in its default place, and a second sweep reads neither the provider nor
    the video again."""

    @flow
    async def pipeline() -> None:
        await asubmit_video(VideoRequest(prompt="A kite over dunes", duration=4), credentials_block)
        raise RuntimeError("the pipeline broke before archive_video")

    state = await pipeline(return_state=True)
    assert state.is_failed()
    run_id = str(state.state_details.flow_run_id)
    async with get_client() as client:
        assert "omniflash" in (await client.read_flow_run(UUID(run_id))).tags
    task_id = only_task(emulator)
    await completed(emulator, task_id)

    report = await sweep(flow_run_id=run_id, credentials_block=credentials_block)
    (video,) = report.of("archived")
    assert video.task_id == task_id
    assert video.flow_run_id == run_id
    assert video.location is not None
    archived = Path(video.location)
    assert archived.is_relative_to(fast_settings)
    assert hashlib.sha256(archived.read_bytes()).hexdigest() == emulator.state.video_sha256(task_id)
    events = await omniflash_events(task_id, {"salvaged"})
    assert events

    polls, downloads = emulator.state.polls(task_id), emulator.state.downloads(task_id)
    again = await sweep(flow_run_id=run_id, credentials_block=credentials_block)
    assert not again.videos
    assert (emulator.state.polls(task_id), emulator.state.downloads(task_id)) == (polls, downloads)
    assert emulator.state.submission_count == 1


async def test_a_run_that_times_out_names_its_task_and_the_sweep_archives_it_where_it_would(
    emulator: EmulatorServer, credentials_block: str, tmp_path: Path
) -> None:
    """``generate_video`` with a timeout shorter than the job ends Failed (timed out) after it
    paid; its state message names the task and the sweep; the sweep archives the video in the
    run's own ``archive_dir`` and prefix."""
    emulator.config.job_seconds = 8.0
    archive = tmp_path / "run-archive"
    timed = generate_video.with_options(timeout_seconds=4)
    state = await timed(
        prompt="A paper lantern rising",
        duration=4,
        credentials_block=credentials_block,
        archive_dir=str(archive),
        archive_prefix="lanterns",
        return_state=True,
    )
    assert state.is_failed()
    task_id = only_task(emulator)
    message = await state_message(state.state_details.flow_run_id)
    assert task_id in message
    assert "omniflash sweep" in message

    await completed(emulator, task_id)
    report = await sweep(flow_run_id=str(state.state_details.flow_run_id))
    (video,) = report.of("archived")
    assert video.location is not None
    assert Path(video.location).is_relative_to(archive / "lanterns")
    assert emulator.state.downloads(task_id) == 1


async def test_an_expired_video_is_reported_lost_with_its_cost(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """Every URL the provider hands out has expired: the run fails, and the sweep reports the
    video lost, loudly (a Failed sweep, an ``omniflash.video.expired`` event), with its cost,
    once: the next sweep does not read it again."""
    emulator.config.url_ttl_seconds = 0.0
    state = await generate_video(
        prompt="A comet", duration=4, credentials_block=credentials_block, return_state=True
    )
    assert state.is_failed()
    task_id = only_task(emulator)
    run_id = str(state.state_details.flow_run_id)

    swept = await sweep_paid_videos(flow_run_id=run_id, return_state=True)
    assert swept.is_failed()
    report = await swept.aresult(raise_on_failure=False)
    assert isinstance(report, SweepReport)
    (lost,) = report.of("expired")
    assert lost.task_id == task_id
    assert lost.cost == pytest.approx(0.16)
    assert report.lost_cost == pytest.approx(0.16)
    assert "lost 0.16" in report.headline()
    assert await omniflash_events(task_id, {"expired"})
    polls = emulator.state.polls(task_id)
    assert not (await sweep(flow_run_id=run_id)).videos
    assert emulator.state.polls(task_id) == polls


async def test_two_sweeps_racing_download_each_video_once(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """Three paid videos and two sweeps at once: every video is archived, each downloaded once,
    and between them the two sweeps report each exactly once as archived now."""

    @flow
    async def pay_for_three() -> None:
        for number in range(3):
            await asubmit_video(
                VideoRequest(prompt=f"A tide pool {number}", duration=4), credentials_block
            )
        raise RuntimeError("abandoned")

    state = await pay_for_three(return_state=True)
    run_id = str(state.state_details.flow_run_id)
    tasks = list(emulator.state.snapshot()["tasks"])
    for task_id in tasks:
        await completed(emulator, task_id)
    first, second = await asyncio.gather(
        sweep(flow_run_id=run_id, credentials_block=credentials_block),
        sweep(flow_run_id=run_id, credentials_block=credentials_block),
    )
    archived_now = [str(v.task_id) for v in (*first.of("archived"), *second.of("archived"))]
    assert sorted(archived_now) == sorted(tasks)
    assert all(emulator.state.downloads(task_id) == 1 for task_id in tasks)


async def test_a_submission_of_unknown_outcome_is_reported_with_what_to_do(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A key left in flight by a sender that died is reported (age, fingerprint, the release
    command), never resent; once released, the sweep has nothing to say of it."""
    request = VideoRequest(prompt="A lost message", duration=4)
    key = submission_key(request, f"unknown-{uuid.uuid4()}")
    records = LocalFileSystem(basepath=str(tmp_path / "records"))
    block = f"records-{uuid.uuid4().hex[:8]}"
    await records.asave(block)
    store: ResultStore = record_store(records)
    long_ago = datetime.now(UTC) - timedelta(seconds=IN_FLIGHT_GRACE_SECONDS + 60)
    await write_submission(
        store,
        key,
        SubmissionRecord(
            state="in-flight", at=long_ago, fingerprint=request.fingerprint(), request=request
        ),
    )
    report = await sweep(result_storage_block=f"local-file-system/{block}")
    (unknown,) = report.of("unknown")
    assert unknown.key == key
    assert unknown.age_seconds >= IN_FLIGHT_GRACE_SECONDS
    assert unknown.fingerprint == request.fingerprint()
    assert f"omniflash release {key}" in unknown.note
    assert not report.ok
    assert emulator.state.submission_attempts == 0

    assert await release_submission(key, records) == "released"
    assert not (await sweep(result_storage_block=f"local-file-system/{block}")).videos


async def test_a_batch_cut_short_is_salvaged_and_its_resume_calls_the_provider_for_nothing(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A batch stopped (its process' task cancelled, as a kill would) while its videos
    generate: the sweep scoped to its run archives them where the batch would have; running the
    batch again with its id reports every row archived without a submit, a status read or a
    download."""
    emulator.config.job_seconds = 6.0
    batch_id = f"cut-{uuid.uuid4().hex[:8]}"
    requests = [{"id": f"r{i}", "prompt": f"A harbour {i}", "duration": 4} for i in range(3)]
    running = asyncio.ensure_future(
        generate_video_batch(
            requests=requests,
            credentials_block=credentials_block,
            options=BatchRunOptions(batch_id=batch_id),
            return_state=True,
        )
    )
    store = record_store(await current_record_storage())
    keys = [
        submission_key(row.request, row_idempotency_key(batch_id, row.id))
        for row in manifest_from_records(requests).rows
    ]

    async def submitted(key: str) -> bool:
        found = await read_submission(store, key)
        return found is not None and found.state == "submitted"

    while not running.done() and not all([await submitted(key) for key in keys]):  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # the batch writes what is read: polled, not awaited
    assert not running.done()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    tasks = list(emulator.state.snapshot()["tasks"])
    assert len(tasks) == 3
    for task_id in tasks:
        await completed(emulator, task_id)
    async with get_client() as client:
        (batch_run,) = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"batch-{batch_id}"]))
        )
    report = await sweep(flow_run_id=str(batch_run.id))
    assert sorted(str(v.task_id) for v in report.of("archived")) == sorted(tasks)

    before = emulator.state.snapshot()
    resumed = await generate_video_batch(
        requests=requests,
        credentials_block=credentials_block,
        options=BatchRunOptions(batch_id=batch_id),
        return_state=True,
    )
    batch = await resumed.aresult()
    assert isinstance(batch, BatchReport)
    assert batch.ok
    after = emulator.state.snapshot()
    assert after["submission_attempts"] == before["submission_attempts"] == 3
    assert {k: (t["polls"], t["downloads"]) for k, t in after["tasks"].items()} == {
        k: (t["polls"], t["downloads"]) for k, t in before["tasks"].items()
    }


async def test_a_429_is_recorded_as_a_refusal_while_the_client_backs_off(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """The submit is answered 429 with a long Retry-After; while the client waits, the key's
    record says ``refused`` (a kill now leaves a key that submits again, not one of unknown
    outcome); once the wait ends, the retry is sent and paid once."""
    emulator.config.rate_limit_rate = 1.0
    emulator.config.retry_after_seconds = 2.0
    request = VideoRequest(prompt="A queue at a bakery", duration=4)
    idempotency_key = f"refused-{uuid.uuid4()}"
    store = record_store(await current_record_storage())
    key = submission_key(request, idempotency_key)

    @flow
    async def submit() -> str:
        task_id: str = await asubmit_video(request, credentials_block, idempotency_key)
        return task_id

    running = asyncio.ensure_future(submit())
    seen: list[str] = []
    while not running.done():
        await asyncio.sleep(0.05)  # another actor changes what is read: polled, not awaited
        try:
            record = await read_submission(store, key)
        except (ValueError, OSError, OmniFlashError):  # read mid-write: no claim is held here
            continue
        if record is not None and record.state == "refused" and not seen:
            seen.append(record.state)
            emulator.config.rate_limit_rate = 0.0
    task_id = await running
    assert seen == ["refused"]
    assert (await read_submission(store, key)) is not None
    assert emulator.state.submission_count == 1
    assert task_id


def test_a_killed_local_batch_is_swept_then_resumed_without_a_call_to_the_provider(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """``omniflash batch`` killed with SIGKILL while its videos generate: ``omniflash sweep``
    for its run archives them; resuming the batch by its id then makes no submit, no status read
    and no download, and reports every row archived."""
    emulator.config.job_seconds = 5.0
    batch_id = f"killed-{uuid.uuid4().hex[:8]}"
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"id": f"k{i}", "prompt": f"A lantern {i}", "duration": 4}) + "\n"
            for i in range(3)
        )
    )
    env = {  # this test's server, and its result storage, where the records are
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_LOCAL_STORAGE_PATH": str(PREFECT_LOCAL_STORAGE_PATH.value()),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    batch = [
        *("batch", str(manifest), "--batch-id", batch_id, "--credentials-block", block),
        *("--archive-dir", str(tmp_path / "videos"), "--json"),
    ]
    child = subprocess.Popen(
        [sys.executable, "-m", "omniflash_prefect", *batch],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert emulator.state.wait_until(lambda state: state.submission_count == 3, 120)
        records = asyncio.run(_records_of(batch_id, [f"k{i}" for i in range(3)]))
        assert all(record is not None and record.task_id for record in records)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    run_id = records[0].flow_run_id if records[0] is not None else None
    assert run_id is not None
    for task_id in emulator.state.snapshot()["tasks"]:
        asyncio.run(completed(emulator, task_id))

    swept = CliRunner().invoke(app, ["sweep", "--flow-run-id", run_id, "--json"])
    assert swept.exit_code == 0, swept.output
    assert [video["outcome"] for video in json.loads(swept.stdout)["videos"]] == ["archived"] * 3

    before = emulator.state.snapshot()
    resumed = subprocess.run(
        [sys.executable, "-m", "omniflash_prefect", *batch],
        env=env,
        capture_output=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr.decode(errors="replace")[-2000:]
    assert json.loads(resumed.stdout)["counts"]["archived"] == 3
    after = emulator.state.snapshot()
    assert (after["submission_attempts"], after["tasks"]) == (
        before["submission_attempts"],
        before["tasks"],
    )


async def _records_of(batch_id: str, rows: list[str]) -> list[SubmissionRecord | None]:
    """The submission records of a batch's rows (``omniflash batch`` keeps them in Prefect's
    result storage), read until every one holds a task id or the batch has had its chance."""
    store = record_store(await current_record_storage())
    requests = {
        row.id: row
        for row in manifest_from_records(
            [{"id": row, "prompt": f"A lantern {row[1:]}", "duration": 4} for row in rows]
        ).rows
    }
    keys = [
        submission_key(requests[row].request, row_idempotency_key(batch_id, row)) for row in rows
    ]
    for _ in range(400):
        found = [await read_submission(store, key) for key in keys]
        if all(record is not None and record.task_id for record in found):
            return found
        await asyncio.sleep(0.05)  # another process writes them: polled, not awaited
    return found
