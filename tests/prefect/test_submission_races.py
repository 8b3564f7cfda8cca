"""Exactly one paid video per key, however many callers race for it: coroutines of one flow,
threads of a task runner, processes on one machine, processes sharing an S3 bucket; and a
holder killed with SIGKILL mid-submit, resolved by hand with ``omniflash release``.

Every race widens its window with the emulator's ``submit_answer_delay_seconds``: the first
request is accepted (paid) and its answer held back while the other callers arrive.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, unmapped
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from omniflash_prefect import (
    VideoRequest,
    VideoTask,
    aarchive_video,
    apoll_video,
    asubmit_video,
    generate_video,
    submit_video,
)
from omniflash_prefect.cli import app
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import SubmissionOutcomeUnknownError
from omniflash_prefect.video.submissions import submission_key
from tests.support.s3 import Bucket

REPO = Path(__file__).resolve().parents[2]
#: The request the racer processes send (tests.prefect.racers).
RACED = VideoRequest(prompt="A kite over a windy beach", duration=4)
#: How long a racer process may take to start and reach its flow (a Prefect client, a run).
START_SECONDS = 120.0


class Racers:
    """Racer processes (``python -m tests.prefect.racers``) sharing this test's Prefect server,
    result storage and emulator; started together through a ``go`` file."""

    def __init__(self, folder: Path, prefect_server: Path, credentials_block: str) -> None:
        self.folder = folder
        self.block = credentials_block
        self.results = prefect_server
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, key: str, *, callers: int = 8, bucket: str | None = None) -> None:
        command = [sys.executable, "-m", "tests.prefect.racers", str(self.folder), name]
        command += ["--callers", str(callers), "--key", key, "--credentials-block", self.block]
        if bucket is not None:
            command += ["--bucket", bucket]
        environment = {
            **os.environ,  # the test's OMNIFLASH_* and AWS_* settings
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "PREFECT_LOCAL_STORAGE_PATH": str(self.results),
            "PREFECT_HOME": str(self.folder / "prefect-home"),
        }
        with (self.folder / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, *names: str) -> None:
        """Until every named racer is inside its flow (a bounded poll: other processes)."""
        deadline = time.monotonic() + START_SECONDS
        while not all((self.folder / f"{name}.ready").exists() for name in names):
            for name in names:
                if self.processes[name].poll() is not None:
                    pytest.fail(f"racer {name} exited early:\n{self.log(name)}")
            if time.monotonic() > deadline:
                pytest.fail(f"racers {names} did not start within {START_SECONDS:.0f} s")
            time.sleep(0.05)

    def go(self) -> None:
        (self.folder / "go").touch()

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait()

    def result(self, name: str) -> dict[str, Any]:
        """What the racer's callers got, once it has exited."""
        code = self.processes[name].wait(START_SECONDS)
        assert code == 0, self.log(name)
        report: dict[str, Any] = json.loads((self.folder / f"{name}.json").read_text())
        return report

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def racers(tmp_path: Path, prefect_server: Path, credentials_block: str) -> Iterator[Racers]:
    group = Racers(tmp_path, prefect_server, credentials_block)
    try:
        yield group
    finally:
        group.stop()


def task_ids(report: dict[str, Any]) -> set[str]:
    assert all("task_id" in outcome for outcome in report["outcomes"]), report
    return {outcome["task_id"] for outcome in report["outcomes"]}


