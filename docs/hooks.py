"""The command-line reference, generated from the ``omniflash`` command itself.

``docs/reference/cli.md`` is the ``--help`` of every command and subcommand, as the installed
command prints it at 100 columns. Run this file to regenerate the page after changing an option
or a help text (``uv run python docs/hooks.py``); as a MkDocs hook (``hooks:`` in ``mkdocs.yml``)
it stops the build while the committed page differs from what the command prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parent / "reference" / "cli.md"
WIDTH = 100

HEADER = """\
# Command line

Every `omniflash` command, with its `--help` as the command prints it. Each command that runs a
flow runs it on a Prefect server: `PREFECT_API_URL`'s, or a local one it starts (see
[Without a Prefect server](../how-to/command-line.md#without-a-prefect-server)). Options that
name a block take `'<type-slug>/<name>'` (`s3-bucket/videos`), except `--credentials-block`,
which takes the name of an `OmniFlashCredentials` block. How the commands fit together:
[The command line](../how-to/command-line.md), [Batches](../how-to/batches.md),
[Spend limits](../concepts/spend-limits.md), [Cancelling, timeouts and
salvage](../how-to/cancelling.md), [Lost workers](../how-to/lost-workers.md),
[The emulator](../how-to/emulator.md).

This page is generated from the command (`docs/hooks.py`).
"""


def _commands(command: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, [*path, name])


def render() -> str:
    """The page: a section per command, in the order ``omniflash --help`` lists them."""
    # Plain, fixed-width help whatever the terminal or CI says (Typer reads these on import).
    os.environ.update(
        {"TERMINAL_WIDTH": str(WIDTH), "COLUMNS": str(WIDTH), "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    )
    for name in ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS"):
        os.environ.pop(name, None)
    from typer.main import get_command
    from typer.testing import CliRunner

    from omniflash_prefect.cli.program import app

    runner = CliRunner()
    sections = [HEADER]
    for path in _commands(get_command(app), []):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)}, color=False)
        if result.exit_code != 0:
            raise RuntimeError(f"omniflash {' '.join(path)} --help exited {result.exit_code}")
        text = "\n".join(line.rstrip() for line in result.output.splitlines()).strip("\n")
        title = " ".join(["omniflash", *path])
        sections.append(f"## `{title}`\n\n```text\n{text}\n```\n")
    return "\n".join(sections)


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """MkDocs hook: fail the build while the committed page is not what the command prints.

    The page is rendered in a child process: importing the package here would let Prefect's own
    reading of the flows' docstrings log into this build.
    """
    from mkdocs.exceptions import PluginError

    rendered = subprocess.run(  # noqa: S603 (this file, with this interpreter)
        [sys.executable, __file__, "--print"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )
    if rendered.returncode != 0:
        raise PluginError(f"could not render the command-line reference:\n{rendered.stderr}")
    if PAGE.read_text(encoding="utf-8") != rendered.stdout:
        raise PluginError(
            f"{PAGE} is out of date with the omniflash command: regenerate it with "
            "`uv run python docs/hooks.py`"
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["--print"]:
        sys.stdout.write(render())
    else:
        PAGE.write_text(render(), encoding="utf-8")
        print(f"wrote {PAGE}")
