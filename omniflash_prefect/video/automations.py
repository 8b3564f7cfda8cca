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
from uuid import UUID

import yaml
from prefect.client.orchestration import get_client
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger
from prefect.exceptions import ObjectNotFound

from omniflash_prefect.errors import OmniFlashError, UsageError

DEFINITIONS: Final = Path(__file__).with_name("automations.yaml")
#: The automation that sets a run whose heartbeats stopped Crashed.
LOST_RUNS: Final = "omniflash-crash-lost-runs"
#: The automation that sets a run taken by a worker that never started it Crashed.
STUCK_PENDING_RUNS: Final = "omniflash-crash-stuck-pending-runs"
#: The automation that starts a sweep when a run ends without its videos, and the deployment
#: it starts.
SWEEP_AFTER_RUNS: Final = "omniflash-sweep-after-runs"
SWEEP_DEPLOYMENT: Final = "sweep-paid-videos/sweep-paid-videos"
#: Silences shorter than this would crash live runs: Prefect sends a heartbeat every 30 s at
#: the most often (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` is raised to 30 below that).
MIN_SILENCE_SECONDS: Final = 35.0

InstallAction = Literal["created", "updated", "unchanged", "skipped"]


@dataclass(frozen=True)
class InstalledAutomation:
    """What installing one automation did."""

    name: str
    id: str
    action: InstallAction
    why: str = ""


def automation_definitions(
    silence_seconds: float | None = None, pending_seconds: float | None = None
) -> list[AutomationCore]:
    """The shipped automations, optionally tuned: ``silence_seconds`` replaces how long a
    running run may send no heartbeat (180 s in the file), ``pending_seconds`` how long a run
    taken by a worker may take to start running (600 s), before either is crashed."""
    if silence_seconds is not None and silence_seconds < MIN_SILENCE_SECONDS:
        raise UsageError(
            f"a silence of {silence_seconds:g} s would crash live runs: heartbeats come at most "
            f"every 30 s, so use at least {MIN_SILENCE_SECONDS:g} s"
        )
    if pending_seconds is not None and pending_seconds <= 0:
        raise UsageError("pending_seconds must be positive")
    document = yaml.safe_load(DEFINITIONS.read_text(encoding="utf-8"))
    definitions = [AutomationCore.model_validate(item) for item in document["automations"]]
    tuned = {LOST_RUNS: silence_seconds, STUCK_PENDING_RUNS: pending_seconds}
    return [
        _within(definition, seconds)
        if (seconds := tuned.get(definition.name)) is not None
        else definition
        for definition in definitions
    ]


def _within(definition: AutomationCore, seconds: float) -> AutomationCore:
    """The automation with its trigger's ``within`` replaced."""
    trigger = definition.trigger
    if not isinstance(trigger, EventTrigger):  # the file says otherwise: a packaging mistake
        raise OmniFlashError(f"automation {definition.name!r} has no event trigger")
    within = timedelta(seconds=seconds)
    return definition.model_copy(update={"trigger": trigger.model_copy(update={"within": within})})


async def install_automations(
    definitions: list[AutomationCore], sweep_deployment: str = SWEEP_DEPLOYMENT
) -> list[InstalledAutomation]:
    """Create each automation that the server lacks (by name), update one that differs. The
    sweep's automation starts ``sweep_deployment``: it is skipped, saying why, until that
    deployment exists."""
    installed = []
    async with get_client() as client:
        for definition in definitions:
            if definition.name == SWEEP_AFTER_RUNS:
                try:
                    deployment = await client.read_deployment_by_name(sweep_deployment)
                except ObjectNotFound:
                    why = f"deploy {sweep_deployment!r} first (prefect deploy --name "
                    why += f"{sweep_deployment.partition('/')[2]}), then install again"
                    installed.append(InstalledAutomation(definition.name, "", "skipped", why))
                    continue
                definition = _starting(definition, deployment.id)
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


def _starting(definition: AutomationCore, deployment_id: UUID) -> AutomationCore:
    """The automation with its run-deployment actions pointed at ``deployment_id``."""
    actions = [
        action.model_copy(update={"deployment_id": deployment_id})
        if isinstance(action, RunDeployment)
        else action
        for action in definition.actions
    ]
    return definition.model_copy(update={"actions": actions})
