"""The ``omniflash`` command: ``generate``, ``fetch``, ``batch``, ``release``, ``demo``,
``emulator`` and ``automations install``.

Thin on purpose: it parses options, calls the library and prints; all behaviour lives below it
(:mod:`omniflash_prefect.cli.commands` runs the flow and decides statuses and exit codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.settings import PREFECT_API_URL
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from omniflash_prefect.batches.options import FanOut
from omniflash_prefect.cli.batch_commands import BatchOptions, BatchOutcome, run_batch
from omniflash_prefect.cli.commands import (
    EXIT_ERROR,
    EXIT_INVALID,
    FetchOptions,
    GenerateOptions,
    GenerationOutcome,
    ProgressCallback,
    RunProgress,
    flow_run_ui_url,
    run_demo,
)
from omniflash_prefect.cli.commands import (
    fetch as run_fetch,
)
from omniflash_prefect.cli.commands import (
    generate as run_generate,
)
from omniflash_prefect.cli.commands import (
    release as run_release,
)
from omniflash_prefect.core.errors import InvalidTaskIdError, SubmissionReleaseError
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer, serve
from omniflash_prefect.video.automations import (
    MIN_SILENCE_SECONDS,
    automation_definitions,
    install_automations,
)

app = typer.Typer(
    name="omniflash",
    help="Generate Omni-Flash-Ext videos from Prefect pipelines, or try it all on the emulator.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

#: Options several commands share, declared once.
ArchiveDirOption = Annotated[
    Path | None,
    typer.Option(help="Local archive directory (default: OMNIFLASH_ARCHIVE_DIR or ./videos)."),
]
StorageBlockOption = Annotated[
    str | None,
    typer.Option(help="Archive to a storage block instead: '<type-slug>/<name>'."),
]
CredentialsBlockOption = Annotated[
    str | None,
    typer.Option(help="An OmniFlashCredentials block (default: OMNIFLASH_* settings)."),
]
ResultStorageBlockOption = Annotated[
    str | None,
    typer.Option(help="Where task ids and other records are kept: '<type-slug>/<name>'."),
]

TEMPORARY_SERVER_NOTE = (
    "This run used a temporary local Prefect server that stopped with this command (the run "
    "stays recorded in the local database).\n"
    "To keep runs visible in the Prefect UI, start a server in another terminal and point "
    "Prefect at it:\n"
    "  prefect server start\n"
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
def _progress_bar(enabled: bool) -> Iterator[ProgressCallback | None]:
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


def _print_archived(outcome: GenerationOutcome, heading: str) -> None:
    """The archived video, its run, and where to see that run in the Prefect UI."""
    archived = outcome.archived
    assert archived is not None
    console.print(heading, soft_wrap=True)
    console.print(f"  video:    {archived.location}", soft_wrap=True, highlight=False)
    console.print(f"  sha256:   {archived.sha256}", highlight=False)
    console.print(f"  size:     {archived.size_bytes} bytes", highlight=False)
    if archived.cost is not None:
        console.print(f"  cost:     {archived.cost}", highlight=False)
    console.print(f"  flow run: {outcome.flow_run_id}", highlight=False)
    url = flow_run_ui_url(outcome.flow_run_id) if outcome.flow_run_id else None
    if url:
        console.print(f"  Prefect UI: {url}", soft_wrap=True, highlight=False)
    else:
        console.print(TEMPORARY_SERVER_NOTE, soft_wrap=True, highlight=False)


def _print_failure(outcome: GenerationOutcome, command: str) -> None:
    """Why the command failed, on stderr, with the task and run ids when known."""
    errors.print(
        f"[red]{command} failed[/red] ({outcome.status}, exit {outcome.exit_code}): "
        f"{outcome.error}",
        soft_wrap=True,
        highlight=False,
    )
    if outcome.task_id:
        errors.print(f"  task id:  {outcome.task_id}", highlight=False)
    if outcome.flow_run_id:
        errors.print(f"  flow run: {outcome.flow_run_id}", highlight=False)


def _report(outcome: GenerationOutcome, command: str, *, json_output: bool) -> NoReturn:
    """End a one-video command: its JSON object or its text, and its exit code."""
    if json_output:
        typer.echo(json.dumps(outcome.to_json()))
    elif outcome.archived is not None:
        _print_archived(outcome, f"Archived task [bold]{outcome.task_id}[/bold]")
    else:
        _print_failure(outcome, command)
    raise typer.Exit(outcome.exit_code)


@app.command()
def generate(
    prompt: Annotated[
        str, typer.Argument(help="Scene, people, action, camera, style and sound hints.")
    ],
    duration: Annotated[int, typer.Option(help="Seconds: 4, 6, 8 or 10.")] = 6,
    resolution: Annotated[str, typer.Option(help="720p, 1080p or 4k.")] = "720p",
    aspect_ratio: Annotated[str, typer.Option(help="W:H, e.g. 16:9 or 9:16.")] = "16:9",
    image_url: Annotated[
        list[str] | None,
        typer.Option(help="A reference image URL; repeat for 3 (reference fusion)."),
    ] = None,
    image_file: Annotated[
        list[Path] | None,
        typer.Option(help="A local JPEG, PNG, WebP or GIF to upload and use as an image."),
    ] = None,
    archive_dir: ArchiveDirOption = None,
    storage_block: StorageBlockOption = None,
    credentials_block: CredentialsBlockOption = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Reuse the video of an earlier run with the same key and request."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of progress and text.")
    ] = False,
) -> None:
    """Generate one video with the generate_video flow, showing its progress, and archive it.

    Exit codes: 0 archived; 2 invalid input or usage (nothing sent); 3 refused by the API (key,
    balance, request, rate limit); 4 generation failed, was cancelled or timed out; 1 anything
    else (e.g. a submission of unknown outcome, a failed download).
    """
    options = GenerateOptions(
        prompt=prompt,
        duration=duration,
        resolution=resolution,
        aspect_ratio=aspect_ratio,
        image_urls=tuple(image_url or ()),
        image_files=tuple(image_file or ()),
        archive_dir=archive_dir,
        storage_block=storage_block,
        credentials_block=credentials_block,
        idempotency_key=idempotency_key,
    )
    with _progress_bar(enabled=not json_output) as show:
        outcome = asyncio.run(run_generate(options, on_progress=show))
    _report(outcome, "generate", json_output=json_output)


@app.command()
def fetch(
    task_id: Annotated[
        str, typer.Argument(help="A task id already submitted (from a log, report or error).")
    ],
    archive_dir: ArchiveDirOption = None,
    storage_block: StorageBlockOption = None,
    credentials_block: CredentialsBlockOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of progress and text.")
    ] = False,
) -> None:
    """Poll and archive a task that was already paid for, with the fetch_video flow; nothing is
    submitted.

    Exit codes as for generate: 0 archived; 2 invalid task id or usage; 3 refused by the API
    (key, unknown task); 4 generation failed, was cancelled or timed out; 1 anything else.
    """
    options = FetchOptions(
        task_id=task_id,
        archive_dir=archive_dir,
        storage_block=storage_block,
        credentials_block=credentials_block,
    )
    with _progress_bar(enabled=not json_output) as show:
        outcome = asyncio.run(run_fetch(options, on_progress=show))
    _report(outcome, "fetch", json_output=json_output)


@app.command()
def release(
    submission_key: Annotated[
        str,
        typer.Argument(
            help="The key named by SubmissionOutcomeUnknownError (omniflash-submit-...)."
        ),
    ],
    task_id: Annotated[
        str | None,
        typer.Option(help="The task the interrupted submission did create: resume it."),
    ] = None,
    result_storage_block: ResultStorageBlockOption = None,
) -> None:
    """Resolve a submission whose outcome is unknown, once you have checked the provider.

    The key of a request that was in flight when its sender died (or could not tell whether it was
    accepted) is blocked: no run sends it again by itself. If the provider's task list shows the
    task it created, pass --task-id: the next run with the key polls and archives that task. If no
    task was created, run it without --task-id: the next run with the key submits again.

    Exit codes: 0 done, or nothing to change; 2 not a submission key, an invalid task id, or a
    key that already holds another task; 1 anything else.
    """
    try:
        done = asyncio.run(
            run_release(submission_key, task_id=task_id, result_storage_block=result_storage_block)
        )
    except (SubmissionReleaseError, InvalidTaskIdError) as exc:
        errors.print(f"[red]release refused:[/red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    except Exception as exc:
        errors.print(f"[red]release failed:[/red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_ERROR) from None
    messages = {
        "released": "Released: the next run with this key submits its request again.",
        "recorded": f"Recorded task {task_id}: the next run with this key polls and archives it.",
        "unchanged": "Nothing to change: the key is not blocked.",
    }
    console.print(messages[done], soft_wrap=True, highlight=False)


@app.command()
def batch(
    manifest: Annotated[
        str,
        typer.Argument(
            help="A JSONL or CSV manifest: one request per line/row (prompt, duration, "
            "resolution, aspect_ratio, image_urls, video_urls, optional id)."
        ),
    ],
    manifest_block: Annotated[
        str | None,
        typer.Option(help="Read MANIFEST from this filesystem block: '<type-slug>/<name>'."),
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Skip invalid rows (reported) instead of refusing to start.")
    ] = False,
    batch_id: Annotated[
        str | None,
        typer.Option(help="Name the batch; run again with the same id to resume it."),
    ] = None,
    max_concurrency: Annotated[int, typer.Option(help="Videos in flight at once.", min=1)] = 8,
    concurrency_limit: Annotated[
        str | None,
        typer.Option(help="A Prefect global concurrency limit shared with other runs."),
    ] = None,
    budget: Annotated[
        float | None, typer.Option(help="Never start a video that could exceed this spend.")
    ] = None,
    cost_estimate: Annotated[
        float | None,
        typer.Option(help="Expected cost of one video (default: learnt from finished ones)."),
    ] = None,
    check_balance: Annotated[
        bool, typer.Option(help="Refuse to start if the balance cannot cover the budget.")
    ] = False,
    fan_out: Annotated[
        FanOut,
        typer.Option(help="'subflows' (this process) or 'deployments' (the pool's workers)."),
    ] = FanOut.SUBFLOWS,
    storage_block: StorageBlockOption = None,
    archive_dir: ArchiveDirOption = None,
    credentials_block: CredentialsBlockOption = None,
    result_storage_block: ResultStorageBlockOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
) -> None:
    """Generate every video of a manifest with the generate_video_batch flow and report them.

    Exit codes: 0 every row archived; 2 invalid manifest or usage (nothing sent); 3 the balance
    cannot cover the budget (nothing sent); 4 some rows were not archived (see the report);
    1 anything else.
    """
    options = BatchOptions(
        manifest=manifest,
        manifest_block=manifest_block,
        skip_invalid=skip_invalid,
        batch_id=batch_id,
        max_concurrency=max_concurrency,
        concurrency_limit=concurrency_limit,
        budget=budget,
        cost_estimate=cost_estimate,
        check_balance=check_balance,
        fan_out=fan_out,
        credentials_block=credentials_block,
        storage_block=storage_block,
        archive_dir=archive_dir,
        result_storage_block=result_storage_block,
    )
    with _progress_bar(enabled=not json_output) as show:
        outcome = asyncio.run(
            run_batch(
                options,
                on_progress=(lambda p: show(RunProgress("videos", p))) if show else None,
            )
        )
    if json_output:
        typer.echo(json.dumps(outcome.to_json()))
    elif outcome.report is not None:
        _print_report(outcome)
    else:
        errors.print(
            f"[red]batch failed[/red] ({outcome.status}, exit {outcome.exit_code}): "
            f"{outcome.error}",
            soft_wrap=True,
            highlight=False,
        )
        if outcome.flow_run_id:
            errors.print(f"  flow run: {outcome.flow_run_id}", highlight=False)
    raise typer.Exit(outcome.exit_code)


def _print_report(outcome: BatchOutcome) -> None:
    """The headline, every row that was not archived, and how to resume."""
    report = outcome.report
    assert report is not None
    console.print(f"Batch [bold]{report.batch_id}[/bold]: {report.headline()}", soft_wrap=True)
    unfinished = [item for item in report.items if item.status != "archived"]
    if unfinished:
        table = Table("id", "status", "task id", "error")
        for item in unfinished:
            table.add_row(item.id, item.status, item.task_id or "", item.error or "")
        console.print(table)
    console.print(f"  wall time: {report.wall_seconds:.1f} s", highlight=False)
    console.print(f"  flow run:  {outcome.flow_run_id}", highlight=False)
    console.print(f"  resume:    --batch-id {report.batch_id}", highlight=False)
    url = flow_run_ui_url(outcome.flow_run_id) if outcome.flow_run_id else None
    if url:
        console.print(f"  Prefect UI: {url}", soft_wrap=True, highlight=False)


@app.command()
def demo(
    archive_dir: Annotated[
        Path | None,
        typer.Option(help="Where the video is archived (default: OMNIFLASH_ARCHIVE_DIR)."),
    ] = None,
    emulator: Annotated[
        bool | None,
        typer.Option(
            "--emulator/--live",
            help="Force the emulator, or the live API. Default: the emulator unless "
            "OMNIFLASH_API_KEY is set.",
            show_default=False,
        ),
    ] = None,
    job_seconds: Annotated[
        float, typer.Option(help="How long the emulated generation takes.", min=0)
    ] = 3.0,
) -> None:
    """Generate, poll and archive one video with the generate_video flow; free on the emulator."""
    with _progress_bar(enabled=True) as show:
        result = asyncio.run(
            run_demo(
                archive_dir=archive_dir,
                use_emulator=emulator,
                job_seconds=job_seconds,
                on_progress=show,
            )
        )
    outcome = result.outcome
    if outcome.archived is None:
        _print_failure(outcome, "demo")
        raise typer.Exit(outcome.exit_code)
    where = "the built-in emulator" if result.used_emulator else result.base_url
    _print_archived(outcome, f"Generated task [bold]{outcome.task_id}[/bold] on {where}")


@app.command(name="emulator")
def run_emulator(
    host: Annotated[str, typer.Option(help="Address to bind (loopback only by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    api_key: Annotated[str, typer.Option(help="The bearer key the emulator accepts.")] = (
        "emulator-key"
    ),
    job_seconds: Annotated[float, typer.Option(help="Seconds from submit to done.")] = 3.0,
    task_failure_rate: Annotated[float, typer.Option(help="Fraction of tasks that fail.")] = 0.0,
    rate_limit_rate: Annotated[float, typer.Option(help="Fraction of calls answered 429.")] = 0.0,
    retry_after: Annotated[
        float | None, typer.Option(help="Retry-After seconds on 429s (none by default).")
    ] = None,
    server_error_rate: Annotated[float, typer.Option(help="Fraction of calls answered 502.")] = 0.0,
    latency: Annotated[float, typer.Option(help="Seconds added to every API answer.")] = 0.0,
    submit_delay: Annotated[
        float, typer.Option(help="Seconds between accepting a submit and answering it.")
    ] = 0.0,
    drop_first_downloads: Annotated[
        int, typer.Option(help="Cut the first N downloads of each video midway.")
    ] = 0,
    download_drop_rate: Annotated[
        float, typer.Option(help="Fraction of further downloads cut midway.")
    ] = 0.0,
    download_stall: Annotated[
        float, typer.Option(help="Seconds every download stalls half way.")
    ] = 0.0,
    ignore_range: Annotated[
        bool, typer.Option(help="Serve whole files (200) even when a Range is asked.")
    ] = False,
    serve_non_mp4: Annotated[
        bool, typer.Option(help="Serve videos that are not MP4s ('ftyp' box renamed).")
    ] = False,
    url_ttl: Annotated[float, typer.Option(help="Seconds a video URL stays valid.")] = 86400.0,
    balance: Annotated[float, typer.Option(help="Account balance (402 when spent).")] = 100.0,
    unlimited_balance: Annotated[bool, typer.Option(help="Never answer 402.")] = False,
    video_size: Annotated[
        int | None, typer.Option(help="Serve videos of exactly this many bytes.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fault dice.")] = 0,
    allow_non_loopback: Annotated[
        bool, typer.Option(help="Allow binding a non-loopback address.")
    ] = False,
) -> None:
    """Run the local stand-in for the provider in the foreground (Ctrl+C stops it)."""
    try:
        config = EmulatorConfig(
            api_key=api_key,
            job_seconds=job_seconds,
            task_failure_rate=task_failure_rate,
            rate_limit_rate=rate_limit_rate,
            retry_after_seconds=retry_after,
            server_error_rate=server_error_rate,
            latency_seconds=latency,
            submit_answer_delay_seconds=submit_delay,
            drop_first_downloads=drop_first_downloads,
            download_drop_rate=download_drop_rate,
            download_stall_seconds=download_stall,
            ignore_range=ignore_range,
            serve_non_mp4=serve_non_mp4,
            url_ttl_seconds=url_ttl,
            balance=balance,
            unlimited_balance=unlimited_balance,
            video_size_bytes=video_size,
            seed=seed,
        )
    except ValueError as exc:
        errors.print(f"[red]invalid emulator option:[/red] {exc}")
        raise typer.Exit(2) from None

    def announce(server: EmulatorServer) -> None:
        errors.print(f"Omni-Flash-Ext emulator on {server.base_url} (Ctrl+C stops it)")
        errors.print(f"  export OMNIFLASH_BASE_URL={server.base_url}")
        errors.print(f"  export OMNIFLASH_API_KEY={server.api_key}")

    try:
        serve(
            config, host=host, port=port, allow_non_loopback=allow_non_loopback, on_ready=announce
        )
    except (ValueError, OSError) as exc:
        errors.print(f"[red]cannot start the emulator:[/red] {exc}")
        raise typer.Exit(2) from None


automations = typer.Typer(
    help="Prefect Automations that keep batches going when workers die.", no_args_is_help=True
)
app.add_typer(automations, name="automations")


@automations.command(name="install")
def install(
    silence_seconds: Annotated[
        float | None,
        typer.Option(
            help="Crash a run this long after its last heartbeat (default: 180, as in "
            "automations.yaml); keep it over twice PREFECT_FLOWS_HEARTBEAT_FREQUENCY.",
            min=MIN_SILENCE_SECONDS,
        ),
    ] = None,
    pending_seconds: Annotated[
        float | None,
        typer.Option(
            help="Crash a run this long after a worker took it if it has not started running "
            "(default: 600, as in automations.yaml).",
            min=1,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create or update omniflash's Automations on the Prefect server (by name); idempotent."""
    if PREFECT_API_URL.value() is None:
        errors.print(
            "[red]no Prefect server:[/red] automations live on a server; set PREFECT_API_URL "
            "(for example `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`)"
        )
        raise typer.Exit(EXIT_INVALID)
    definitions = automation_definitions(silence_seconds, pending_seconds)
    installed = asyncio.run(install_automations(definitions))
    if json_output:
        typer.echo(json.dumps({"automations": [vars(each) for each in installed]}))
        return
    for each in installed:
        console.print(f"{each.action.capitalize()} automation {each.name!r} ({each.id})")


def main() -> None:
    """Console-script entry point."""
    app()
