"""The README's "Running on a Prefect server" section, done for real on loopback.

A real ``prefect server start`` (temporary PREFECT_HOME, SQLite), the README's commands run as the
CLI a user types, a process worker picking the run up, and the in-process emulator playing the
provider. The project files are copied to a temporary checkout first, so nothing is written into
the repository; the test checks that ``prefect deploy`` and the run wrote nothing into the copy.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.exceptions import ObjectNotFound

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.video.observability import artifact_key, short_prompt
from tests.support.processes import (
    README_API_URL,
    REPO,
    Background,
    PrefectServer,
    api,
    argv_of,
    checkout,
    clean_env,
    fast_worker_env,
    on_server,
    readme_walkthrough,
    run,
)
from tests.support.readme import readme_section

pytestmark = pytest.mark.slow

BLOCK_TYPE = "omniflash-credentials"
DEPLOYMENT = "generate-video/generate-video"
#: The README's console commands, in order, by how each starts: the walkthrough runs them all.
COMMANDS = [
    "prefect server start",
    "prefect config set PREFECT_API_URL=",
    "prefect block register -m omniflash_prefect",
    "prefect work-pool create omniflash --type process",
    "prefect deploy --all",
    "prefect worker start --pool omniflash",
    f"prefect deployment run '{DEPLOYMENT}' --param prompt=",
]
FLOW_RUN_SECONDS = 120.0
EVENT_SECONDS = 30.0


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (bytecode caches aside) with the SHA-256 of its content."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def wait_for_final_state(server: PrefectServer, flow_run_id: UUID, worker: Background) -> FlowRun:
    """Read the flow run until its state is final (bounded); fail with the worker's output."""
    deadline = time.monotonic() + FLOW_RUN_SECONDS
    with api(server) as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            if worker.process.poll() is not None:
                pytest.fail(
                    f"the worker exited with {worker.process.returncode}:\n{worker.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"flow run {flow_run_id} still {flow_run.state_type} after "
                    f"{FLOW_RUN_SECONDS:.0f} s:\n{worker.output()}"
                )
            time.sleep(0.5)


def video_events(server: PrefectServer, task_id: str, expected: set[str]) -> dict[str, set[str]]:
    """The ``omniflash.video.*`` events of ``task_id`` (name -> related resource ids).

    Events reach the database through the server's batching persister, which cannot be awaited:
    read until every expected one is stored, within a bound.
    """
    deadline = time.monotonic() + EVENT_SECONDS
    with api(server) as client:
        while True:
            page = client.read_events(
                EventFilter(
                    occurred=EventOccurredFilter(),
                    event=EventNameFilter(prefix=["omniflash.video."]),
                ),
                limit=50,
            )
            found = {
                event.event.removeprefix("omniflash.video."): {r.id for r in event.related}
                for event in page.events
                if event.resource.get("omniflash.task-id") == task_id
            }
            if expected <= found.keys() or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def test_readme_section_lists_exactly_the_commands_the_walkthrough_runs() -> None:
    """Every console command of the README section is one the walkthrough below runs, in order."""
    commands = readme_walkthrough().commands
    assert len(commands) == len(COMMANDS), commands
    for command, start in zip(commands, COMMANDS, strict=True):
        assert command.startswith(start), (command, start)
    assert readme_walkthrough().command("prefect config set").endswith(README_API_URL)


