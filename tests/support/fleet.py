"""A batch on process workers of a real server, for the lost-worker tests.

The module's ``prefect server start`` gets the deployments of ``prefect.yaml`` with heartbeats
tuned down to Prefect's minimum (30 s, as the README says to tune them) and the automations
installed by the command line (a 40 s silence, 60 s to start a taken run); a :class:`Fleet` is
one batch of ``ROWS`` videos, fanned out over the workers it starts in slices of
``ROWS_PER_RUN``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect._internal.result_records import ResultRecordMetadata
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.filesystems import LocalFileSystem
from prefect.serializers import JSONSerializer

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.batches.report import BatchReport
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.video.observability import artifact_key
from tests.support.processes import (
    BIN,
    Background,
    PrefectServer,
    api,
    argv_of,
    checkout,
    fast_worker_env,
    on_server,
    run,
    table_of,
)

BATCH_DEPLOYMENT = "generate-video-batch/generate-video-batch"
VIDEO_DEPLOYMENT = "generate-video/generate-video"
ROWS = 6
MAX_CONCURRENCY = 4
#: Rows of one slice: two slices in flight at once.
ROWS_PER_RUN = 2
#: Slots of each worker: the batch run and one slice on the first, the other on the second.
WORKER_LIMIT = 2
#: Prefect's shortest heartbeat interval, and a silence the automation may call a loss.
HEARTBEAT_SECONDS = 30
SILENCE_SECONDS = 40
#: How long a taken run may take to start running: room for a loaded machine.
PENDING_SECONDS = 60
#: Bounds of the waits below (each ends as soon as what it waits for is there). A worker that
#: starts while the rest of the suite runs beside it may take most of a minute to take a run.
SETUP_SECONDS = 120.0
BATCH_SECONDS = 300.0


@dataclass(frozen=True)
class Deployed:
    """The checkout whose deployments are applied to the module's server."""

    project: Path
    video_deployment_id: UUID
    batch_deployment_id: UUID


def deploy_with_heartbeats(prefect_server: PrefectServer, root: Path) -> Deployed:
    """prefect.yaml with heartbeats every 30 s, deployed; the lost-runs automation installed
    with ``omniflash automations install``."""
    project = checkout(root / "checkout")
    recipe = project / "prefect.yaml"
    text = recipe.read_text(encoding="utf-8")
    tuned = text.replace(
        'PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "60"',
        f'PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "{HEARTBEAT_SECONDS}"',
    )
    assert tuned != text, "prefect.yaml sets the heartbeat frequency of its deployments"
    recipe.write_text(tuned, encoding="utf-8")
    env = prefect_server.env()
    run(argv_of("prefect work-pool create omniflash --type process"), cwd=project, env=env)
    run(argv_of("prefect deploy --all"), cwd=project, env=env)
    installed = run(
        [
            str(BIN / "omniflash"),
            "automations",
            "install",
            "--silence-seconds",
            str(SILENCE_SECONDS),
            "--json",
        ],
        cwd=project,
        env=env,
    )
    automations = json.loads(installed.splitlines()[-1])["automations"]
    assert {automation["action"] for automation in automations} == {"created"}
    with api(prefect_server) as client:
        video = client.read_deployment_by_name(VIDEO_DEPLOYMENT)
        batch = client.read_deployment_by_name(BATCH_DEPLOYMENT)
    for deployment in (video, batch):
        assert deployment.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    return Deployed(project, video.id, batch.id)


