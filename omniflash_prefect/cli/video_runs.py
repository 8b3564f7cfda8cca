"""One ``generate_video`` (or ``fetch_video``) run from a command, and how it ended.

The commands never raise for a failed run: they turn its final state into a
:class:`GenerationOutcome` that keeps the original exception (for ``--json``'s ``error_type``),
the task id when one is known (to resume without paying again) and the run's id, and that
derives its status word and exit code from :mod:`omniflash_prefect.cli.exit_codes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import State

from omniflash_prefect.cli.exit_codes import EXIT_OK, classify
from omniflash_prefect.cli.flow_runs import RunStarted, run_flow_watched
from omniflash_prefect.cli.progress import ProgressCallback, RunProgress, read_run_progress
from omniflash_prefect.errors import (
    ExitStatus,
    GenerationError,
    MediaCheckError,
    RunCancelledError,
)
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.flows import agenerate_video

Status = Literal["archived"] | ExitStatus


@dataclass(frozen=True)
class GenerationOutcome:
    """How one ``generate_video`` (or ``fetch_video``) run ended: the archived video, or the
    error that stopped it."""

    prompt: str | None
    archived: ArchivedVideo | None = None
    error: BaseException | None = None
    task_id: str | None = None
    flow_run_id: UUID | None = None

    @property
    def status(self) -> Status:
        """``archived``, or the failure's status word."""
        return "archived" if self.error is None else classify(self.error)[0]

    @property
    def exit_code(self) -> int:
        """0 when archived, else the failure's exit code."""
        return EXIT_OK if self.error is None else classify(self.error)[1]

    def to_json(self) -> dict[str, Any]:
        """The one JSON object ``omniflash generate --json`` prints."""
        body: dict[str, Any] = {
            "status": self.status,
            "task_id": self.task_id,
            "prompt": self.prompt,
            "flow_run_id": str(self.flow_run_id) if self.flow_run_id else None,
        }
        if self.archived is not None:
            body.update(
                task_id=self.archived.task_id,
                cost=self.archived.cost,
                location=self.archived.location,
                sha256=self.archived.sha256,
                size_bytes=self.archived.size_bytes,
                media=(
                    self.archived.media.model_dump(mode="json")
                    if self.archived.media is not None
                    else None
                ),
            )
        if self.error is not None:
            body.update(error=str(self.error), error_type=type(self.error).__name__)
            if isinstance(self.error, MediaCheckError):
                body.update(location=self.error.location, media_problem=self.error.problem)
        return body


async def run_generation(
    parameters: Mapping[str, Any],
    *,
    on_progress: ProgressCallback | None = None,
    watch_interval: float = 0.5,
    flow: Flow[..., Any] = agenerate_video,
    on_started: RunStarted | None = None,
) -> GenerationOutcome:
    """Run ``generate_video`` (or another one-video flow, e.g. ``fetch_video``) in this process
    and report how it ended; never raises for a failed run. ``on_progress`` is called with what
    the run's artifacts say while it runs (its ``task_ids`` as soon as they are paid for), and
    ``on_started`` with the run's id as soon as the run exists."""
    last: list[RunProgress] = []

    async def follow(client: PrefectClient, flow_run_id: UUID) -> None:
        update = await _read_progress_quietly(client, flow_run_id)
        if update is not None:
            last.append(update)
            if on_progress is not None:
                on_progress(update)

    state, flow_run_id = await run_flow_watched(
        flow, parameters, on_tick=follow, watch_interval=watch_interval, on_started=on_started
    )
    prompt = parameters.get("prompt")
    outcome = await _outcome_of(
        state, prompt if isinstance(prompt, str) else None, flow_run_id, last[-1] if last else None
    )
    if outcome.task_id is None and isinstance(parameters.get("task_id"), str):
        outcome = dataclasses.replace(outcome, task_id=parameters["task_id"])
    return outcome


async def _read_progress_quietly(client: PrefectClient, flow_run_id: UUID) -> RunProgress | None:
    """Showing progress must never break the run it shows: a failed read just skips a
    refresh."""
    try:
        return await read_run_progress(client, flow_run_id)
    except Exception:
        return None


async def _outcome_of(
    state: State[Any], prompt: str | None, flow_run_id: UUID, last: RunProgress | None
) -> GenerationOutcome:
    """The archived video of a completed run, else the exception it ended with (the task id
    from the error, or else from the last progress read)."""
    try:
        result: object = await state.aresult(raise_on_failure=False)
    except Exception as exc:
        result = exc
    if state.is_completed() and isinstance(result, ArchivedVideo):
        return GenerationOutcome(
            prompt, archived=result, task_id=result.task_id, flow_run_id=flow_run_id
        )
    error = (
        result
        if isinstance(result, BaseException)
        else RuntimeError(f"the flow run ended {state.name}: {state.message}")
    )
    task_id = error.task_id if isinstance(error, GenerationError | MediaCheckError) else None
    if isinstance(error, RunCancelledError) and error.task_ids:
        task_id = error.task_ids[0]
    if task_id is None and last is not None:
        task_id = last.task_id
    return GenerationOutcome(prompt, error=error, task_id=task_id, flow_run_id=flow_run_id)
