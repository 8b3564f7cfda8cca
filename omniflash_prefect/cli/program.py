"""The ``omniflash`` command: ``generate``, ``fetch``, ``batch``, ``release``, ``sweep``, ``demo``,
``emulator``, ``automations install``, ``spend-limit set|show|delete``, ``spend`` and
``server status|stop``.

Thin on purpose: it declares the options, calls the modules that do the work and ends with what
:mod:`omniflash_prefect.cli.rendering` prints. Behind it: :mod:`~omniflash_prefect.cli.commands`
(generate, fetch, release), :mod:`~omniflash_prefect.cli.batch_commands`,
:mod:`~omniflash_prefect.cli.spend_commands`, :mod:`~omniflash_prefect.cli.demo`,
:mod:`~omniflash_prefect.cli.emulator_command` and :mod:`~omniflash_prefect.cli.server_commands`;
statuses and exit codes come from :mod:`~omniflash_prefect.cli.exit_codes`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from prefect.settings import PREFECT_API_URL

from omniflash_prefect.batches.options import BatchRunOptions, FanOut
from omniflash_prefect.cli import rendering
from omniflash_prefect.cli.batch_commands import BatchOptions, BatchOutcome, run_batch
from omniflash_prefect.cli.commands import FetchOptions, GenerateOptions
from omniflash_prefect.cli.commands import fetch as run_fetch
from omniflash_prefect.cli.commands import generate as run_generate
from omniflash_prefect.cli.commands import release as run_release
from omniflash_prefect.cli.commands import sweep as run_sweep
from omniflash_prefect.cli.demo import run_demo
from omniflash_prefect.cli.emulator_command import run_emulator
from omniflash_prefect.cli.exit_codes import EXIT_INVALID, classify
from omniflash_prefect.cli.server_commands import server_app
from omniflash_prefect.cli.spend_commands import run_dry_run, spend, spend_limit_app
from omniflash_prefect.errors import UsageError
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
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object instead of progress and text.")
]
SpendLimitOption = Annotated[
    str | None,
    typer.Option(
        help="A spend limit shared by every run naming it (omniflash spend-limit set): start "
        "only when it can hold the video's estimated cost, and count what it cost."
    ),
]
StrictMediaOption = Annotated[
    bool,
    typer.Option(
        help="Exit 5 when an archived video is not the duration, resolution and shape asked for, "
        "or cannot be read (it is kept); default: a warning, shown in the output."
    ),
]


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
    strict_media: StrictMediaOption = False,
    spend_limit: SpendLimitOption = None,
    json_output: JsonOption = False,
) -> None:
    """Generate one video with the generate_video flow, showing its progress, and archive it.

    Exit codes: 0 archived; 2 invalid input or usage (nothing sent); 3 refused by the API (key,
    balance, request, rate limit) or by --spend-limit (nothing sent); 4 generation failed, was
    cancelled or timed out; 5 archived, but with --strict-media not the video asked for; 1
    anything else (e.g. a submission of unknown outcome, a failed download).
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
        strict_media=strict_media,
        spend_limit=spend_limit,
    )
    announcer = rendering.RunAnnouncer()
    with rendering.progress_bar(enabled=not json_output) as show:
        outcome = asyncio.run(
            run_generate(
                options, on_progress=announcer.following(show), on_started=announcer.started
            )
        )
    rendering.end_video_command(outcome, "generate", json_output=json_output)


