"""``omniflash spend-limit set|show|delete``, ``omniflash spend`` and ``omniflash batch --dry-run``:
the money side of the command, none of which sends anything to the provider.

Spend limits live on the Prefect server (:mod:`omniflash_prefect.video.spend_limits`), so these
commands need ``PREFECT_API_URL``; without it they stop with exit 2 rather than keep a limit in a
temporary server that no other run would see.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from prefect.settings import PREFECT_API_URL

from omniflash_prefect.batches.estimates import BatchEstimate, estimate_batch
from omniflash_prefect.batches.flow import load_manifest
from omniflash_prefect.cli import rendering
from omniflash_prefect.cli.batch_commands import BatchOptions, check_batch_options
from omniflash_prefect.cli.exit_codes import EXIT_INVALID, classify
from omniflash_prefect.core.spending import (
    MAX_ROLLING_HOURS,
    SpendLimit,
    SpendLimitView,
    spend_history,
)
from omniflash_prefect.video.spend_limits import (
    define_spend_limit,
    delete_spend_limit,
    list_spend_limits,
    read_spend_limit,
    utc_now,
)

T = TypeVar("T")

spend_limit_app = typer.Typer(
    help="Spend limits shared by every run, worker and machine that names them.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The limit's name (lowercase, digits, dashes).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _fail(error: BaseException, what: str) -> NoReturn:
    _status, code = classify(error)
    rendering.errors.print(f"[red]{what}:[/red] {error}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _on_server(work: Awaitable[T], what: str) -> T:
    """Run ``work`` against the Prefect server; exit 2 without one, else the error's code."""
    if PREFECT_API_URL.value() is None:
        if hasattr(work, "close"):
            work.close()
        rendering.errors.print(
            "[red]no Prefect server:[/red] spend limits live on the server every run shares; "
            "set PREFECT_API_URL (e.g. `prefect config set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api`)"
        )
        raise typer.Exit(EXIT_INVALID)

    async def run() -> T:
        return await work

    try:
        return asyncio.run(run())
    except Exception as exc:
        _fail(exc, what)


def _print_view(view: SpendLimitView) -> None:
    rendering.console.print(
        f"[bold]{view.name}[/bold]: {view.limit:g} per {view.period}; spent {view.spent:g} "
        f"({view.videos} videos), reserved {view.reserved:g} ({view.in_flight} in flight), "
        f"remaining {view.remaining:g}, since {view.window_start.isoformat(timespec='seconds')}",
        soft_wrap=True,
        highlight=False,
    )


