"""A worker killed mid-batch, for real: its slice is crashed by the automation, the slice's
rows run again in another slice on another worker, and every video is archived once, paid once.

Process workers of a real server (see :mod:`tests.support.fleet`): the batch run and one slice
land on the first; the second starts once the batch runs and takes the other slice; it is then
killed with SIGKILL together with the slice it holds, either while its videos are being
generated or while they are being downloaded, and a third worker starts to take what is left.
The batch's slices are runs of the ``generate-video-batch`` deployment, children of the batch
run, whose rows are task runs, and persist their reports in a result-storage block that stands
in for a bucket shared by every machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.schemas.objects import FlowRun, StateType

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from tests.support.fleet import (
    MAX_CONCURRENCY,
    ROWS,
    ROWS_PER_RUN,
    Deployed,
    Fleet,
    rerun_events,
)
from tests.support.processes import PrefectServer, kill_with_its_runs

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Scenario:
    """Where the videos are when the worker dies."""

    config: EmulatorConfig
    #: True once every video in flight has reached the stage the worker dies in.
    reached: Callable[[EmulatorServer], bool]
    #: What changes in the provider once the worker is dead.
    after_kill: Callable[[EmulatorServer], None]


def _downloads_started(emulator: EmulatorServer) -> int:
    return sum(1 for task in emulator.state.snapshot()["tasks"].values() if task["downloads"])


def _no_more_stalls(emulator: EmulatorServer) -> None:
    emulator.config.download_stall_seconds = 0


SCENARIOS = {
    # Every video in flight paid for and still being generated. The jobs outlast the victim's
    # start on a loaded machine, so the keeper cannot finish its videos and take the victim's.
    "mid-generation": Scenario(
        EmulatorConfig(job_seconds=30),
        reached=lambda emulator: emulator.state.submission_count >= MAX_CONCURRENCY,
        after_kill=lambda emulator: None,
    ),
    # Every video in flight generated, half downloaded, the rest held back by the provider.
    "mid-download": Scenario(
        EmulatorConfig(job_seconds=0.5, download_stall_seconds=25),
        reached=lambda emulator: _downloads_started(emulator) >= MAX_CONCURRENCY,
        after_kill=_no_more_stalls,
    ),
}


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> Iterator[tuple[Scenario, EmulatorServer]]:
    chosen = SCENARIOS[request.param]
    config = chosen.config.model_copy(update={"api_key": f"sk-lost-{uuid.uuid4().hex}"})
    with EmulatorServer(config) as emulator:
        yield chosen, emulator


def test_a_worker_killed_mid_batch_loses_no_video_and_pays_once(
    prefect_server: PrefectServer,
    deployed: Deployed,
    scenario: tuple[Scenario, EmulatorServer],
    tmp_path: Path,
) -> None:
    """The batch ends by itself: every row archived byte-exact, one submission per row, the
    killed runs Crashed by the automation, their rows run again and say so."""
    chosen, emulator = scenario
    fleet = Fleet(prefect_server, deployed, emulator, tmp_path)
    with ExitStack() as stack:
        keeper = stack.enter_context(fleet.worker(f"keeper-{fleet.batch_id}"))
        batch_run_id = fleet.start_batch()
        fleet.wait_running(batch_run_id, keeper)
        victim_name = f"victim-{fleet.batch_id}"
        victim = stack.enter_context(fleet.worker(victim_name))
        held: list[FlowRun] = fleet.slices_in_flight_on(victim_name, chosen.reached, keeper, victim)
        kill_with_its_runs(victim)
        chosen.after_kill(emulator)
        rescuer = stack.enter_context(fleet.worker(f"rescuer-{fleet.batch_id}"))
        batch_run = fleet.wait_final(batch_run_id, keeper, rescuer)
        outputs = keeper.output(8000)

    assert batch_run.state_type == StateType.COMPLETED, outputs
    # The killed runs (those seen running, and any the worker had just taken) were crashed by
    # the automations, not left Running or Pending.
    lost = fleet.crashed_slices()
    assert {run.id for run in held} <= lost
    fleet.crashed_by_the_automation(sorted(lost))
    report = fleet.report()
    fleet.assert_archived_once(report)
    assert batch_run.parameters["options"]["fan_out"] == "deployments"
    fleet.assert_results_in_shared_storage(report, batch_run)

    # Each row of a lost slice ran again in another slice, and an event names the row, the
    # lost run and the new one.
    lost_ids = {str(run_id) for run_id in lost}
    events = rerun_events(prefect_server, fleet.batch_id, ROWS_PER_RUN * len(lost_ids))
    assert {event.payload["lost_flow_run_id"] for event in events} == lost_ids
    rerun_rows = [event.payload["row"] for event in events]
    assert len(set(rerun_rows)) == len(rerun_rows) == ROWS_PER_RUN * len(lost_ids)
    for event in events:
        row = report[event.payload["row"]]
        assert row["runs"] == 2, row
        assert event.payload["new_flow_run_id"] == row["flow_run"], row
    assert sum(row["runs"] for row in report.values()) == ROWS + len(events)
