"""What ``omniflash generate``, ``fetch`` and ``release`` do, behind their options.

The command line parses options and prints; this module does the work behind it, and never
raises for a failed run (the outcome carries the error, its status and its exit code):

* :func:`check_generate_options` refuses what cannot work before any flow run is created or
  anything is sent: a request the API would refuse, conflicting options, missing image files,
  no credentials;
* :func:`generate` is ``omniflash generate``: checks, image uploads, then the ``generate_video``
  run (:func:`omniflash_prefect.cli.video_runs.run_generation`);
* :func:`fetch` is ``omniflash fetch``: the same for a task id already paid for (``fetch_video``);
* :func:`release` is ``omniflash release``: resolves a submission key left "outcome unknown".
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from omniflash_prefect.cli.exit_codes import EXIT_FAILED, EXIT_OK, classify
from omniflash_prefect.cli.flow_runs import RunStarted, run_flow_watched, server_for_command
from omniflash_prefect.cli.progress import ProgressCallback
from omniflash_prefect.cli.usage import (
    CommandUsageError,
    check_credentials_block,
    check_credentials_configured,
    check_one_archive_target,
    check_storage_block,
)
from omniflash_prefect.cli.video_runs import GenerationOutcome, run_generation
from omniflash_prefect.core.models import validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.video.credentials import load_client
from omniflash_prefect.video.flows import afetch_video, asweep_paid_videos
from omniflash_prefect.video.salvage import SweepReport
from omniflash_prefect.video.setup import load_storage
from omniflash_prefect.video.submissions import Released, release_submission


@dataclass(frozen=True)
class GenerateOptions:
    """What ``omniflash generate`` was asked for."""

    prompt: str
    duration: int = 6
    resolution: str = "720p"
    aspect_ratio: str = "16:9"
    image_urls: tuple[str, ...] = ()
    image_files: tuple[Path, ...] = ()
    archive_dir: Path | None = None
    storage_block: str | None = None
    credentials_block: str | None = None
    idempotency_key: str | None = None
    strict_media: bool = False
    spend_limit: str | None = None

    def request(self, image_urls: Sequence[str]) -> VideoRequest:
        """The video request with these image URLs; raises if the API would refuse it."""
        return VideoRequest(
            prompt=self.prompt,
            duration=self.duration,
            resolution=self.resolution,
            aspect_ratio=self.aspect_ratio,
            image_urls=tuple(image_urls),
        )

    def flow_parameters(self, request: VideoRequest) -> dict[str, Any]:
        """The parameters of the ``generate_video`` run for a checked request."""
        return {
            **request.flow_parameters(),
            "credentials_block": self.credentials_block,
            "storage_block": self.storage_block,
            "archive_dir": str(self.archive_dir) if self.archive_dir else None,
            "idempotency_key": self.idempotency_key,
            "strict_media": self.strict_media,
            "spend_limit": self.spend_limit,
        }


def check_generate_options(options: GenerateOptions) -> VideoRequest:
    """Everything checkable without a network call; raises before anything is created or sent.

    Local images count as images (by placeholder URLs) so an unsupported number of images is
    refused before any upload.
    """
    placeholders = [f"https://upload.invalid/{i}" for i in range(len(options.image_files))]
    request = options.request([*options.image_urls, *placeholders])
    check_one_archive_target(
        options.archive_dir,
        options.storage_block,
        why=": the video goes either to a local directory or to a storage block",
    )
    for path in options.image_files:
        if not path.is_file():
            raise CommandUsageError(f"--image-file {path}: not a readable file")
    check_credentials_configured(options.credentials_block)
    return request


async def upload_images(options: GenerateOptions) -> tuple[str, ...]:
    """Check the named blocks exist, then upload the local images; returns their URLs."""
    if options.storage_block:
        await check_storage_block(options.storage_block)
    # A missing credentials block raises CredentialsBlockNotFoundError, as it does in Python.
    async with await load_client(options.credentials_block) as client:
        return tuple([await client.upload_image(path) for path in options.image_files])


async def generate(
    options: GenerateOptions,
    *,
    on_progress: ProgressCallback | None = None,
    watch_interval: float = 0.5,
    on_started: RunStarted | None = None,
) -> GenerationOutcome:
    """``omniflash generate``: check, upload local images, run the flow; never raises."""
    with contextlib.ExitStack() as server:
        try:
            check_generate_options(options)
            server.enter_context(server_for_command())
            uploaded = await upload_images(options)
            request = options.request([*options.image_urls, *uploaded])
        except Exception as exc:
            return GenerationOutcome(options.prompt, error=exc)
        try:
            return await run_generation(
                options.flow_parameters(request),
                on_progress=on_progress,
                watch_interval=watch_interval,
                on_started=on_started,
            )
        except Exception as exc:
            return GenerationOutcome(options.prompt, error=exc)


@dataclass(frozen=True)
class FetchOptions:
    """What ``omniflash fetch`` was asked for."""

    task_id: str
    archive_dir: Path | None = None
    storage_block: str | None = None
    credentials_block: str | None = None
    archive_prefix: str = "omniflash"
    spend_limit: str | None = None

    def flow_parameters(self) -> dict[str, Any]:
        """The parameters of the ``fetch_video`` run."""
        return {
            "task_id": self.task_id,
            "spend_limit": self.spend_limit,
            "credentials_block": self.credentials_block,
            "storage_block": self.storage_block,
            "archive_dir": str(self.archive_dir) if self.archive_dir else None,
            "archive_prefix": self.archive_prefix,
        }


async def fetch(
    options: FetchOptions,
    *,
    on_progress: ProgressCallback | None = None,
    watch_interval: float = 0.5,
) -> GenerationOutcome:
    """``omniflash fetch``: poll and archive a task already paid for; never submits, never
    raises."""
    with contextlib.ExitStack() as server:
        try:
            validate_task_id(options.task_id)
            check_one_archive_target(options.archive_dir, options.storage_block)
            check_credentials_configured(options.credentials_block)
            server.enter_context(server_for_command())
            await check_credentials_block(options.credentials_block)
            if options.storage_block:
                await check_storage_block(options.storage_block)
        except Exception as exc:
            return GenerationOutcome(None, error=exc, task_id=options.task_id)
        try:
            return await run_generation(
                options.flow_parameters(),
                on_progress=on_progress,
                watch_interval=watch_interval,
                flow=afetch_video,
            )
        except Exception as exc:
            return GenerationOutcome(None, error=exc, task_id=options.task_id)


async def release(
    submission_key: str, *, task_id: str | None = None, result_storage_block: str | None = None
) -> Released:
    """``omniflash release``: resolve a submission key by hand (see
    :func:`omniflash_prefect.video.submissions.release_submission`)."""
    with server_for_command():
        storage = await load_storage(result_storage_block) if result_storage_block else None
        return await release_submission(submission_key, storage, task_id=task_id)


@dataclass(frozen=True)
class SweepOutcome:
    """How ``omniflash sweep`` ended: its report, or the error that stopped it."""

    report: SweepReport | None = None
    error: BaseException | None = None
    flow_run_id: UUID | None = None

    @property
    def exit_code(self) -> int:
        """0 nothing lost nor of unknown outcome; 4 some paid video expired or a submission's
        outcome is unknown (see the report); else the stopping error's code."""
        if self.report is not None:
            return EXIT_OK if self.report.ok else EXIT_FAILED
        return classify(self.error or RuntimeError("no report"))[1]


async def sweep(parameters: dict[str, Any]) -> SweepOutcome:
    """``omniflash sweep``: the ``sweep_paid_videos`` flow in this process; never raises."""
    with server_for_command():
        try:
            state, flow_run_id = await run_flow_watched(asweep_paid_videos, parameters)
            report: object = await state.aresult(raise_on_failure=False)
        except Exception as exc:
            return SweepOutcome(error=exc)
    if isinstance(report, SweepReport):
        return SweepOutcome(report=report, flow_run_id=flow_run_id)
    error = report if isinstance(report, BaseException) else RuntimeError(state.message)
    return SweepOutcome(error=error, flow_run_id=flow_run_id)
