"""The worker holding a batch run killed mid-batch, for real, then the batch run again with its
id: every video archived once, paid once, downloaded once (see :mod:`tests.support.fleet`).
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from prefect.client.schemas.objects import FlowRun, StateType

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from tests.support.fleet import (
    Deployed,
    Fleet,
)
from tests.support.processes import PrefectServer, kill_with_its_runs

pytestmark = pytest.mark.slow


def test_the_batch_runs_worker_killed_then_the_batch_run_again_pays_once(
    prefect_server: PrefectServer, deployed: Deployed, tmp_path: Path
) -> None:
    """The worker holding the batch run dies with it mid-batch: the automation crashes the batch
    run and the slice it held; the batch run again with its id finishes every row, none paid
    twice, none downloaded twice (videos the other worker finished meanwhile are reused)."""
    config = EmulatorConfig(job_seconds=15, api_key=f"sk-lost-{uuid.uuid4().hex}")
    with EmulatorServer(config) as emulator, ExitStack() as stack:
        fleet = Fleet(prefect_server, deployed, emulator, tmp_path)
        doomed_name = f"doomed-{fleet.batch_id}"
        doomed = stack.enter_context(fleet.worker(doomed_name))
        first_run_id = fleet.start_batch()
        fleet.wait_running(first_run_id, doomed)
        # The batch run and a slice fill the doomed worker, which dies once the slice's videos
        # are paid; the survivor then takes the other slice in flight, and the batch's second
        # run.
        held: list[FlowRun] = fleet.slices_in_flight_on(
            doomed_name, lambda emulator: emulator.state.submission_count >= 2, doomed
        )
        kill_with_its_runs(doomed)
        survivor = stack.enter_context(fleet.worker(f"survivor-{fleet.batch_id}"))
        first_run = fleet.wait_final(first_run_id, survivor)
        assert first_run.state_type == StateType.CRASHED, first_run.state
        fleet.crashed_by_the_automation([first_run_id, *(run.id for run in held)])
        assert {run.id for run in held} <= fleet.crashed_slices()

        second_run_id = fleet.start_batch()
        second_run = fleet.wait_final(second_run_id, survivor)
        outputs = survivor.output(8000)

        assert second_run.state_type == StateType.COMPLETED, outputs
        fleet.assert_archived_once(fleet.report())
        snapshot = emulator.state.snapshot()["tasks"]
        assert all(task["downloads"] == 1 for task in snapshot.values()), snapshot
