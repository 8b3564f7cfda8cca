"""The ``omniflash`` command: ``demo`` and ``emulator`` (more commands build on the same app).

Thin on purpose: it parses options, calls the library and prints; all behaviour lives below it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from omniflash_prefect.demo import run_demo
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer, serve
from omniflash_prefect.errors import OmniFlashError
from omniflash_prefect.models import VideoTask
from omniflash_prefect.settings import OmniFlashSettings

app = typer.Typer(
    name="omniflash",
    help="Generate Omni-Flash-Ext videos from Prefect pipelines, or try it all on the emulator.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


@app.command()
def demo(
    archive_dir: Annotated[
        Path, typer.Option(help="Where the video is archived (default: OMNIFLASH_ARCHIVE_DIR).")
    ] = Path(),
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
    """Generate, poll and archive one video end to end; free against the built-in emulator."""
    settings = OmniFlashSettings()
    target = archive_dir if archive_dir != Path() else settings.archive_dir
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task("submitting", total=100)

        async def show(task: VideoTask) -> None:
            progress.update(bar, description=task.status, completed=task.progress or 0)

        try:
            result = asyncio.run(
                run_demo(
                    archive_dir=target,
                    use_emulator=emulator,
                    job_seconds=job_seconds,
                    on_update=show,
                    settings=settings,
                )
            )
        except (OmniFlashError, ValueError) as exc:
            errors.print(f"[red]demo failed:[/red] {exc}")
            raise typer.Exit(1) from None
    where = "the built-in emulator" if result.used_emulator else result.base_url
    console.print(f"Generated task [bold]{result.task.id}[/bold] on {where}")
    console.print(f"  video:   {result.video.path.resolve()}")
    console.print(f"  sha256:  {result.video.sha256}")
    console.print(f"  size:    {result.video.size_bytes} bytes")
    if result.task.cost is not None:
        console.print(f"  cost:    {result.task.cost}")


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
    drop_first_downloads: Annotated[
        int, typer.Option(help="Cut the first N downloads of each video midway.")
    ] = 0,
    download_drop_rate: Annotated[
        float, typer.Option(help="Fraction of further downloads cut midway.")
    ] = 0.0,
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
            drop_first_downloads=drop_first_downloads,
            download_drop_rate=download_drop_rate,
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


def main() -> None:
    """Console-script entry point."""
    app()
