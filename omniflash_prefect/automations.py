"""The Prefect Automations omniflash ships, and installing them on a server by name.

The definitions live in ``automations.yaml`` beside this module, in the format of ``prefect
automation create --from-file``, so users of ``prefect.yaml`` can apply the same file with
Prefect's own command. :func:`automation_definitions` reads them (pure: no server);
:func:`install_automations` creates what is missing, updates what differs and leaves the rest,
so running it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final, Literal

import yaml
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore, EventTrigger

DEFINITIONS: Final = Path(__file__).with_name("automations.yaml")
#: The automation that sets a run whose heartbeats stopped Crashed.
LOST_RUNS: Final = "omniflash-crash-lost-runs"
#: Silences shorter than this would crash live runs: Prefect sends a heartbeat every 30 s at
#: the most often (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` is raised to 30 below that).
MIN_SILENCE_SECONDS: Final = 35.0

InstallAction = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class InstalledAutomation:
    """What installing one automation did."""

    name: str
    id: str
    action: InstallAction


def automation_definitions(silence_seconds: float | None = None) -> list[AutomationCore]:
    """The shipped automations; ``silence_seconds`` replaces how long a run may stay silent
    (the lost-runs trigger's ``within``, 180 s in the file) before it is crashed."""
    if silence_seconds is not None and silence_seconds < MIN_SILENCE_SECONDS:
        raise ValueError(
            f"a silence of {silence_seconds:g} s would crash live runs: heartbeats come at most "
            f"every 30 s, so use at least {MIN_SILENCE_SECONDS:g} s"
        )
    document = yaml.safe_load(DEFINITIONS.read_text(encoding="utf-8"))
    definitions = [AutomationCore.model_validate(item) for item in document["automations"]]
    if silence_seconds is None:
        return definitions
    return [
        _with_silence(definition, silence_seconds) if definition.name == LOST_RUNS else definition
        for definition in definitions
    ]


def _with_silence(definition: AutomationCore, silence_seconds: float) -> AutomationCore:
    trigger = definition.trigger
    if not isinstance(trigger, EventTrigger):  # the file says otherwise: a packaging mistake
        raise TypeError(f"automation {definition.name!r} has no event trigger")
    within = timedelta(seconds=silence_seconds)
    return definition.model_copy(update={"trigger": trigger.model_copy(update={"within": within})})


async def install_automations(definitions: list[AutomationCore]) -> list[InstalledAutomation]:
    """Create each automation that the server lacks (by name), update one that differs."""
    installed = []
    async with get_client() as client:
        for definition in definitions:
            existing = await client.read_automations_by_name(definition.name)
            if not existing:
                created = await client.create_automation(definition)
                installed.append(InstalledAutomation(definition.name, str(created), "created"))
                continue
            current = existing[0]
            if AutomationCore.model_validate(current.model_dump(exclude={"id"})) == definition:
                installed.append(InstalledAutomation(definition.name, str(current.id), "unchanged"))
                continue
            await client.update_automation(current.id, definition)
            installed.append(InstalledAutomation(definition.name, str(current.id), "updated"))
    return installed
