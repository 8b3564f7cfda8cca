"""The module paths of 0.1, which moved into subpackages in 0.2, kept importable for one release.

Prefect stores each saved result's class by its import path (``omniflash_prefect.archive.
ArchivedVideo``, ``omniflash_prefect.models.VideoTask``, ``omniflash_prefect.batch.BatchReport``,
...), so submission records, archive records and batch rows written by 0.1 name modules that no
longer exist as files. An import of an old path gets the module whose attributes are those of the
modules that now hold its contents (the same classes and functions, so ``isinstance`` holds), with
a ``DeprecationWarning``.
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
from typing import Any, Final

#: Old module name (under ``omniflash_prefect.``) -> the modules that hold its contents now.
MOVED_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "archive": ("video.archive",),
    "automations": ("video.automations",),
    "batch": ("batches.report",),
    "batch_commands": ("cli.batch_commands",),
    "batch_flow": ("batches.flow", "batches.options", "batches.records", "batches.scheduler"),
    "batch_runners": ("batches.runners", "core.errors"),
    "blocks": ("video.blocks",),
    "claims": ("video.claims",),
    "commands": (
        "cli.commands",
        "cli.exit_codes",
        "cli.usage",
        "cli.video_runs",
        "cli.flow_runs",
        "cli.progress",
        "cli.demo",
    ),
    "dispatch": ("video.dispatch",),
    "errors": ("core.errors",),
    "flows": ("video.flows", "video.one_video"),
    "locks": ("video.locks",),
    "manifest": ("batches.manifest",),
    "models": ("core.models", "core.requests"),
    "observability": ("video.observability",),
    "polling": ("core.polling",),
    "protocol": ("core.protocol",),
    "retry": ("core.retry",),
    "submissions": ("video.submissions",),
    "tasks": ("video.tasks", "video.steps", "video.credentials", "video.observability"),
}

_PACKAGE: Final = __name__.rpartition(".")[0]


class _MovedModuleLoader(importlib.abc.Loader):
    """Makes the old path a module whose attributes are looked up in the new homes (PEP 562)."""

    def __init__(self, homes: tuple[str, ...]) -> None:
        self.homes = homes

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # an ordinary, empty module

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(
            f"{module.__name__} moved to {' and '.join(self.homes)}; the old path goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        homes = [importlib.import_module(home) for home in self.homes]

        def attribute(name: str) -> Any:
            for home in homes:
                if hasattr(home, name):
                    return getattr(home, name)
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

        module.__getattr__ = attribute  # type: ignore[method-assign]
        module.__dir__ = lambda: sorted({name for home in homes for name in dir(home)})  # type: ignore[method-assign]


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
        homes = tuple(f"{_PACKAGE}.{home}" for home in MOVED_MODULES[name])
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(homes))


def install() -> None:
    """Make the old module paths importable (idempotent)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
