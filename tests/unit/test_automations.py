"""The shipped Automations, read as Prefect reads them (no server)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from omniflash_prefect.automations import DEFINITIONS, LOST_RUNS, automation_definitions


def lost_runs_trigger(definitions: list[AutomationCore]) -> EventTrigger:
    (definition,) = (each for each in definitions if each.name == LOST_RUNS)
    assert isinstance(definition.trigger, EventTrigger)
    return definition.trigger


def test_the_file_is_what_prefect_automation_create_reads() -> None:
    """``prefect automation create --from-file`` takes a document with an ``automations`` list
    of AutomationCore objects: the file validates as such, and the module reads the same."""
    document = yaml.safe_load(DEFINITIONS.read_text(encoding="utf-8"))
    from_file = [AutomationCore.model_validate(item) for item in document["automations"]]
    assert from_file == automation_definitions()


def test_a_silent_omniflash_run_is_crashed_after_three_missed_heartbeats() -> None:
    """After a heartbeat, a tagged flow run must send another (or a final state) within 180 s,
    else the action sets it Crashed; each run is judged on its own."""
    (definition,) = automation_definitions()
    trigger = lost_runs_trigger([definition])
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= trigger.expect
    assert {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"} <= trigger.expect
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.within == timedelta(seconds=180)
    assert trigger.match == ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"})
    assert trigger.match_related == ResourceSpecification(
        {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.omniflash"}
    )
    (action,) = definition.actions
    assert action.model_dump()["type"] == "change-flow-run-state"
    assert action.model_dump()["state"] == "CRASHED"


def test_the_silence_can_be_tuned_and_nothing_else_changes() -> None:
    default = automation_definitions()
    tuned = automation_definitions(silence_seconds=45)
    assert lost_runs_trigger(tuned).within == timedelta(seconds=45)
    assert lost_runs_trigger(tuned).model_copy(update={"within": timedelta(seconds=180)}) == (
        lost_runs_trigger(default)
    )


def test_a_silence_shorter_than_heartbeats_can_be_is_refused() -> None:
    """Prefect sends heartbeats at most every 30 s: a shorter silence would crash live runs."""
    with pytest.raises(ValueError, match="would crash live runs"):
        automation_definitions(silence_seconds=20)
