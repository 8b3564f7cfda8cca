"""``make test``'s first step: the Chromium the UI tests drive, installed when it can be, else
one message and nothing run.

``make browser`` runs with a PATH holding only stand-ins: ``id`` says who we are, ``apt-get``
records what it was asked (and can fail), ``chromium`` is there or not. So every branch runs
here without root, a package index or a browser, and nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
#: What make's recipe calls besides the stand-ins.
TOOLS = ("mktemp", "cat", "rm")


def stand_in(path: Path, script: str) -> None:
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def make_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """This environment with PATH only ``bin_dir``, and nothing of an outer make's (its
    MAKEFLAGS would carry e.g. BROWSER_TESTS) or of a Chromium the caller configured."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "OMNIFLASH_CHROMIUM", "UV"}
    }
    env["PATH"] = str(bin_dir)
    env.update(extra)
    return env


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH with a non-root ``id``, an ``apt-get`` that logs its calls and no ``chromium``."""
    made = tmp_path / "bin"
    made.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (made / tool).symlink_to(found)
    stand_in(made / "id", 'echo "${FAKE_UID:-1000}"')
    log = tmp_path / "apt-get.log"
    stand_in(
        made / "apt-get",
        f'echo "$DEBIAN_FRONTEND $*" >>{log}\n'
        'if [ -n "$FAKE_APT_ERROR" ]; then echo "$FAKE_APT_ERROR"; exit 100; fi\n'
        'echo "Setting up chromium ..."',
    )
    return made


def make(target: str, bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert MAKE, "make"
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(REPO), target, *args],
        env=make_env(bin_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def apt_calls(bin_dir: Path) -> list[str]:
    log = bin_dir.parent / "apt-get.log"
    return log.read_text().splitlines() if log.exists() else []


def test_without_chromium_a_user_gets_one_message_and_nothing_runs(bin_dir: Path) -> None:
    done = make("test", bin_dir)
    assert done.returncode != 0
    assert done.stdout == ""  # no recipe of lint, typecheck or pytest was even echoed
    assert done.stderr.count("there is no `chromium` on PATH") == 1, done.stderr
    for advice in (
        "sudo apt-get install chromium",
        "OMNIFLASH_CHROMIUM=/path/to/chromium",
        "make test BROWSER_TESTS=no",
    ):
        assert advice in done.stderr
    assert apt_calls(bin_dir) == []


def test_a_chromium_that_is_not_a_program_is_named(bin_dir: Path, tmp_path: Path) -> None:
    not_a_program = tmp_path / "chromium.txt"
    not_a_program.write_text("")
    done = make("browser", bin_dir, OMNIFLASH_CHROMIUM=str(not_a_program))
    assert done.returncode != 0
    assert f"OMNIFLASH_CHROMIUM={not_a_program} is not an executable file" in done.stderr
    assert "make test BROWSER_TESTS=no" in done.stderr


def test_root_gets_chromium_installed_quietly(bin_dir: Path) -> None:
    done = make("browser", bin_dir, FAKE_UID="0")
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert apt_calls(bin_dir) == ["noninteractive update", "noninteractive install -y chromium"]


def test_a_failed_install_shows_what_apt_get_said(bin_dir: Path) -> None:
    done = make("browser", bin_dir, FAKE_UID="0", FAKE_APT_ERROR="E: Unable to locate chromium")
    assert done.returncode != 0
    assert "E: Unable to locate chromium" in done.stderr


@pytest.mark.parametrize("uid", ["0", "1000"])
def test_a_chromium_on_path_or_configured_is_used_as_it_is(
    bin_dir: Path, tmp_path: Path, uid: str
) -> None:
    elsewhere = tmp_path / "chromium-elsewhere"
    stand_in(elsewhere, "exit 0")
    assert make("browser", bin_dir, FAKE_UID=uid, OMNIFLASH_CHROMIUM=str(elsewhere)).returncode == 0
    stand_in(bin_dir / "chromium", "exit 0")
    done = make("browser", bin_dir, FAKE_UID=uid)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    assert apt_calls(bin_dir) == []


def test_browser_tests_no_needs_no_chromium(bin_dir: Path) -> None:
    done = make("browser", bin_dir, "BROWSER_TESTS=no")
    assert done.returncode == 0, done.stderr
    assert apt_calls(bin_dir) == []
