"""A batch fanned out over two process workers, for real on loopback.

A real ``prefect server start`` (temporary PREFECT_HOME, SQLite), both deployments of
``prefect.yaml`` applied from a copy of the checkout, two ``prefect worker start`` processes whose
limit is too small for one to hold every run, and the ``generate-video-batch`` deployment run with
``fan_out=deployments``: each row becomes a run of the ``generate-video`` deployment, a child of the
batch run, picked up by whichever worker has a free slot. The batch names a result-storage block
(standing in for a bucket shared by many machines): its row records, the task ids and every
row's persisted result land there, where the batch reads them back.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from contextlib import ExitStack
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
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.filesystems import LocalFileSystem
from prefect.serializers import JSONSerializer

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.archive import ArchivedVideo
from omniflash_prefect.batch_flow import row_idempotency_key
from omniflash_prefect.emulator import EmulatorServer, video_sha256
from omniflash_prefect.observability import artifact_key
from tests.support.processes import (
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

pytestmark = pytest.mark.slow

BATCH_DEPLOYMENT = "generate-video-batch/generate-video-batch"
VIDEO_DEPLOYMENT = "generate-video/generate-video"
VIDEOS = 6
MAX_CONCURRENCY = 4
#: Runs one worker may hold at once: fewer than the batch run plus its videos in flight (1 + 4),
#: so the other worker must take some of them.
WORKER_LIMIT = 3
WORKERS = ("fan-out-a", "fan-out-b")
WORKER_COMMAND = f"prefect worker start --pool omniflash --limit {WORKER_LIMIT}"
BATCH_SECONDS = 180.0
SUBMITTING = re.compile(r"Worker '([\w-]+)' submitting flow run '([0-9a-f-]{36})'")


def worker_env(server: PrefectServer, archive: Path) -> dict[str, str]:
    """Quick polling of the provider and of the work pool, and a shared archive directory."""
    return {**fast_worker_env(server, archive), "PREFECT_WORKER_QUERY_SECONDS": "1"}


def wait_for_final_state(
    server: PrefectServer, flow_run_id: UUID, workers: list[Background]
) -> FlowRun:
    """Read the flow run until its state is final (bounded); fail with the workers' output."""
    deadline = time.monotonic() + BATCH_SECONDS
    with api(server) as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            for worker in workers:
                if worker.process.poll() is not None:
                    pytest.fail(
                        f"a worker exited with {worker.process.returncode}:\n{worker.output()}"
                    )
            if time.monotonic() > deadline:
                outputs = "\n\n".join(worker.output(4000) for worker in workers)
                pytest.fail(
                    f"flow run {flow_run_id} still {flow_run.state_type} after "
                    f"{BATCH_SECONDS:.0f} s:\n{outputs}"
                )
            time.sleep(0.5)


def submitted_runs(worker: Background) -> set[str]:
    """The flow run ids the worker's output says it submitted (a run another worker got first
    may be among them: the server then refuses it to this one)."""
    return {run_id for _, run_id in SUBMITTING.findall(worker.output(limit=1_000_000))}


