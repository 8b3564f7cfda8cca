"""The module paths of 0.1, which moved into subpackages in 0.2, kept importable for one release.

Prefect stores each saved result's class by its import path (``omniflash_prefect.archive.
ArchivedVideo``, ``omniflash_prefect.models.VideoTask``, ``omniflash_prefect.batch.BatchReport``,
...), so submission records, archive records and batch rows written by 0.1 name modules that no
longer exist as files. An import of an old path gets the module that now holds its contents (the
same module object, so ``isinstance`` and monkeypatching behave) with a ``DeprecationWarning``.
The aliases go in 0.3 (see CHANGELOG).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Final

#: Old module name (under ``omniflash_prefect.``) -> the module that holds its contents now.
MOVED_MODULES: Final[dict[str, str]] = {
    "archive": "video.archive",
    "automations": "video.automations",
    "batch": "batches.report",
    "batch_commands": "cli.batch_commands",
    "batch_flow": "batches.flow",
    "batch_runners": "batches.runners",
    "blocks": "video.blocks",
    "claims": "video.claims",
    "commands": "cli.commands",
    "dispatch": "video.dispatch",
    "errors": "core.errors",
    "flows": "video.flows",
    "locks": "video.locks",
    "manifest": "batches.manifest",
    "models": "core.models",
    "observability": "video.observability",
    "polling": "core.polling",
    "protocol": "core.protocol",
    "retry": "core.retry",
    "submissions": "video.submissions",
    "tasks": "video.tasks",
}

_PACKAGE: Final = __name__.rpartition(".")[0]


class _MovedModuleLoader(importlib.abc.Loader):
    """Hands out the module at the new path under the old name."""

    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self.new_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new_name}; the old path goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(self.new_name)
        self.new_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Importing under the old name stamped the old spec on the shared module: put back its own.
        module.__spec__ = self.new_spec


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(
            fullname, _MovedModuleLoader(f"{_PACKAGE}.{MOVED_MODULES[name]}")
        )


def install() -> None:
    """Make the old module paths importable (idempotent)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
