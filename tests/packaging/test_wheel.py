"""The wheel as a user gets it: installed into a fresh virtual environment without the network,
then ``omniflash demo --emulator`` run from there, outside the checkout.

The wheel's dependencies are the runtime ones ``uv.lock`` pins, from uv's cache (which the
project's own ``uv sync`` filled), so the install is offline and the same on every machine; ``uv
pip check`` then says they are what the wheel requires. The
demo runs with a temporary HOME, PREFECT_HOME and archive folder: it starts a throwaway Prefect
server and emulator on loopback and touches nothing of the user's.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from tests.packaging.conftest import REPO, Dist, run, uv
from tests.support.children import clean_env

#: How long the demo may take on a loaded machine: a Prefect server's start is most of it.
DEMO_TIMEOUT_SECONDS = 300


def install_offline(wheel: Path, venv: Path) -> Path:
    """A new virtual environment at ``venv`` holding the wheel and the runtime dependencies
    ``uv.lock`` pins, all from uv's cache; its Python."""
    env = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    # The locked runtime dependencies (no dev group, not the project) into the new environment.
    run(
        [
            uv(),
            "sync",
            "--frozen",
            "--offline",
            "--quiet",
            "--no-dev",
            "--no-install-project",
            "--python",
            sys.executable,
        ],
        cwd=REPO,
        env={**env, "UV_PROJECT_ENVIRONMENT": str(venv)},
    )
    python = venv / "bin" / "python"
    install = [uv(), "pip", "install", "--offline", "--quiet", "--no-deps"]
    run([*install, "--python", str(python), str(wheel)], cwd=venv.parent, env=env)
    # What the wheel requires is what the lock installed.
    run([uv(), "pip", "check", "--python", str(python)], cwd=venv.parent, env=env)
    return python


def test_the_installed_wheel_runs_the_demo(dist: Dist, tmp_path: Path) -> None:
    python = install_offline(dist.wheel, tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"  # not the checkout: the package must come from the venv
    elsewhere.mkdir()
    where = run(
        [str(python), "-c", "import omniflash_prefect; print(omniflash_prefect.__file__)"],
        cwd=elsewhere,
    ).stdout.strip()
    package = Path(where).parent
    assert package.is_relative_to(tmp_path / "venv"), where
    assert (package / "py.typed").is_file()

    home = tmp_path / "home"
    archive = tmp_path / "videos"
    env = clean_env(
        tmp_path / "prefect-home",
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        OMNIFLASH_ARCHIVE_DIR=str(archive),
    )
    for name in ("VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    demo = run(
        [str(python.parent / "omniflash"), "demo", "--emulator"],
        cwd=elsewhere,
        env=env,
        timeout=DEMO_TIMEOUT_SECONDS,
    )
    match = re.search(r"video:\s+(\S+)", demo.stdout)
    assert match, demo.stdout
    video = Path(match.group(1))
    video = video if video.is_absolute() else elsewhere / video
    assert video.is_relative_to(archive), video
    assert video.suffix == ".mp4"
    head = video.read_bytes()[:12]
    assert head[4:8] == b"ftyp", head  # an MP4's first box
