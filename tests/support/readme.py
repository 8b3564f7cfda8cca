"""The README's fenced blocks, by section: what it tells users to type is what the tests run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True)
class Section:
    """The console commands and Python snippets of one README section, in order."""

    commands: list[str]
    python_blocks: list[str]

    def command(self, prefix: str) -> str:
        """The one command whose first words are ``prefix``."""
        found = [c for c in self.commands if c == prefix or c.startswith(f"{prefix} ")]
        assert len(found) == 1, f"expected one README command starting {prefix!r}: {found}"
        return found[0]

    def snippet(self, marker: str) -> str:
        """The one Python block that contains ``marker``."""
        found = [b for b in self.python_blocks if marker in b]
        assert len(found) == 1, f"expected one README Python block with {marker!r}"
        return found[0]


def readme_section(heading: str) -> Section:
    """The fenced blocks under ``heading`` (e.g. ``## Batches``), up to the next ``## ``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 1)
    section = text[start : end if end != -1 else len(text)]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    commands = [
        line.strip()
        for language, body in blocks
        if language == "console"
        for line in body.splitlines()
        if line.strip()
    ]
    return Section(commands, [body for language, body in blocks if language == "python"])