@app.command()
def fetch(
    task_id: Annotated[
        str, typer.Argument(help="A task id already submitted (from a log, report or error).")
    ],
    archive_dir: ArchiveDirOption = None,
    storage_block: StorageBlockOption = None,
    credentials_block: CredentialsBlockOption = None,
    spend_limit: Annotated[
        str | None,
        typer.Option(
            help="Count the task's cost on this spend limit (once, however often it is fetched)."
        ),
    ] = None,
    json_output: JsonOption = False,
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
        spend_limit=spend_limit,
    )
    with rendering.progress_bar(enabled=not json_output) as show:
        outcome = asyncio.run(run_fetch(options, on_progress=show))
    rendering.end_video_command(outcome, "fetch", json_output=json_output)


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

    Exit codes: 0 done, or nothing to change; 2 not a submission key, an invalid task id, a key
    that already holds another task, or a --result-storage-block that is not a filesystem block;
    1 anything else.
    """
    try:
        done = asyncio.run(
            run_release(submission_key, task_id=task_id, result_storage_block=result_storage_block)
        )
    except Exception as exc:
        status, code = classify(exc)
        what = "refused" if status in ("invalid", "refused") else "failed"
        rendering.errors.print(f"[red]release {what}:[/red] {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(code) from None
    messages = {
        "released": "Released: the next run with this key submits its request again.",
        "recorded": f"Recorded task {task_id}: the next run with this key polls and archives it.",
        "unchanged": "Nothing to change: the key is not blocked.",
    }
    rendering.console.print(messages[done], soft_wrap=True, highlight=False)


@app.command()
def sweep(
    flow_run_id: Annotated[
        str | None, typer.Option(help="Only the videos this flow run paid for.")
    ] = None,
    result_storage_block: ResultStorageBlockOption = None,
    credentials_block: CredentialsBlockOption = None,
    storage_block: StorageBlockOption = None,
    archive_dir: ArchiveDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Archive every video that was paid for and that no run will archive (a cancelled,
    timed-out, killed or abandoned run), where its run would have put it.

    Reads the submission records (of --result-storage-block, else Prefect's result storage);
    the blocks and archive directory are for videos whose run did not say where they go.
    Exit codes: 0 nothing lost; 4 a paid video expired before it was archived, or a
    submission's outcome is unknown (the report says what to do); 1 anything else.
    """
    parameters = {
        "flow_run_id": flow_run_id,
        "result_storage_block": result_storage_block,
        "credentials_block": credentials_block,
        "storage_block": storage_block,
        "archive_dir": str(archive_dir) if archive_dir else None,
    }
    outcome = asyncio.run(run_sweep(parameters))
    rendering.end_sweep_command(outcome, json_output=json_output)


#: How a batch runs is declared once, in BatchRunOptions: the options take its defaults and help.
_RUN_DEFAULTS = BatchRunOptions()


def _run_help(name: str) -> str | None:
    """The help of a batch option: the description of its BatchRunOptions field."""
    return BatchRunOptions.model_fields[name].description


def _run_minimum(name: str) -> int:
    """The least value of an integer batch option, as its BatchRunOptions field allows."""
    return int(BatchRunOptions.model_json_schema()["properties"][name]["minimum"])


ManifestArgument = Annotated[
    str,
    typer.Argument(
        help="A JSONL or CSV manifest: one request per line/row (prompt, duration, "
        "resolution, aspect_ratio, image_urls, video_urls, optional id)."
    ),
]
ManifestBlockOption = Annotated[
    str | None,
    typer.Option(help="Read MANIFEST from this filesystem block: '<type-slug>/<name>'."),
]
SkipInvalidOption = Annotated[bool, typer.Option(help=_run_help("skip_invalid"))]
BatchIdOption = Annotated[str | None, typer.Option(help=_run_help("batch_id"))]
MaxConcurrencyOption = Annotated[
    int,
    typer.Option(help=_run_help("max_concurrency"), min=_run_minimum("max_concurrency")),
]
RowsPerRunOption = Annotated[
    int, typer.Option(help=_run_help("rows_per_run"), min=_run_minimum("rows_per_run"))
]
ConcurrencyLimitOption = Annotated[str | None, typer.Option(help=_run_help("concurrency_limit"))]
BudgetOption = Annotated[float | None, typer.Option(help=_run_help("budget"))]
CostEstimateOption = Annotated[float | None, typer.Option(help=_run_help("cost_estimate"))]
CheckBalanceOption = Annotated[bool, typer.Option(help=_run_help("check_balance"))]
DryRunOption = Annotated[
    bool,
    typer.Option(
        help="Check every row and print the estimated cost per price class, against the budget "
        "and the spend limit; nothing is sent."
    ),
]
#: Not the field's help, which speaks of a deployment name that is no option of this command.
FanOutOption = Annotated[
    FanOut,
    typer.Option(
        help="'tasks' (task runs of the batch run) or 'deployments' (slices of --rows-per-run "
        "videos, each a run of the batch's deployment picked up by the pool's workers)."
    ),
]