def wait_for(what: str, condition: Callable[[], Any], timeout: float, *logs: Background) -> Any:
    """Poll ``condition`` until it returns something truthy (bounded): other processes' progress
    cannot be awaited from here. Fails with the workers' output."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            outputs = "\n\n".join(log.output(4000) for log in logs)
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{outputs}")
        time.sleep(0.25)
    return found


def slices_of(server: PrefectServer, deployed: Deployed) -> list[FlowRun]:
    """Every slice run of the batch deployment (tagged so; the batch run itself is not)."""
    with api(server) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployed.batch_deployment_id])
            )
        )
    return [run for run in runs if "omniflash-batch-slice" in run.tags]


def slices_held_by(server: PrefectServer, deployed: Deployed, worker: str) -> list[FlowRun]:
    """The slice runs ``worker`` holds, once it holds one and every one is Running (a run killed
    before it runs sends no heartbeat: only the rows' deadline would end it)."""
    held = [
        run
        for run in slices_of(server, deployed)
        if run.labels.get("prefect.worker.name") == worker
        and run.state is not None
        and not run.state.is_final()
    ]
    if not held or any(run.state_type != StateType.RUNNING for run in held):
        return []
    return held


def rerun_events(server: PrefectServer, batch_id: str, count: int) -> list[Any]:
    """The batch's ``omniflash.video.rerun`` events, once ``count`` are stored (the server's
    event persister batches its writes; this reads until they are there, within a bound)."""

    def stored() -> list[Any]:
        with api(server) as client:
            page = client.read_events(
                EventFilter(
                    occurred=EventOccurredFilter(),
                    event=EventNameFilter(name=["omniflash.video.rerun"]),
                ),
                limit=50,
            )
        found = [event for event in page.events if event.payload.get("batch_id") == batch_id]
        return found if len(found) >= count else []

    found: list[Any] = wait_for(f"{count} rerun events", stored, SETUP_SECONDS)
    return found


@dataclass
class Fleet:
    """One batch of ``ROWS`` videos on the module's deployments, and the workers it runs on."""

    server: PrefectServer
    deployed: Deployed
    emulator: EmulatorServer
    root: Path
    batch_id: str = field(default_factory=lambda: f"lost-{uuid.uuid4().hex[:12]}")

    results_block_id: UUID | None = None

    def __post_init__(self) -> None:
        with on_server(self.server):
            OmniFlashCredentials(
                api_key=self.emulator.api_key, base_url=self.emulator.base_url
            ).save("omniflash", overwrite=True)
            saved = LocalFileSystem(basepath=str(self.shared_results)).save(
                "omniflash-results", overwrite=True
            )
            assert isinstance(saved, UUID), saved
            self.results_block_id = saved

    @property
    def shared_results(self) -> Path:
        """The result-storage block's folder, standing in for a bucket every machine shares."""
        return self.root / "shared-results"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [
            {"id": f"clip-{n}", "prompt": f"Harbour at dawn, shot {n} of {ROWS}", "duration": 4}
            for n in range(1, ROWS + 1)
        ]

    def worker(self, name: str) -> Background:
        """``prefect worker start`` on the pool, polling fast, archiving under ``root``: one
        archive every worker reaches, standing in for the shared storage block several machines
        use (a video is downloaded once, wherever its run or the sweep that salvaged it ran)."""
        env = {
            **fast_worker_env(self.server, self.root / "videos"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
        }
        command = f"prefect worker start --pool omniflash --limit {WORKER_LIMIT} --name {name}"
        return Background(
            argv_of(command), cwd=self.deployed.project, env=env, log=self.root / f"{name}.log"
        )

    def start_batch(self) -> UUID:
        """``prefect deployment run`` of the batch, fanned out, with its id and shared results."""
        options = {
            "fan_out": "deployments",
            "batch_id": self.batch_id,
            "max_concurrency": MAX_CONCURRENCY,
            "rows_per_run": ROWS_PER_RUN,
        }
        output = run(
            [
                *argv_of(f"prefect deployment run {BATCH_DEPLOYMENT}"),
                *("--param", f"requests={json.dumps(self.rows)}"),
                *("--param", f"options={json.dumps(options)}"),
                *("--param", "result_storage_block=local-file-system/omniflash-results"),
            ],
            cwd=self.deployed.project,
            env=self.server.env(),
        )
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        assert match, output
        return UUID(match.group(1))

    def read_run(self, run_id: UUID) -> FlowRun:
        with api(self.server) as client:
            return client.read_flow_run(run_id)

    def wait_running(self, run_id: UUID, *logs: Background) -> None:
        wait_for(
            f"run {run_id} running",
            lambda: self.read_run(run_id).state_type == StateType.RUNNING,
            SETUP_SECONDS,
            *logs,
        )

    def wait_final(self, run_id: UUID, *logs: Background) -> FlowRun:
        def ended() -> FlowRun | None:
            found = self.read_run(run_id)
            return found if found.state is not None and found.state.is_final() else None

        final: FlowRun = wait_for(f"run {run_id} ending by itself", ended, BATCH_SECONDS, *logs)
        return final

    def slices_in_flight_on(
        self, worker: str, reached: Callable[[EmulatorServer], bool], *logs: Background
    ) -> Any:
        """Wait until the videos in flight reached their stage and ``worker`` runs a slice of
        them; on a timeout, fail with ``logs`` (the workers' output)."""
        return wait_for(
            f"a slice in flight on {worker}, its videos at the stage it dies in",
            lambda: reached(self.emulator) and slices_held_by(self.server, self.deployed, worker),
            SETUP_SECONDS,
            *logs,
        )

    def report(self) -> dict[str, dict[str, Any]]:
        """The rows of the batch's table artifact (of its last run), by row id."""
        with api(self.server) as client:
            (table,) = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[artifact_key("batch", self.batch_id)])
                )
            )
        return {row["id"]: row for row in table_of(table.data)}

    def assert_archived_once(self, report: dict[str, dict[str, Any]]) -> None:
        """Every row archived byte-exact, one submission per row. A row may have been archived
        before the batch's last run: by an earlier run, or by the sweep the automation started
        when a run holding it was crashed."""
        assert sorted(report) == [row["id"] for row in self.rows]
        for row in report.values():
            assert row["status"] in ("archived", "archived (earlier run)"), row
            video = Path(row["location_or_error"])
            digest = hashlib.sha256(video.read_bytes()).hexdigest()
            assert digest == self.emulator.state.video_sha256(row["task_id"]), row
        assert self.emulator.state.submission_count == ROWS

    def assert_results_in_shared_storage(
        self, report: dict[str, dict[str, Any]], batch_run: FlowRun
    ) -> None:
        """Each archived row's slice is a child of the batch run and persisted its report in the
        shared result-storage block (not the worker's default storage), where the batch read it
        back: the same video as the batch report's, made by the row's task run in that slice."""
        with api(self.server) as client:
            for row in report.values():
                child = client.read_flow_run(UUID(row["flow_run"]))
                assert child.deployment_id == self.deployed.batch_deployment_id
                assert child.parent_task_run_id is not None
                parent = client.read_task_run(child.parent_task_run_id).flow_run_id
                assert parent == batch_run.id, child.name
                assert child.state is not None
                assert child.state.is_completed(), child.state
                metadata = child.state.data
                assert isinstance(metadata, ResultRecordMetadata), metadata
                assert metadata.storage_block_id == self.results_block_id
                stored = (self.shared_results / str(metadata.storage_key)).read_bytes()
                persisted = JSONSerializer().loads(stored)
                assert isinstance(persisted, BatchReport), persisted
                (item,) = [item for item in persisted.items if item.id == row["id"]]
                assert (item.task_id, item.location, item.task_run_id) == (
                    row["task_id"],
                    row["location_or_error"],
                    row["task_run"],
                )

    def crashed_by_the_automation(self, run_ids: list[UUID]) -> None:
        """Each run ends Crashed by one of the automations (each run is judged on its own)."""

        def all_ended() -> list[FlowRun]:
            with api(self.server) as client:
                found = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
                )
            final = [run for run in found if run.state is not None and run.state.is_final()]
            return final if len(final) == len(run_ids) else []

        for lost in wait_for("the lost runs ending", all_ended, BATCH_SECONDS):
            assert lost.state is not None
            assert lost.state_type == StateType.CRASHED, lost.state
            assert "(omniflash-crash-" in (lost.state.message or ""), lost.state

    def crashed_slices(self) -> set[UUID]:
        """The batch's slice runs that ended Crashed."""
        return {
            run.id
            for run in slices_of(self.server, self.deployed)
            if (run.parameters.get("options") or {}).get("batch_id") == self.batch_id
            and run.state_type == StateType.CRASHED
        }
