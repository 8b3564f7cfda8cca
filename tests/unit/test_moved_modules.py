"""The 0.1 module paths still import, for one release, and give today's objects."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import omniflash_prefect
from omniflash_prefect._moved import MOVED_MODULES

pytestmark = pytest.mark.filterwarnings("ignore:omniflash_prefect.*moved to:DeprecationWarning")


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_every_old_path_imports_and_offers_what_its_new_homes_hold(old: str) -> None:
    module = importlib.import_module(f"omniflash_prefect.{old}")
    for home in MOVED_MODULES[old]:
        new = importlib.import_module(f"omniflash_prefect.{home}")
        public = [name for name in vars(new) if not name.startswith("_")]
        assert public, home
        assert all(getattr(module, name) is getattr(new, name) for name in public[:50]), home


@pytest.mark.parametrize(
    ("old_path", "name"),
    [
        ("omniflash_prefect.archive", "ArchivedVideo"),
        ("omniflash_prefect.models", "VideoTask"),
        ("omniflash_prefect.models", "VideoRequest"),
        ("omniflash_prefect.batch", "BatchReport"),
        ("omniflash_prefect.batch", "BatchItem"),
        ("omniflash_prefect.tasks", "submit_video"),
        ("omniflash_prefect.flows", "generate_video"),
        ("omniflash_prefect.batch_flow", "generate_video_batch"),
    ],
)
def test_stored_and_documented_names_resolve_at_their_old_paths(old_path: str, name: str) -> None:
    assert getattr(importlib.import_module(old_path), name) is getattr(omniflash_prefect, name)


def test_an_unknown_name_at_an_old_path_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = importlib.import_module("omniflash_prefect.models").no_such_thing


def test_importing_an_old_path_warns_that_it_goes() -> None:
    """In a fresh interpreter (this one may have imported it already), with warnings as errors."""
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", "import omniflash_prefect.batch"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "omniflash_prefect.batch moved to omniflash_prefect.batches.report" in done.stderr
    assert "goes in 0.3" in done.stderr
