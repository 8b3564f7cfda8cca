"""The layering that ARCHITECTURE.md promises, checked on the source itself.

Layers stack bottom up: ``errors`` (the error tree), ``core`` (pure), ``settings``, ``client``,
``media``, ``video``, ``batches``, ``cli``. A module may import its own layer and the ones
below, never one above; ``emulator`` plays the provider and imports nothing of the package; and
``core`` imports no Prefect and no network code, which a child process proves by importing it
with those modules blocked.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "omniflash_prefect"
LAYERS = ["errors", "core", "settings", "client", "media", "video", "batches", "cli"]
#: What the pure core may never import, directly or through anything it imports.
NETWORK_AND_ORCHESTRATION = ["prefect", "httpx", "httpcore", "anyio", "h11", "asyncio", "ssl"]
#: Standard modules that open sockets or processes, which no core module imports itself.
IO_MODULES = {"socket", "ssl", "select", "selectors", "asyncio", "subprocess", "urllib.request"}


def package_imports(path: Path) -> list[str]:
    """Every module ``path`` imports, as absolute names (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.append(base)
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "omniflash_prefect" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in [*LAYERS, "emulator"] else None


def package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    own = layer_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    if own is None:
        return  # the package root and its entry points sit on top of everything
    for imported in package_imports(path):
        target = layer_of(imported)
        if imported.startswith("omniflash_prefect") and own == "emulator":
            assert target == "emulator", f"the emulator imports {imported}"
        elif target is not None and own != "emulator":
            assert target != "emulator" or own == "cli", f"{path.name} imports the emulator"
            if target != "emulator":
                assert LAYERS.index(target) <= LAYERS.index(own), f"{path.name} imports {imported}"


@pytest.mark.parametrize(
    "path", [*sorted((PACKAGE / "core").glob("*.py")), PACKAGE / "errors.py"], ids=lambda p: p.name
)
def test_core_modules_import_no_io_module_themselves(path: Path) -> None:
    for imported in package_imports(path):
        top = imported.split(".")[0]
        assert imported not in IO_MODULES, imported
        assert top not in IO_MODULES, imported
        assert top not in NETWORK_AND_ORCHESTRATION, imported


def test_the_core_imports_with_prefect_and_network_code_blocked() -> None:
    """Import every core module in a fresh interpreter in which importing Prefect, httpx, asyncio
    or ssl raises. The package root (which does import Prefect) is skipped by registering a bare
    package object, so only the core's own import graph is exercised."""
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys, types
        BLOCKED = {NETWORK_AND_ORCHESTRATION!r}
        already = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not already, already

        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"the core imported {{name}}")
                return None

        sys.meta_path.insert(0, Blocker())
        root = types.ModuleType("omniflash_prefect")
        root.__path__ = [{str(PACKAGE)!r}]
        sys.modules["omniflash_prefect"] = root
        for name in {sorted(p.stem for p in (PACKAGE / "core").glob("*.py"))!r}:
            suffix = "" if name == "__init__" else "." + name
            importlib.import_module("omniflash_prefect.core" + suffix)
        print("imported", len(sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported")
