"""``omniflash automations install`` on a real Prefect server: created, then left alone, then
updated when the silence changes; the sweep's automation once its deployment exists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import EventTrigger
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from omniflash_prefect.cli import app
from omniflash_prefect.video.automations import (
    LOST_RUNS,
    STUCK_PENDING_RUNS,
    SWEEP_AFTER_RUNS,
    SWEEP_DEPLOYMENT,
)


@pytest.fixture
def no_automation() -> Iterator[None]:
    """The server holds none of the shipped automations before and after the test."""

    def delete() -> None:
        with get_client(sync_client=True) as client:
            for name in (LOST_RUNS, STUCK_PENDING_RUNS, SWEEP_AFTER_RUNS):
                for automation in client.read_automations_by_name(name):
                    client.delete_automation(automation.id)

    delete()
    yield
    delete()


def install(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["automations", "install", "--json", *args])
    return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else {}


def server_within(name: str) -> list[timedelta]:
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(name)
    triggers = [automation.trigger for automation in found]
    assert all(isinstance(trigger, EventTrigger) for trigger in triggers)
    return [trigger.within for trigger in triggers if isinstance(trigger, EventTrigger)]


@pytest.mark.usefixtures("no_automation")
def test_install_creates_once_then_updates_only_what_changed() -> None:
    code, first = install()
    assert code == 0
    created = {each["name"]: each for each in first["automations"]}
    skipped = created.pop(SWEEP_AFTER_RUNS)
    assert skipped["action"] == "skipped"
    assert "prefect deploy --name sweep-paid-videos" in skipped["why"]
    assert sorted(created) == sorted([LOST_RUNS, STUCK_PENDING_RUNS])
    assert {each["action"] for each in created.values()} == {"created"}
    assert server_within(LOST_RUNS) == [timedelta(seconds=180)]
    assert server_within(STUCK_PENDING_RUNS) == [timedelta(seconds=600)]

    code, again = install()
    assert code == 0
    assert [each for each in again["automations"] if each["name"] != SWEEP_AFTER_RUNS] == [
        {**created[each["name"]], "action": "unchanged"}
        for each in again["automations"]
        if each["name"] != SWEEP_AFTER_RUNS
    ]

    code, tuned = install("--silence-seconds", "45")
    assert code == 0
    actions = {each["name"]: (each["id"], each["action"]) for each in tuned["automations"]}
    assert actions == {
        LOST_RUNS: (created[LOST_RUNS]["id"], "updated"),
        STUCK_PENDING_RUNS: (created[STUCK_PENDING_RUNS]["id"], "unchanged"),
        SWEEP_AFTER_RUNS: ("", "skipped"),
    }
    assert server_within(LOST_RUNS) == [timedelta(seconds=45)]


def test_install_without_a_server_says_so() -> None:
    """Automations live on a server: with no PREFECT_API_URL, nothing is installed anywhere."""
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = CliRunner().invoke(app, ["automations", "install"])
    assert result.exit_code == 2
    assert "PREFECT_API_URL" in result.output


@pytest.mark.usefixtures("no_automation")
def test_the_sweep_automation_starts_the_sweep_deployment_once_it_exists() -> None:
    """With the sweep-paid-videos deployment on the server, its automation is created pointing
    at it, and passes it the id of the run that ended."""
    flow_name, deployment_name = SWEEP_DEPLOYMENT.split("/")
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_name)
        deployment_id = client.create_deployment(flow_id=flow_id, name=deployment_name)
    try:
        code, installed = install()
        assert code == 0
        sweep = {each["name"]: each for each in installed["automations"]}[SWEEP_AFTER_RUNS]
        assert sweep["action"] == "created"
        with get_client(sync_client=True) as client:
            (automation,) = client.read_automations_by_name(SWEEP_AFTER_RUNS)
        (action,) = automation.actions
        assert getattr(action, "deployment_id", None) == deployment_id
        assert "flow_run.id" in json.dumps(getattr(action, "parameters", None))
    finally:
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
