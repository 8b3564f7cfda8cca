"""The fenced blocks of the README and the docs pages, by section: what they tell users to type
is what the tests run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


@dataclass(frozen=True)
class Section:
    """The console commands and Python snippets of one section of a page, in order."""

    commands: list[str]
    python_blocks: list[str]

    def command(self, prefix: str) -> str:
        """The one command whose first words are ``prefix``."""
        found = [c for c in self.commands if c == prefix or c.startswith(f"{prefix} ")]
        assert len(found) == 1, f"expected one command starting {prefix!r}: {found}"
        return found[0]

    def snippet(self, marker: str) -> str:
        """The one Python block that contains ``marker``."""
        found = [b for b in self.python_blocks if marker in b]
        assert len(found) == 1, f"expected one Python block with {marker!r}"
        return found[0]


def readme_section(heading: str, page: str = "README.md") -> Section:
    """The fenced blocks under ``heading`` (e.g. ``## Batches``) of ``page`` (a path from the
    repository's root, e.g. ``docs/how-to/batches.md``), up to the next ``## ``."""
    text = "\n" + (REPO / page).read_text(encoding="utf-8")
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
