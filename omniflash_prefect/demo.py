"""The end-to-end demo: one video generated, polled and archived, for free against the emulator.

With no API key configured it starts the emulator on a free loopback port and runs the real client
against it over HTTP, with fast poll settings. With ``OMNIFLASH_API_KEY`` set it runs the same
steps against the live API (one 4-second 720p video, the cheapest there is), unless told to use
the emulator anyway.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from omniflash_prefect.client import OmniFlashClient, TaskCallback
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.models import DownloadedVideo, VideoRequest, VideoTask
from omniflash_prefect.polling import PollSchedule
from omniflash_prefect.settings import OmniFlashSettings

DEMO_PROMPT = (
    "A paper boat drifts across a sunlit pond, camera slowly tracking it at water level, "
    "soft morning light, gentle ripples, birdsong"
)
EMULATOR_SCHEDULE = PollSchedule(
    first_delay_seconds=0.5, min_interval_seconds=0.25, max_interval_seconds=0.5, timeout_seconds=60
)


@dataclass(frozen=True)
class DemoResult:
    """What the demo made, and where it ran."""

    task: VideoTask
    video: DownloadedVideo
    base_url: str
    used_emulator: bool


@contextlib.contextmanager
def _demo_client(
    use_emulator: bool, settings: OmniFlashSettings, job_seconds: float
) -> Iterator[OmniFlashClient]:
    """A client for the live API, or for an emulator that lives as long as the block."""
    if not use_emulator:
        yield OmniFlashClient.from_settings(settings)
        return
    with EmulatorServer(EmulatorConfig(job_seconds=job_seconds)) as emulator:
        yield OmniFlashClient(
            emulator.api_key, base_url=emulator.base_url, poll_schedule=EMULATOR_SCHEDULE
        )


def archive_path(archive_dir: Path, task_id: str, today: dt.date | None = None) -> Path:
    """``<archive_dir>/<YYYY-MM-DD>/<task_id>.mp4``: the archive's layout."""
    day = (today or dt.datetime.now(dt.UTC).date()).isoformat()
    return archive_dir / day / f"{task_id}.mp4"


async def run_demo(
    *,
    archive_dir: Path,
    use_emulator: bool | None = None,
    job_seconds: float = 3.0,
    on_update: TaskCallback | None = None,
    settings: OmniFlashSettings | None = None,
) -> DemoResult:
    """Submit one video, wait for it and download it under ``archive_dir``.

    ``use_emulator`` None means: the emulator unless an API key is configured.
    """
    settings = settings or OmniFlashSettings()
    if use_emulator is None:
        use_emulator = settings.api_key is None
    request = VideoRequest(prompt=DEMO_PROMPT, duration=4, resolution="720p")
    with _demo_client(use_emulator, settings, job_seconds) as client:
        async with client:
            task_id = await client.submit(request)
            task = await client.wait(task_id, on_update=on_update)
            if task.video_url is None:
                raise RuntimeError(f"task {task_id} completed without a video URL")
            video = await client.download(task.video_url, archive_path(archive_dir, task_id))
            return DemoResult(
                task=task, video=video, base_url=client.base_url, used_emulator=use_emulator
            )