@spend_limit_app.command(name="set")
def set_limit(
    name: NameArgument,
    per_day: Annotated[
        float,
        typer.Option(
            "--per-day",
            help="What every run naming the limit may spend together in a UTC day (or in the "
            "rolling window); more than 0.",
        ),
    ],
    rolling_hours: Annotated[
        int | None,
        typer.Option(
            help="Count the last H hours instead of the UTC day.", min=1, max=MAX_ROLLING_HOURS
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a spend limit, or change its amount or window (what it counted is kept)."""
    view = _on_server(define_spend_limit(name, per_day, rolling_hours), "spend-limit set failed")
    if json_output:
        typer.echo(view.model_dump_json())
        return
    _print_view(view)


@spend_limit_app.command(name="show")
def show(
    name: Annotated[str | None, typer.Argument(help="One limit (default: every limit).")] = None,
    json_output: JsonOption = False,
) -> None:
    """What a limit (or every limit) has spent and reserved in its current window."""

    async def read() -> list[SpendLimit]:
        return [await read_spend_limit(name)] if name else await list_spend_limits()

    limits = _on_server(read(), "spend-limit show failed")
    now = utc_now()
    views = [limit.view(now) for limit in limits]
    if json_output:
        if name:
            typer.echo(views[0].model_dump_json())
        else:
            typer.echo(json.dumps({"limits": [v.model_dump(mode="json") for v in views]}))
        return
    if not views:
        rendering.console.print("No spend limits (omniflash spend-limit set NAME --per-day N).")
    for view in views:
        _print_view(view)


@spend_limit_app.command(name="delete")
def delete(name: NameArgument) -> None:
    """Remove a spend limit; runs naming it afterwards stop with exit 2, nothing sent."""
    _on_server(delete_spend_limit(name), "spend-limit delete failed")
    rendering.console.print(f"Deleted spend limit {name!r}.")


def spend(
    days: Annotated[int, typer.Option(help="How many UTC days back, today included.", min=1)] = 7,
    json_output: JsonOption = False,
) -> None:
    """What every spend limit counted per UTC day, from the settlements runs recorded."""
    limits = _on_server(list_spend_limits(), "spend failed")
    today = utc_now().date()
    first = (today - timedelta(days=days - 1)).isoformat()
    rows = spend_history(limits, first)
    totals: dict[str, float] = {}
    for row in rows:
        totals[row.limit] = round(totals.get(row.limit, 0.0) + row.spent, 6)
    if json_output:
        days_json = [row.model_dump(mode="json") for row in rows]
        typer.echo(json.dumps({"since": first, "days": days_json, "totals": totals}))
        return
    if not rows:
        rendering.console.print(f"Nothing settled on any spend limit since {first}.")
        return
    for row in rows:
        rendering.console.print(
            f"{row.day}  {row.limit:<24} {row.spent:>10g}  ({row.videos} videos)",
            highlight=False,
        )
    for limit_name, total in totals.items():
        rendering.console.print(f"Total {limit_name}: {total:g}", highlight=False)


async def dry_run_estimate(options: BatchOptions) -> dict[str, Any]:
    """``omniflash batch --dry-run``: every row checked, the estimate per price class, and what
    fits the budget and the spend limit. Reads the manifest and the limit, sends nothing."""
    manifest = check_batch_options(options)
    if manifest is None:
        manifest = await load_manifest(options.manifest, options.manifest_block, None)
    limit = await read_spend_limit(options.spend_limit) if options.spend_limit else None
    view = limit.view(utc_now()) if limit is not None else None
    estimate: BatchEstimate = estimate_batch(
        [row.request for row in manifest.rows],
        cost_estimate=options.run.cost_estimate,
        prices=limit.prices if limit is not None else None,
        budget=options.run.budget,
        room=view.remaining if view is not None else None,
    )
    return {
        "status": "dry_run",
        "sent": 0,
        "manifest": str(Path(options.manifest)),
        "invalid": [{"line": p.line, "id": p.id, "message": p.message} for p in manifest.problems],
        **estimate.model_dump(mode="json"),
        "spend_limit": view.model_dump(mode="json") if view is not None else None,
    }


def run_dry_run(options: BatchOptions, *, json_output: bool) -> NoReturn:
    """Print the dry run's estimate and exit 0 (2 for an invalid manifest or options)."""
    needs_server = options.spend_limit is not None or options.manifest_block is not None
    if needs_server:
        body = _on_server(dry_run_estimate(options), "batch --dry-run failed")
    else:
        try:
            body = asyncio.run(dry_run_estimate(options))
        except Exception as exc:
            _fail(exc, "batch --dry-run failed")
    if json_output:
        typer.echo(json.dumps(body))
        raise typer.Exit(0)
    print_line = rendering.console.print
    print_line(
        f"Dry run of {body['manifest']}: {body['videos']} videos to make, "
        f"{len(body['invalid'])} invalid rows skipped; nothing was sent.",
        soft_wrap=True,
        highlight=False,
    )
    for problem in body["invalid"]:
        print_line(
            f"  skipped: line {problem['line']} (id {problem['id']}): {problem['message']}",
            soft_wrap=True,
            highlight=False,
        )
    for each in body["classes"]:
        price = "unknown" if each["estimate"] is None else f"{each['estimate']:g}"
        total = "unknown" if each["total"] is None else f"{each['total']:g}"
        print_line(
            f"  {each['price_class']:<10} {each['videos']:>5} videos x {price} = {total}",
            highlight=False,
        )
    unpriced = body["unpriced_videos"]
    print_line(
        f"Estimated total: {body['estimated_total']:g}"
        + (f" (+ {unpriced} videos of unknown price)" if unpriced else ""),
        highlight=False,
    )
    if body["budget"] is not None:
        print_line(
            f"Budget {body['budget']:g}: {body['fit_budget']} of {body['videos']} videos fit.",
            highlight=False,
        )
    limit = body["spend_limit"]
    if limit is not None:
        print_line(
            f"Spend limit {limit['name']!r} ({limit['limit']:g} per {limit['period']}): spent "
            f"{limit['spent']:g}, reserved {limit['reserved']:g}, remaining "
            f"{limit['remaining']:g}: {body['fit_limit']} of {body['videos']} videos fit now.",
            soft_wrap=True,
            highlight=False,
        )
    raise typer.Exit(0)
