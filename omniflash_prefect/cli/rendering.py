"""What the commands print: progress bars, results on stdout, failures on stderr, ``--json``.

Kept apart from the commands' logic so each command ends the same way: one JSON object, or text
for a person (the result on stdout, why it failed on stderr), then its exit code. ``console`` and
``errors`` are module attributes so a test can swap in a terminal of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import NoReturn
from uuid import UUID

import typer
from prefect.logging.handlers import PrefectConsoleHandler
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from omniflash_prefect.cli.batch_commands import BatchOutcome
from omniflash_prefect.cli.commands import SweepOutcome
from omniflash_prefect.cli.flow_runs import flow_run_ui_url
from omniflash_prefect.cli.progress import ProgressCallback, RunProgress
from omniflash_prefect.cli.video_runs import GenerationOutcome
from omniflash_prefect.errors import RunCancelledError
from omniflash_prefect.video.observability import describe_facts

console = Console()
errors = Console(stderr=True)

#: Printed instead of the run's UI link when the run went to a temporary server
#: (``OMNIFLASH_PREFECT_SERVER=temporary``, or the local server could not start).
TEMPORARY_SERVER_NOTE = (
    "This run used a temporary local Prefect server that stopped with this command (the run "
    "stays recorded in the local database).\n"
    "To see runs in the Prefect UI, leave OMNIFLASH_PREFECT_SERVER unset (a local server then "
    "keeps running between commands), or point Prefect at a server of yours:\n"
    "  prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api"
)


@contextlib.contextmanager
def _quiet_prefect_console() -> Iterator[None]:
    """Keep Prefect's INFO run logs off the terminal while the progress bar draws (they still go
    to the Prefect API); warnings and errors still show."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    levels = [h.level for h in handlers]
    for handler in handlers:
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A progress bar fed by what the run reports; None (nothing drawn) when disabled."""
    if not enabled:
        yield None
        return
    with (
        _quiet_prefect_console(),
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        bar = progress.add_task("starting", total=100)

        def show(update: RunProgress) -> None:
            progress.update(bar, description=update.stage, completed=update.percent)

        yield show


class RunAnnouncer:
    """Says on stderr, one line each, what a user needs to find a run and what it paid for, as
    soon as it is known and whatever else is printed (a bar, text or ``--json``): the flow run's
    id and UI link when the run is created, and each task id the moment its video is submitted,
    so a command killed or cut off still leaves what is needed to resume or fetch."""

    def __init__(self) -> None:
        self._announced: set[str] = set()

    def started(self, flow_run_id: UUID) -> None:
        url = flow_run_ui_url(flow_run_id)
        where = url or "on a temporary Prefect server (no UI link)"
        errors.print(f"flow run {flow_run_id}: {where}", soft_wrap=True, highlight=False)

    def progressed(self, update: RunProgress) -> None:
        for task_id in update.task_ids:
            if task_id not in self._announced:
                self._announced.add(task_id)
                errors.print(f"paid: task {task_id}", soft_wrap=True, highlight=False)

    def following(self, show: ProgressCallback | None) -> ProgressCallback:
        """A progress callback that announces the tasks paid for, then draws ``show``'s bar."""

        def follow(update: RunProgress) -> None:
            self.progressed(update)
            if show is not None:
                show(update)

        return follow


def print_table(table: Table) -> None:
    """A table on stdout: fitted to the window on a terminal; elsewhere (a file, a pipe) at its
    natural width, so no id or location is cut with "…" and every row stays one line for grep
    and scripts."""
    if console.is_terminal:
        console.print(table)
        return
    width = console.measure(table, options=console.options.update(width=1_000_000)).maximum
    # Console.print never prints wider than its console: a console as wide as the table does.
    Console(file=console.file, width=max(width, console.width), color_system=None).print(table)


def print_archived(outcome: GenerationOutcome, heading: str) -> None:
    """The archived video, its run, and where to see that run in the Prefect UI."""
    archived = outcome.archived
    assert archived is not None
    console.print(heading, soft_wrap=True)
    console.print(f"  video:    {archived.location}", soft_wrap=True, highlight=False)
    console.print(f"  sha256:   {archived.sha256}", highlight=False)
    console.print(f"  size:     {archived.size_bytes} bytes", highlight=False)
    if archived.cost is not None:
        console.print(f"  cost:     {archived.cost}", highlight=False)
    if archived.media is not None:
        shown = archived.media.describe()
        if archived.media.facts is not None:
            shown += f" ({describe_facts(archived.media.facts)})"
        style = "yellow" if archived.media.flagged else "default"
        console.print(f"  media:    [{style}]{escape(shown)}[/{style}]", soft_wrap=True)
    console.print(f"  flow run: {outcome.flow_run_id}", highlight=False)
    url = flow_run_ui_url(outcome.flow_run_id) if outcome.flow_run_id else None
    if url:
        console.print(f"  Prefect UI: {url}", soft_wrap=True, highlight=False)
    else:
        console.print(TEMPORARY_SERVER_NOTE, soft_wrap=True, highlight=False)


