"""What ``omniflash demo`` does: one real ``generate_video`` run, free when no key is set.

The demo shows the whole path (Prefect run, submit, poll, download, archive) on a fresh machine:
without an API key it starts a throwaway emulator on a free loopback port, saves a credentials
block pointing at it and polls at the emulator's pace; with a key it makes one 4-second 720p
video on the live API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from omniflash_prefect.cli.flow_runs import process_environment, server_for_command
from omniflash_prefect.cli.progress import ProgressCallback
from omniflash_prefect.cli.usage import NO_CREDENTIALS_MESSAGE, CommandUsageError
from omniflash_prefect.cli.video_runs import GenerationOutcome, run_generation
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.blocks import OmniFlashCredentials

DEMO_PROMPT = (
    "A paper boat drifts across a sunlit pond, camera slowly tracking it at water level, "
    "soft morning light, gentle ripples, birdsong"
)
#: The credentials block the demo saves (overwriting it) to point the flow at its emulator.
DEMO_BLOCK_NAME = "omniflash-emulator"
#: Poll pacing for the emulator, whose jobs take seconds rather than minutes.
DEMO_POLL_SETTINGS: Final[Mapping[str, str]] = {
    "OMNIFLASH_FIRST_POLL_DELAY_SECONDS": "0.5",
    "OMNIFLASH_POLL_MIN_SECONDS": "0.25",
    "OMNIFLASH_POLL_MAX_SECONDS": "0.5",
    "OMNIFLASH_POLL_TIMEOUT_SECONDS": "120",
}


@dataclass(frozen=True)
class DemoResult:
    """What the demo made, and where it ran."""

    outcome: GenerationOutcome
    base_url: str  # the emulator's when it ran there
    used_emulator: bool


async def run_demo(
    *,
    archive_dir: Path | None = None,
    use_emulator: bool | None = None,
    job_seconds: float = 3.0,
    on_progress: ProgressCallback | None = None,
    settings: OmniFlashSettings | None = None,
    watch_interval: float = 0.5,
) -> DemoResult:
    """One ``generate_video`` run end to end; never raises.

    ``use_emulator`` None means: the emulator unless an API key is configured. The emulator runs
    on a free loopback port for the duration, with a credentials block pointing at it and fast
    poll settings for this process.
    """
    settings = settings or OmniFlashSettings()
    if use_emulator is None:
        use_emulator = settings.api_key is None
    parameters: dict[str, Any] = {
        "prompt": DEMO_PROMPT,
        "duration": 4,
        "resolution": "720p",
        "archive_dir": str(archive_dir) if archive_dir else None,
    }
    try:
        if not use_emulator and settings.api_key is None:
            raise CommandUsageError(NO_CREDENTIALS_MESSAGE)
        with server_for_command():
            if not use_emulator:
                outcome = await run_generation(
                    parameters, on_progress=on_progress, watch_interval=watch_interval
                )
                return DemoResult(outcome, settings.base_url, used_emulator=False)
            with (
                EmulatorServer(EmulatorConfig(job_seconds=job_seconds)) as emulator,
                process_environment(DEMO_POLL_SETTINGS),
            ):
                credentials = OmniFlashCredentials(
                    api_key=emulator.api_key, base_url=emulator.base_url
                )
                await credentials.asave(DEMO_BLOCK_NAME, overwrite=True)
                outcome = await run_generation(
                    {**parameters, "credentials_block": DEMO_BLOCK_NAME},
                    on_progress=on_progress,
                    watch_interval=watch_interval,
                )
                return DemoResult(outcome, emulator.base_url, used_emulator=True)
    except Exception as exc:
        failed = GenerationOutcome(DEMO_PROMPT, error=exc)
        return DemoResult(failed, settings.base_url, used_emulator=use_emulator)