async def test_sixteen_coroutines_of_one_key_pay_once(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """16 ``asubmit_video`` calls with one key, gathered in one flow while the first request is
    in flight: one submission, and every caller gets its task id."""
    emulator.config.submit_answer_delay_seconds = 0.5
    key = f"sixteen-{uuid.uuid4()}"

    @flow
    async def sixteen() -> list[str]:
        return list(
            await asyncio.gather(
                *(asubmit_video(RACED, credentials_block, idempotency_key=key) for _ in range(16))
            )
        )

    got = await sixteen()
    assert len(got) == 16
    assert len(set(got)) == 1
    assert emulator.state.submission_attempts == 1
    assert set(got) == set(emulator.state.snapshot()["tasks"])


def test_mapped_threads_of_one_key_pay_once(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A sync flow mapping ``submit_video`` over 8 copies of one request with one key: the task
    runner's 8 threads (each with its own event loop) pay for one video."""
    emulator.config.submit_answer_delay_seconds = 0.5
    key = f"threads-{uuid.uuid4()}"

    @flow
    def mapped() -> list[str]:
        futures = submit_video.map(
            [RACED] * 8, credentials_block=unmapped(credentials_block), idempotency_key=key
        )
        return [future.result() for future in futures]

    got = mapped()
    assert len(set(got)) == 1
    assert emulator.state.submission_attempts == 1


def test_two_processes_of_eight_pay_once(emulator: EmulatorServer, racers: Racers) -> None:
    """Two processes, 8 callers each, one key, started together: one submission; all 16 callers
    get its task id; the two processes' flows overlapped in time."""
    emulator.config.submit_answer_delay_seconds = 1.0
    key = f"processes-{uuid.uuid4()}"
    racers.start("a", key)
    racers.start("b", key)
    racers.wait_ready("a", "b")
    racers.go()
    a, b = racers.result("a"), racers.result("b")
    assert len(task_ids(a) | task_ids(b)) == 1
    assert emulator.state.submission_attempts == 1
    assert a["started"] < b["ended"]
    assert b["started"] < a["ended"]


def test_holder_killed_mid_submit_blocks_the_key_until_released(
    emulator: EmulatorServer, racers: Racers, credentials_block: str, fast_settings: Path
) -> None:
    """The process holding the claim is killed with SIGKILL while its (accepted, paid) request
    is in flight. Eight callers of another process waiting for the key then all get
    SubmissionOutcomeUnknownError naming the key, nothing is resent; ``omniflash release KEY
    --task-id`` records the task found at the provider, and the next run archives it."""
    emulator.config.submit_answer_delay_seconds = 60
    key = f"killed-{uuid.uuid4()}"
    racers.start("holder", key, callers=1)
    racers.wait_ready("holder")
    racers.go()
    assert emulator.state.wait_until(lambda state: state.submission_count == 1, START_SECONDS)
    racers.start("waiters", key)
    racers.wait_ready("waiters")
    racers.kill("holder")

    waiters = racers.result("waiters")["outcomes"]
    record = submission_key(RACED, key)
    assert [outcome["error"] for outcome in waiters] == ["SubmissionOutcomeUnknownError"] * 8
    assert all(f"omniflash release {record}" in outcome["message"] for outcome in waiters)
    assert emulator.state.submission_attempts == 1

    (paid,) = emulator.state.snapshot()["tasks"]
    released = CliRunner().invoke(app, ["release", record, "--task-id", paid])
    assert released.exit_code == 0, released.output
    assert f"Recorded task {paid}" in released.output
    emulator.config.submit_answer_delay_seconds = 0
    archived = generate_video(
        prompt=RACED.prompt,
        duration=4,
        credentials_block=credentials_block,
        idempotency_key=key,
    )
    assert archived.task_id == paid
    assert archived.sha256 == emulator.state.video_sha256(paid)
    assert emulator.state.submission_attempts == 1


def test_release_frees_a_key_whose_submission_got_no_answer(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A submit answered 502 (outcome unknown) blocks its key; ``omniflash release KEY`` without
    a task id frees it and the next run submits again; a key holding a task is never released.
    (A sync test: the command runs its own event loop, and generate_video runs from sync code.)"""
    key = f"gateway-{uuid.uuid4()}"
    request = VideoRequest(prompt="A paper lantern rising at night", duration=4)
    emulator.config.server_error_rate = 1.0
    with pytest.raises(SubmissionOutcomeUnknownError) as blocked:
        generate_video(
            prompt=request.prompt,
            duration=4,
            credentials_block=credentials_block,
            idempotency_key=key,
        )
    record = blocked.value.submission_key
    assert record == submission_key(request, key)
    emulator.config.server_error_rate = 0.0

    freed = CliRunner().invoke(app, ["release", record])
    assert freed.exit_code == 0, freed.output
    assert "Released" in freed.output
    archived = generate_video(
        prompt=request.prompt, duration=4, credentials_block=credentials_block, idempotency_key=key
    )
    assert emulator.state.submission_attempts == 2
    assert emulator.state.submission_count == 1

    refused = CliRunner().invoke(app, ["release", record, "--task-id", "task_other"])
    assert refused.exit_code == 2
    assert archived.task_id in refused.output
    assert CliRunner().invoke(app, ["release", "not-a-key"]).exit_code == 2


async def test_concurrent_archives_of_one_task_download_it_once(
    emulator: EmulatorServer, credentials_block: str, fast_settings: Path
) -> None:
    """Four archives of one task to one destination at once: one download, four equal results,
    one intact file and no staging file left."""
    emulator.config.video_size_bytes = 4 * 1024 * 1024

    @flow
    async def four_archives() -> tuple[VideoTask, list[Any]]:
        task_id = await asubmit_video(RACED, credentials_block)
        done = await apoll_video(task_id, credentials_block)
        archived = await asyncio.gather(
            *(aarchive_video(done, credentials_block=credentials_block) for _ in range(4))
        )
        return done, list(archived)

    done, archived = await four_archives()
    assert emulator.state.downloads(done.id) == 1
    assert len({item.model_dump_json() for item in archived}) == 1
    location = Path(archived[0].location)
    assert hashlib.sha256(location.read_bytes()).hexdigest() == emulator.state.video_sha256(done.id)
    assert sorted(path.name for path in location.parent.iterdir()) == [
        f"{done.id}.contact-sheet.jpg",
        f"{done.id}.json",
        f"{done.id}.mp4",
        f"{done.id}.poster.jpg",
    ]


def test_processes_sharing_an_s3_bucket_pay_once(
    emulator: EmulatorServer, racers: Racers, bucket: Bucket
) -> None:
    """Two processes keeping their records in one S3 bucket (moto), 4 callers each: the claim
    is an object created with If-None-Match, so one submission; the claim left nothing behind."""
    emulator.config.submit_answer_delay_seconds = 1.0
    key = f"bucket-{uuid.uuid4()}"
    racers.start("a", key, callers=4, bucket=bucket.block_name)
    racers.start("b", key, callers=4, bucket=bucket.block_name)
    racers.wait_ready("a", "b")
    racers.go()
    assert len(task_ids(racers.result("a")) | task_ids(racers.result("b"))) == 1
    assert emulator.state.submission_attempts == 1
    record = submission_key(RACED, key)
    keys = bucket.keys()
    assert f"renders/{record}-intent" in keys
    assert not [name for name in keys if name.endswith(".lock")]
