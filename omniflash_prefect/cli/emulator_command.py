"""``omniflash emulator``: the local stand-in for the provider, in the foreground.

Its options are made from :class:`~omniflash_prefect.emulator.EmulatorConfig`, one per field
(name, type, default and help from the field), so a knob added to the emulator is on the command
line at once and the two never disagree. Values are checked by the config itself, which names
the field it refuses. Only where to listen is the command's own.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, cast

import typer
from pydantic.fields import FieldInfo

from omniflash_prefect.cli import rendering
from omniflash_prefect.cli.exit_codes import EXIT_INVALID
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer, serve
from omniflash_prefect.emulator.config import CommandLineFlag


def config_flag(name: str, field: FieldInfo) -> str:
    """The flag of a config field: its :class:`CommandLineFlag`, else ``--`` and its name."""
    for metadata in field.metadata:
        if isinstance(metadata, CommandLineFlag):
            return metadata.flag
    return "--" + name.replace("_", "-")


def _config_parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    """One config field as a keyword parameter that Typer turns into an option (a switch with
    its ``--no-`` form for a bool, as Typer makes by itself from a parameter's name)."""
    flag = config_flag(name, field)
    if field.annotation is bool:
        flag = f"{flag}/--no-{flag.removeprefix('--')}"
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[field.annotation, typer.Option(flag, help=field.description)],
        default=field.default,
    )


def _server_parameter(
    name: str, annotation: type, default: object, help_text: str
) -> inspect.Parameter:
    """An option of where the emulator listens (not part of its config)."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[annotation, typer.Option(help=help_text)],
        default=default,
    )


def run_emulator(*, host: str, port: int, allow_non_loopback: bool, **config_values: Any) -> None:
    """Run the local stand-in for the provider in the foreground (Ctrl+C stops it)."""
    try:
        config = EmulatorConfig(**config_values)
    except ValueError as exc:
        rendering.errors.print(f"[red]invalid emulator option:[/red] {exc}")
        raise typer.Exit(EXIT_INVALID) from None

    def announce(server: EmulatorServer) -> None:
        rendering.errors.print(f"Omni-Flash-Ext emulator on {server.base_url} (Ctrl+C stops it)")
        rendering.errors.print(f"  export OMNIFLASH_BASE_URL={server.base_url}")
        rendering.errors.print(f"  export OMNIFLASH_API_KEY={server.api_key}")

    try:
        serve(
            config, host=host, port=port, allow_non_loopback=allow_non_loopback, on_ready=announce
        )
    except (ValueError, OSError) as exc:
        rendering.errors.print(f"[red]cannot start the emulator:[/red] {exc}")
        raise typer.Exit(EXIT_INVALID) from None


# Typer reads a command's options from its signature: where to listen, then every config field
# in the config's order, then the one safety switch, as the command has always listed them.
cast(Any, run_emulator).__signature__ = inspect.Signature(
    [
        _server_parameter("host", str, "127.0.0.1", "Address to bind (loopback only by default)."),
        _server_parameter("port", int, 8765, "Port to listen on (0: any free port)."),
        *(_config_parameter(name, f) for name, f in EmulatorConfig.model_fields.items()),
        _server_parameter(
            "allow_non_loopback", bool, False, "Allow binding a non-loopback address."
        ),
    ],
    return_annotation=None,
)