def print_failure(outcome: GenerationOutcome | BatchOutcome, command: str) -> None:
    """Why the command failed, on stderr, with the task and run ids when known."""
    errors.print(
        f"[red]{command} failed[/red] ({outcome.status}, exit {outcome.exit_code}): "
        f"{outcome.error}",
        soft_wrap=True,
        highlight=False,
    )
    if isinstance(outcome, GenerationOutcome) and outcome.task_id:
        errors.print(f"  task id:  {outcome.task_id}", highlight=False)
    if outcome.flow_run_id:
        errors.print(f"  flow run: {outcome.flow_run_id}", highlight=False)
    print_handed_over(outcome.error)


def end_video_command(outcome: GenerationOutcome, command: str, *, json_output: bool) -> NoReturn:
    """End a one-video command: its JSON object or its text, and its exit code."""
    if json_output:
        typer.echo(json.dumps(outcome.to_json()))
    elif outcome.archived is not None:
        print_archived(outcome, f"Archived task [bold]{outcome.task_id}[/bold]")
    else:
        print_failure(outcome, command)
    raise typer.Exit(outcome.exit_code)


def end_batch_command(outcome: BatchOutcome, *, json_output: bool) -> NoReturn:
    """End ``omniflash batch``: its JSON object, its report, or why it stopped; its exit code."""
    if json_output:
        typer.echo(json.dumps(outcome.to_json()))
    elif outcome.report is not None:
        _print_batch_report(outcome)
    else:
        print_failure(outcome, "batch")
    raise typer.Exit(outcome.exit_code)


def print_handed_over(error: BaseException | None) -> None:
    """The paid tasks a cancelled run handed over to a sweep, one a line, on stderr."""
    if isinstance(error, RunCancelledError):
        for task_id in error.task_ids:
            errors.print(f"  handed over to a sweep: {task_id}", highlight=False)


def _print_batch_report(outcome: BatchOutcome) -> None:
    """The headline, every row that was not archived, and how to resume."""
    report = outcome.report
    assert report is not None
    console.print(f"Batch [bold]{report.batch_id}[/bold]: {report.headline()}", soft_wrap=True)
    unfinished = [item for item in report.items if item.status != "archived"]
    if unfinished:
        table = Table("id", "status", "task id", "error")
        for item in unfinished:
            table.add_row(item.id, item.status, item.task_id or "", item.error or "")
        print_table(table)
    if report.media_flagged:
        table = Table("id", "task id", "media check", "location")
        for item in report.media_flagged:
            problem = item.media.describe() if item.media is not None else ""
            table.add_row(item.id, item.task_id or "", problem, item.location or "")
        console.print("[yellow]Archived, but not as asked:[/yellow]")
        print_table(table)
    console.print(f"  wall time: {report.wall_seconds:.1f} s", highlight=False)
    console.print(f"  flow run:  {outcome.flow_run_id}", highlight=False)
    console.print(f"  resume:    --batch-id {report.batch_id}", highlight=False)
    url = flow_run_ui_url(outcome.flow_run_id) if outcome.flow_run_id else None
    if url:
        console.print(f"  Prefect UI: {url}", soft_wrap=True, highlight=False)


def end_sweep_command(outcome: SweepOutcome, *, json_output: bool) -> NoReturn:
    """End ``omniflash sweep``: its JSON report, or what it saved, lost and left; its code."""
    report = outcome.report
    if json_output:
        body = (
            report.model_dump(mode="json") if report is not None else {"error": str(outcome.error)}
        )
        typer.echo(json.dumps({**body, "flow_run_id": str(outcome.flow_run_id or "")}))
    elif report is None:
        errors.print(f"[red]sweep failed[/red]: {outcome.error}", soft_wrap=True, highlight=False)
    else:
        console.print(f"Sweep: {report.headline()}", soft_wrap=True, highlight=False)
        for video in report.videos:
            where = video.location or video.note
            console.print(
                f"  {video.outcome:<16} {video.task_id or video.key}  {where}",
                soft_wrap=True,
                highlight=False,
            )
    raise typer.Exit(outcome.exit_code)
