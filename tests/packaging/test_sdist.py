"""What the sdist and the wheel hold: the package whole (``py.typed`` and its data files
included), the README and the project's own documents; no environment, cache, archived video or
build output of a working checkout."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from tests.packaging.conftest import REPO, Dist

#: What a working checkout holds that no distribution may: environments, caches, `make demo`'s
#: videos, earlier builds.
JUNK_DIRS = {
    ".venv",
    ".venv-lowest",
    ".tools",
    "videos",
    "dist",
    ".git",
    ".hypothesis",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "__pycache__",
}


def package_files() -> set[str]:
    """Every file of the package in the checkout, as a path relative to the repository."""
    root = REPO / "omniflash_prefect"
    return {
        path.relative_to(REPO).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def sdist_members(sdist: Path) -> set[str]:
    """The sdist's files, without the ``<name>-<version>/`` folder they all sit in."""
    with tarfile.open(sdist) as archive:
        names = [member.name for member in archive.getmembers() if member.isfile()]
    top = {name.split("/", 1)[0] for name in names}
    assert top == {sdist.name.removesuffix(".tar.gz")}, top
    return {name.split("/", 1)[1] for name in names}


def junk_in(names: set[str]) -> list[str]:
    return sorted(
        name
        for name in names
        if JUNK_DIRS.intersection(Path(name).parts[:-1]) or name.endswith((".pyc", ".mp4.part"))
    )


def test_the_sdist_holds_the_package_and_its_documents(dist: Dist) -> None:
    members = sdist_members(dist.sdist)
    missing = (package_files() | {"pyproject.toml", "README.md", "PKG-INFO"}) - members
    assert not missing, missing
    assert "omniflash_prefect/py.typed" in members
    # A licence file is shipped whenever the repository has one.
    licences = {path.name for path in REPO.glob("LICEN[CS]E*")}
    assert licences <= members, licences - members


def test_the_sdist_holds_no_environment_cache_or_video(dist: Dist) -> None:
    members = sdist_members(dist.sdist)
    assert not junk_in(members), junk_in(members)
    videos = [name for name in members if name.endswith(".mp4")]
    # The one MP4 is the emulator's sample clip, package data the wheel needs too.
    assert videos == ["omniflash_prefect/emulator/sample.mp4"], videos
    assert not any(name.startswith(".ci/") for name in members)


def test_the_wheel_holds_the_package_and_nothing_else(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
        entry_points = wheel.read(metadata.replace("METADATA", "entry_points.txt")).decode()
    assert package_files() <= names, package_files() - names
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"omniflash_prefect", metadata.split("/", 1)[0]}, top
    assert "omniflash = omniflash_prefect.cli:main" in entry_points
    assert not junk_in(names), junk_in(names)