ReportJsonOption = Annotated[
    bool, typer.Option("--json", help="Print the report as one JSON object.")
]


def _checked_run_options(*, json_output: bool, **values: Any) -> BatchRunOptions:
    """The batch's run options; a value out of range ends the command (exit 2) before anything
    is created or sent, naming every such option."""
    try:
        return BatchRunOptions.checked(**values)
    except UsageError as exc:
        rendering.end_batch_command(BatchOutcome(error=exc), json_output=json_output)


@app.command()
def batch(
    manifest: ManifestArgument,
    manifest_block: ManifestBlockOption = None,
    skip_invalid: SkipInvalidOption = _RUN_DEFAULTS.skip_invalid,
    batch_id: BatchIdOption = _RUN_DEFAULTS.batch_id,
    max_concurrency: MaxConcurrencyOption = _RUN_DEFAULTS.max_concurrency,
    concurrency_limit: ConcurrencyLimitOption = _RUN_DEFAULTS.concurrency_limit,
    budget: BudgetOption = _RUN_DEFAULTS.budget,
    cost_estimate: CostEstimateOption = _RUN_DEFAULTS.cost_estimate,
    check_balance: CheckBalanceOption = _RUN_DEFAULTS.check_balance,
    spend_limit: SpendLimitOption = None,
    fan_out: FanOutOption = _RUN_DEFAULTS.fan_out,
    rows_per_run: RowsPerRunOption = _RUN_DEFAULTS.rows_per_run,
    storage_block: StorageBlockOption = None,
    archive_dir: ArchiveDirOption = None,
    credentials_block: CredentialsBlockOption = None,
    result_storage_block: ResultStorageBlockOption = None,
    strict_media: StrictMediaOption = False,
    dry_run: DryRunOption = False,
    json_output: ReportJsonOption = False,
) -> None:
    """Generate every video of a manifest with the generate_video_batch flow and report them.

    Exit codes: 0 every row archived; 2 invalid manifest or usage (nothing sent); 3 the balance
    cannot cover the budget, or the API refused the balance check (nothing sent); 4 some rows
    were not archived (see the report, e.g. skipped_spend_limit); 5 all archived, but with
    --strict-media some are not the videos asked for; 1 anything else.
    """
    run = _checked_run_options(
        json_output=json_output,
        skip_invalid=skip_invalid,
        batch_id=batch_id,
        max_concurrency=max_concurrency,
        concurrency_limit=concurrency_limit,
        budget=budget,
        cost_estimate=cost_estimate,
        check_balance=check_balance,
        fan_out=fan_out,
        rows_per_run=rows_per_run,
    )
    options = BatchOptions(
        manifest,
        run,
        manifest_block=manifest_block,
        credentials_block=credentials_block,
        storage_block=storage_block,
        archive_dir=archive_dir,
        result_storage_block=result_storage_block,
        spend_limit=spend_limit,
        strict_media=strict_media,
    )
    if dry_run:
        run_dry_run(options, json_output=json_output)
    announcer = rendering.RunAnnouncer()
    with rendering.progress_bar(enabled=not json_output) as show:
        outcome = asyncio.run(
            run_batch(options, on_progress=announcer.following(show), on_started=announcer.started)
        )
    rendering.end_batch_command(outcome, json_output=json_output)


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
    with rendering.progress_bar(enabled=True) as show:
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
        rendering.print_failure(outcome, "demo")
        raise typer.Exit(outcome.exit_code)
    where = "the built-in emulator" if result.used_emulator else result.base_url
    rendering.print_archived(outcome, f"Generated task [bold]{outcome.task_id}[/bold] on {where}")


app.command(name="emulator")(run_emulator)
app.add_typer(spend_limit_app, name="spend-limit")
app.command(name="spend")(spend)
app.add_typer(server_app, name="server")


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
        rendering.errors.print(
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
        detail = f"({each.id})" if each.id else f": {each.why}"
        rendering.console.print(
            f"{each.action.capitalize()} automation {each.name!r} {detail}", soft_wrap=True
        )


def main() -> None:
    """Console-script entry point."""
    app()