def test_walkthrough_runs_the_deployment_on_a_process_worker(
    prefect_server: PrefectServer,
    emulator: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's commands take a fresh server to a worker that archives the deployed video."""
    server = prefect_server
    readme = readme_walkthrough()
    assert (server.home / "prefect.db").is_file(), "the server's SQLite lives in PREFECT_HOME"

    # A fresh server started in this environment registered the block type on start (through
    # the package's prefect.collections entry point); remove it so registering must restore it.
    checksum = OmniFlashCredentials._calculate_schema_checksum()
    with api(server) as client:
        block_type = client.read_block_type_by_slug(BLOCK_TYPE)
        assert client.read_block_schema_by_checksum(checksum).block_type_id == block_type.id
        client.delete_block_type(block_type.id)
        with pytest.raises(ObjectNotFound):
            client.read_block_type_by_slug(BLOCK_TYPE)

    project = checkout(tmp_path / "checkout")
    files = tree(project)

    # `prefect config set` points the profile at the server; `block register` then reaches it
    # through the profile alone (no PREFECT_API_URL, no ephemeral server to fall back on).
    config_set = readme.command("prefect config set").replace(README_API_URL, server.api_url)
    run(argv_of(config_set), cwd=project, env=clean_env(server.home))
    profile_only = clean_env(server.home, PREFECT_SERVER_EPHEMERAL_ENABLED="false")
    run(argv_of(readme.command("prefect block register")), cwd=project, env=profile_only)
    with api(server) as client:
        registered = client.read_block_type_by_slug(BLOCK_TYPE)
        assert registered.id != block_type.id
        assert client.read_block_schema_by_checksum(checksum).block_type_id == registered.id

    # The README's snippet saves the block from the two variables `omniflash emulator` prints.
    monkeypatch.setenv("OMNIFLASH_API_KEY", emulator.api_key)
    monkeypatch.setenv("OMNIFLASH_BASE_URL", emulator.base_url)
    with on_server(server):
        exec(compile(readme.snippet(".save("), "README.md", "exec"), {"__name__": "readme"})
        saved = OmniFlashCredentials.load("omniflash")
    assert isinstance(saved, OmniFlashCredentials)
    assert saved.base_url == emulator.base_url
    assert saved.api_key.get_secret_value() == emulator.api_key

    run(argv_of(readme.command("prefect work-pool create")), cwd=project, env=server.env())
    run(argv_of(readme.command("prefect deploy")), cwd=project, env=server.env())
    assert tree(project) == files, "prefect deploy wrote into the checkout"

    with api(server) as client:
        assert client.read_work_pool("omniflash").type == "process"
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    assert deployment.entrypoint == "flows/generate_video.py:generate_video"
    assert deployment.work_pool_name == "omniflash"
    assert deployment.parameters["credentials_block"] == "omniflash"
    assert {"omniflash", "video-generation"} <= set(deployment.tags)
    assert deployment.description
    # `{{ $PWD }}` was substituted by `prefect deploy`: the checkout's path is in the deployment
    # and not in prefect.yaml.
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}
    ]
    assert "{{ $PWD }}" in (REPO / "prefect.yaml").read_text(encoding="utf-8")
    assert deployment.schedules, "prefect.yaml declares an example schedule"
    assert not any(schedule.active for schedule in deployment.schedules)
    assert emulator.api_key not in deployment.model_dump_json()  # parameters, schedules, all

    archive = tmp_path / "videos"
    run_command = readme.command("prefect deployment run")
    prompt = next(w for w in shlex.split(run_command) if w.startswith("prompt=")).split("=", 1)[1]
    worker_command = argv_of(readme.command("prefect worker start"))
    with Background(
        worker_command, cwd=project, env=fast_worker_env(server, archive), log=tmp_path / "worker"
    ) as worker:
        output = run(argv_of(run_command), cwd=project, env=server.env())
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        assert match, output
        flow_run = wait_for_final_state(server, UUID(match.group(1)), worker)
        assert flow_run.state_type == StateType.COMPLETED, worker.output()
    assert flow_run.deployment_id == deployment.id
    assert flow_run.parameters["prompt"] == prompt
    assert emulator.api_key not in json.dumps(flow_run.parameters)
    assert flow_run.name == short_prompt(prompt, 48)
    assert {"omniflash", "720p", "4s"} <= set(flow_run.tags)

    assert emulator.state.submission_count == 1
    (task_id,) = emulator.state.snapshot()["tasks"]
    (video,) = archive.glob(f"omniflash/*/{task_id}.mp4")
    assert hashlib.sha256(video.read_bytes()).hexdigest() == emulator.state.video_sha256(task_id)
    assert tree(project) == files, "the run wrote into the checkout"

    with api(server) as client:
        artifacts = {
            artifact.key: artifact
            for artifact in client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
            )
        }
    assert artifacts[artifact_key("progress", task_id)].data == 100
    assert video.as_uri() in str(artifacts[artifact_key("video", task_id)].data)
    assert emulator.state.video_sha256(task_id) in str(
        artifacts[artifact_key("summary", task_id)].data
    )
    events = video_events(server, task_id, {"submitted", "completed", "archived"})
    assert {"submitted", "completed", "archived"} <= events.keys()
    assert all(f"prefect.flow-run.{flow_run.id}" in related for related in events.values())


def test_readme_pipeline_example_composes_the_tasks_in_a_flow(
    prefect_server: PrefectServer, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The README's async pipeline, run as a script, submits, polls and archives two videos,
    once each, and reports to the server."""
    server = prefect_server
    with on_server(server):
        OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).save(
            "omniflash", overwrite=True
        )
    script = tmp_path / "storyboard.py"
    pipelines = readme_section("# Pipelines, sync and async", "docs/how-to/pipelines.md")
    script.write_text(pipelines.snippet("async def storyboard("), encoding="utf-8")
    archive = tmp_path / "videos"

    output = run([sys.executable, str(script)], cwd=tmp_path, env=fast_worker_env(server, archive))

    assert emulator.state.submission_count == 2
    videos = sorted(archive.glob("storyboard/*/*.mp4"))
    assert sorted(video.stem for video in videos) == sorted(emulator.state.snapshot()["tasks"])
    for video in videos:
        assert hashlib.sha256(video.read_bytes()).hexdigest() == emulator.state.video_sha256(
            video.stem
        )
        assert str(video) in output
    with api(server) as client:
        (flow_run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["storyboard"]))
        )
    assert flow_run.state_type == StateType.COMPLETED
