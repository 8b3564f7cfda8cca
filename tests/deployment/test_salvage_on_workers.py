"""A video's run cancelled on a worker, for real: a cancel (what ``prefect flow-run cancel`` and
the UI send) while the video is generated or downloaded ends the run ``Cancelled`` within
seconds (its log names the task it paid for); the ``omniflash-sweep-after-runs`` Automation
starts the ``sweep-paid-videos`` deployment for it, and a worker archives the video, byte-exact,
paid once, with no one doing anything; the run's final message then says where the video is.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelling

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from tests.support.fleet import VIDEO_DEPLOYMENT, WORKER_LIMIT, Deployed, wait_for
from tests.support.processes import (
    Background,
    PrefectServer,
    api,
    argv_of,
    fast_worker_env,
    on_server,
    run,
)

pytestmark = pytest.mark.slow

#: Bounds of the waits (each ends as soon as what it waits for is there).
CANCEL_SECONDS = 60.0
SALVAGE_SECONDS = 180.0


@dataclass(frozen=True)
class Scenario:
    config: EmulatorConfig
    #: True once the video is at the stage the run is cancelled in.
    reached: Callable[[EmulatorServer], bool]


def _download_started(emulator: EmulatorServer) -> bool:
    return any(task["downloads"] for task in emulator.state.snapshot()["tasks"].values())


SCENARIOS = {
    "mid-generation": Scenario(
        EmulatorConfig(job_seconds=15),
        reached=lambda emulator: emulator.state.submission_count == 1,
    ),
    "mid-download": Scenario(
        EmulatorConfig(job_seconds=0.5, download_stall_seconds=20),
        reached=_download_started,
    ),
}


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> Iterator[tuple[Scenario, EmulatorServer]]:
    chosen = SCENARIOS[request.param]
    config = chosen.config.model_copy(update={"api_key": f"sk-cancel-{uuid.uuid4().hex}"})
    with EmulatorServer(config) as emulator:
        yield chosen, emulator


def test_a_cancelled_video_is_archived_by_the_sweep_its_automation_starts(
    prefect_server: PrefectServer,
    deployed: Deployed,
    scenario: tuple[Scenario, EmulatorServer],
    tmp_path: Path,
) -> None:
    chosen, emulator = scenario
    with on_server(prefect_server):
        OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).save(
            "omniflash", overwrite=True
        )
    archive = tmp_path / "videos"
    env = {**fast_worker_env(prefect_server, archive), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    name = f"cancel-{uuid.uuid4().hex[:6]}"
    command = f"prefect worker start --pool omniflash --limit {WORKER_LIMIT} --name {name}"
    log = tmp_path / "worker.log"
    with Background(argv_of(command), cwd=deployed.project, env=env, log=log) as worker:
        output = run(
            [
                *argv_of(f"prefect deployment run {VIDEO_DEPLOYMENT}"),
                *("--param", "prompt=A lighthouse keeper climbing the stairs at night"),
                *("--param", "duration=4"),
            ],
            cwd=deployed.project,
            env=prefect_server.env(),
        )
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        assert match, output
        run_id = UUID(match.group(1))
        wait_for("the video at its stage", lambda: chosen.reached(emulator), CANCEL_SECONDS, worker)
        (task_id,) = emulator.state.snapshot()["tasks"]

        # What `prefect flow-run cancel` and the UI's Cancel button do; called in-process, as a
        # CLI that takes seconds to start on a loaded machine could miss the stage.
        asked = time.monotonic()
        with api(prefect_server) as client:
            client.set_flow_run_state(run_id, Cancelling(message="cancelled by the test"))

        def final_state() -> StateType | None:
            with api(prefect_server) as client:
                state = client.read_flow_run(run_id).state
            return state.type if state is not None and state.is_final() else None

        assert wait_for("a final state", final_state, CANCEL_SECONDS, worker) == StateType.CANCELLED
        cancelled = time.monotonic() - asked
        emulator.config.download_stall_seconds = 0

        def archived_file() -> list[Path]:
            return sorted(archive.rglob(f"{task_id}.mp4"))

        (video,) = wait_for("the video salvaged", archived_file, SALVAGE_SECONDS, worker)
        salvaged = time.monotonic() - asked
        print(f"\ncancel to Cancelled {cancelled:.1f} s; cancel to archived {salvaged:.1f} s")

        def noted() -> str | None:
            """The cancelled run's final message, once it says where its video went."""
            with api(prefect_server) as client:
                state = client.read_flow_run(run_id).state
            message = state.message if state is not None else None
            return message if message and task_id in message else None

        wait_for("the run's message naming its video", noted, CANCEL_SECONDS, worker)
        assert final_state() == StateType.CANCELLED
    assert hashlib.sha256(video.read_bytes()).hexdigest() == emulator.state.video_sha256(task_id)
    assert emulator.state.submission_count == 1
    snapshot = emulator.state.snapshot()["tasks"][task_id]
    # Downloaded once in full: the cancelled run's stalled download, if any, never finished.
    assert snapshot["downloads"] <= 2
