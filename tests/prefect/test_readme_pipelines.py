"""The README's pipelines, as written there: the sync one (``.map`` and a direct subflow call from
a sync flow), the async one, and the catalogue (``generate_video_task.map``), each against the
emulator."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.emulator import EmulatorServer
from tests.support.readme import readme_section

PROMPTS = ["A paper boat sets sail", "The boat reaches the far shore"]


@pytest.fixture
def readme_block(emulator: EmulatorServer) -> str:
    """The README's credentials block name, ``omniflash``, pointing at this test's emulator."""
    OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).save(
        "omniflash", overwrite=True
    )
    return "omniflash"


def pipeline(marker: str) -> dict[str, Any]:
    """The names the README's snippet defines (its ``__main__`` part is not run)."""
    code = readme_section("# Pipelines, sync and async", "docs/how-to/pipelines.md").snippet(marker)
    namespace: dict[str, Any] = {"__name__": "readme_pipeline"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def assert_archived(
    locations: list[str], emulator: EmulatorServer, count: int, prefix: str = "storyboard"
) -> None:
    assert len(locations) == count
    assert emulator.state.submission_count == count
    assert {Path(location).stem for location in locations} == set(
        emulator.state.snapshot()["tasks"]
    )
    for location in locations:
        video = Path(location)
        assert video.parent.parent.name == prefix
        assert hashlib.sha256(video.read_bytes()).hexdigest() == emulator.state.video_sha256(
            video.stem
        )


def test_the_sync_pipeline_returns_its_videos(
    emulator: EmulatorServer, readme_block: str, fast_settings: Path
) -> None:
    """Called from sync code, the sync pipeline maps the three tasks over two prompts and runs
    generate_video as a subflow: three videos, three submissions, every call a result."""
    locations = pipeline("def storyboard_sync(")["storyboard_sync"](PROMPTS)
    assert_archived(locations, emulator, 3)
    assert all(Path(location).is_relative_to(fast_settings) for location in locations)


async def test_the_async_pipeline_returns_its_videos(
    emulator: EmulatorServer, readme_block: str
) -> None:
    """Awaited, the async pipeline gathers the a-prefixed tasks over two prompts."""
    locations = await pipeline("async def storyboard(")["storyboard"](PROMPTS)
    assert_archived(locations, emulator, 2)


def test_the_catalogue_maps_one_task_run_per_video(
    emulator: EmulatorServer, readme_block: str
) -> None:
    """The sync flow that maps ``generate_video_task`` over prompts: one video per prompt, even
    for two identical prompts (each call its own video), every one archived."""
    prompts = [*PROMPTS, PROMPTS[0]]
    locations = pipeline("def catalogue(")["catalogue"](prompts)
    assert_archived(locations, emulator, 3, prefix="catalogue")
