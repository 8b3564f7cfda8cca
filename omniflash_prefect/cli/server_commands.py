"""``omniflash server status|stop``: the local Prefect server the commands keep running.

Without ``PREFECT_API_URL`` the first command that runs a flow starts a Prefect server in the
background (:mod:`omniflash_prefect.cli.local_server`) and later ones reuse it; these two
commands show it and stop it. ``prefect server stop`` stops it too: it is Prefect's own
background server.
"""

from __future__ import annotations

import typer

from omniflash_prefect.cli import rendering
from omniflash_prefect.cli.exit_codes import EXIT_ERROR
from omniflash_prefect.cli.local_server import prefect_home, running_local_server, stop_local_server

server_app = typer.Typer(
    help="The local Prefect server that commands start when no PREFECT_API_URL is set.",
    no_args_is_help=True,
)


@server_app.command()
def status() -> None:
    """Where the local Prefect server runs (exit 0), or that none runs (exit 1)."""
    server = running_local_server()
    if server is None:
        rendering.console.print(
            f"No local Prefect server is running (PREFECT_HOME: {prefect_home()}).",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(EXIT_ERROR)
    rendering.console.print(
        f"A local Prefect server is running at {server.api_url} (UI: {server.ui_url}, "
        f"PID {server.pid}).",
        soft_wrap=True,
        highlight=False,
    )


@server_app.command()
def stop() -> None:
    """Stop the local Prefect server; the next command that needs one starts it again."""
    pid = stop_local_server()
    if pid is None:
        rendering.console.print("No local Prefect server was running.", highlight=False)
        return
    rendering.console.print(f"Stopped the local Prefect server (PID {pid}).", highlight=False)
