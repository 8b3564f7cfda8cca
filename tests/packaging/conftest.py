"""The sdist and the wheel of this checkout, built once per worker without the network.

``uv build`` runs without build isolation, on the hatchling that ``uv sync`` put in the project's
environment (the dev group), so no build backend is fetched; as in a release, the wheel is built
from the sdist. ``make dist`` builds the same two files, isolated, and runs ``twine check``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def uv() -> str:
    """The uv that runs this suite (``uv run`` names itself in ``UV``), else one on PATH or the
    one ``make`` bootstraps into ``.tools/``."""
    found = os.environ.get("UV") or shutil.which("uv")
    if found:
        return found
    bootstrapped = REPO / ".tools" / "bin" / "uv"
    if bootstrapped.is_file():
        return str(bootstrapped)
    pytest.fail("No uv: run the suite with `make test` or `uv run pytest`.", pytrace=False)


def run(
    command: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a failure shows what it printed."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    run(
        [
            uv(),
            "build",
            "--offline",
            "--no-build-isolation",
            "--python",
            sys.executable,
            "--out-dir",
            str(out),
            str(REPO),
        ],
        cwd=REPO,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dist(sdist=sdist, wheel=wheel)