def test_batch_fans_out_over_two_process_workers(
    prefect_server: PrefectServer, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Every row runs as a child generate-video run, both workers take some, all are archived."""
    server = prefect_server
    with on_server(server):
        OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).save(
            "omniflash", overwrite=True
        )
        shared = tmp_path / "shared-results"
        results_block = LocalFileSystem(basepath=str(shared)).save(
            "omniflash-results", overwrite=True
        )
    project = checkout(tmp_path / "checkout")
    run(argv_of("prefect work-pool create omniflash --type process"), cwd=project, env=server.env())
    run(argv_of("prefect deploy --all"), cwd=project, env=server.env())
    with api(server) as client:
        video_deployment = client.read_deployment_by_name(VIDEO_DEPLOYMENT)
        batch_deployment = client.read_deployment_by_name(BATCH_DEPLOYMENT)
    assert batch_deployment.entrypoint == "flows/generate_video_batch.py:generate_video_batch"
    assert video_deployment.work_pool_name == batch_deployment.work_pool_name == "omniflash"

    batch_id = f"fan-out-{uuid.uuid4().hex[:12]}"
    rows: list[dict[str, Any]] = [
        {"id": f"clip-{n}", "prompt": f"Lighthouse at dusk, shot {n} of {VIDEOS}", "duration": 4}
        for n in range(1, VIDEOS + 1)
    ]
    archive = tmp_path / "videos"
    env = worker_env(server, archive)
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                Background(
                    argv_of(f"{WORKER_COMMAND} --name {name}"),
                    cwd=project,
                    env=env,
                    log=tmp_path / f"{name}.log",
                )
            )
            for name in WORKERS
        ]
        output = run(
            [
                *argv_of(f"prefect deployment run {BATCH_DEPLOYMENT}"),
                "--param",
                "fan_out=deployments",
                "--param",
                f"requests={json.dumps(rows)}",
                "--param",
                f"batch_id={batch_id}",
                "--param",
                f"max_concurrency={MAX_CONCURRENCY}",
                "--param",
                "result_storage_block=local-file-system/omniflash-results",
            ],
            cwd=project,
            env=server.env(),
        )
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        assert match, output
        batch_run = wait_for_final_state(server, UUID(match.group(1)), workers)
        logs = {name: submitted_runs(worker) for name, worker in zip(WORKERS, workers, strict=True)}
        outputs = "\n\n".join(worker.output(6000) for worker in workers)

    assert batch_run.state_type == StateType.COMPLETED, outputs
    assert batch_run.deployment_id == batch_deployment.id
    assert batch_run.parameters["fan_out"] == "deployments"
    assert batch_run.state is not None
    assert (batch_run.state.message or "").startswith(f"{VIDEOS} of {VIDEOS} videos archived, ")

    with api(server) as client:
        (table,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key("batch", batch_id)])
            )
        )
        children = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[video_deployment.id]))
        )
        parents = {
            child.id: client.read_task_run(child.parent_task_run_id).flow_run_id
            for child in children
            if child.parent_task_run_id is not None
        }
    assert table.flow_run_id == batch_run.id

    # The report: every row archived, each video on disk with the emulator's bytes, paid once.
    report = {row["id"]: row for row in table_of(table.data)}
    assert sorted(report) == sorted(row["id"] for row in rows)
    for row in report.values():
        assert row["status"] == "archived", row
        video = Path(row["location_or_error"])
        assert video.is_file(), row
        assert video.is_relative_to(archive), row
        assert hashlib.sha256(video.read_bytes()).hexdigest() == video_sha256(row["task_id"], None)
    assert emulator.state.submission_count == VIDEOS
    assert sorted(emulator.state.snapshot()["tasks"]) == sorted(
        r["task_id"] for r in report.values()
    )

    # One generate-video run per row, each a child of the batch run, its result persisted in the
    # shared result-storage block (not in the worker's default storage).
    assert len(children) == VIDEOS, [child.name for child in children]
    by_key = {child.parameters["idempotency_key"]: child for child in children}
    for row_id, row in report.items():
        child = by_key[row_idempotency_key(batch_id, row_id)]
        assert child.state_type == StateType.COMPLETED, child.state
        assert parents[child.id] == batch_run.id, child.name
        assert child.state is not None
        metadata = child.state.data
        assert isinstance(metadata, ResultRecordMetadata), metadata
        assert metadata.storage_block_id == results_block
        persisted = JSONSerializer().loads((shared / str(metadata.storage_key)).read_bytes())
        assert isinstance(persisted, ArchivedVideo), persisted
        assert (persisted.task_id, persisted.location) == (row["task_id"], row["location_or_error"])
        assert persisted.sha256 == video_sha256(row["task_id"], None)

    # Both workers ran generate-video runs (one alone has too few slots for the batch and its
    # rows): each run carries the label of the worker that started it, whose output logged it.
    ran_by = {str(child.id): child.labels.get("prefect.worker.name") for child in children}
    assert set(ran_by.values()) == set(WORKERS), ran_by
    for run_id, name in ran_by.items():
        assert isinstance(name, str)
        assert run_id in logs[name], (name, run_id)
    assert batch_run.labels.get("prefect.worker.name") in WORKERS
