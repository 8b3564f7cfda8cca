"""The shipped Automations, read as Prefect reads them (no server)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from omniflash_prefect.video.automations import (
    DEFINITIONS,
    LOST_RUNS,
    STUCK_PENDING_RUNS,
    automation_definitions,
)

TERMINAL = {
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
}
OMNIFLASH_RUNS = ResourceSpecification(
    {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.omniflash"}
)


def named(definitions: list[AutomationCore], name: str) -> AutomationCore:
    (definition,) = (each for each in definitions if each.name == name)
    return definition


def trigger_of(definitions: list[AutomationCore], name: str) -> EventTrigger:
    trigger = named(definitions, name).trigger
    assert isinstance(trigger, EventTrigger)
    return trigger


def lost_runs_trigger(definitions: list[AutomationCore]) -> EventTrigger:
    return trigger_of(definitions, LOST_RUNS)


def test_the_file_is_what_prefect_automation_create_reads() -> None:
    """``prefect automation create --from-file`` takes a document with an ``automations`` list
    of AutomationCore objects: the file validates as such, and the module reads the same."""
    document = yaml.safe_load(DEFINITIONS.read_text(encoding="utf-8"))
    from_file = [AutomationCore.model_validate(item) for item in document["automations"]]
    assert from_file == automation_definitions()


def test_a_silent_omniflash_run_is_crashed_after_three_missed_heartbeats() -> None:
    """After a heartbeat, a tagged flow run must send another (or a final state) within 180 s,
    else the action sets it Crashed; each run is judged on its own."""
    definition = named(automation_definitions(), LOST_RUNS)
    trigger = lost_runs_trigger([definition])
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.expect == {"prefect.flow-run.heartbeat", *TERMINAL}
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.within == timedelta(seconds=180)
    assert trigger.match == ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"})
    assert trigger.match_related == OMNIFLASH_RUNS
    (action,) = definition.actions
    assert action.model_dump()["type"] == "change-flow-run-state"
    assert action.model_dump()["state"] == "CRASHED"


def test_a_run_taken_but_never_started_is_crashed_after_ten_minutes() -> None:
    """A worker that dies between taking a run (Pending) and starting it leaves a run that
    never heartbeats: it is crashed when it has not run within 600 s of being taken."""
    definition = named(automation_definitions(), STUCK_PENDING_RUNS)
    trigger = trigger_of([definition], STUCK_PENDING_RUNS)
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {"prefect.flow-run.Pending"}
    assert trigger.expect == {"prefect.flow-run.Running", *TERMINAL}
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.within == timedelta(seconds=600)
    assert trigger.match_related == OMNIFLASH_RUNS
    (action,) = definition.actions
    assert action.model_dump()["state"] == "CRASHED"


def test_each_wait_can_be_tuned_and_nothing_else_changes() -> None:
    default = automation_definitions()
    tuned = automation_definitions(silence_seconds=45, pending_seconds=50)
    assert trigger_of(tuned, LOST_RUNS).within == timedelta(seconds=45)
    assert trigger_of(tuned, STUCK_PENDING_RUNS).within == timedelta(seconds=50)
    for name, seconds in ((LOST_RUNS, 180), (STUCK_PENDING_RUNS, 600)):
        restored = trigger_of(tuned, name).model_copy(update={"within": timedelta(seconds=seconds)})
        assert restored == trigger_of(default, name)
        assert named(tuned, name).actions == named(default, name).actions
    assert automation_definitions(silence_seconds=45)[1:] == default[1:]


def test_a_silence_shorter_than_heartbeats_can_be_is_refused() -> None:
    """Prefect sends heartbeats at most every 30 s: a shorter silence would crash live runs."""
    with pytest.raises(ValueError, match="would crash live runs"):
        automation_definitions(silence_seconds=20)
