"""What the ``omniflash generate`` and ``omniflash demo`` commands do, behind their options.

The command line parses options and prints; this module does the work behind it:

* :func:`check_generate_options` refuses what cannot work before any flow run is created or
  anything is sent: a request the API would refuse, conflicting options, missing image files,
  no credentials;
* :func:`run_generation` runs the flow in this process on a flow run created up front, follows
  that very run through the Prefect API while it runs (:func:`progress_from_artifacts` reads the
  progress artifact the run itself updates), and turns its final state into a
  :class:`GenerationOutcome` carrying the original exception, a status and an exit code;
* :func:`generate` is ``omniflash generate``: checks, image uploads, then the run;
* :func:`fetch` is ``omniflash fetch``: the same for a task id already paid for (``fetch_video``);
* :func:`release` is ``omniflash release``: resolves a submission key left "outcome unknown";
* :func:`run_demo` is ``omniflash demo``: the same flow against a throwaway emulator when no API
  key is configured (or the live API, one 4-second 720p video, when one is).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import Artifact, State
from prefect.context import TagsContext
from prefect.flow_engine import run_flow_async
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)
from prefect.states import Pending
from prefect.utilities.urls import url_for
from pydantic import ValidationError

from omniflash_prefect.core.errors import (
    AuthenticationError,
    GenerationError,
    InvalidRequestError,
    InvalidTaskIdError,
    InvalidVideoRequestError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitedError,
    UsageError,
)
from omniflash_prefect.core.models import validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.blocks import OmniFlashCredentials
from omniflash_prefect.video.flows import (
    afetch_video,
    agenerate_video,
    load_result_storage,
    load_storage,
)
from omniflash_prefect.video.observability import artifact_key
from omniflash_prefect.video.submissions import Released, release_submission
from omniflash_prefect.video.tasks import load_client

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
#: Prefect's temporary local server takes ~10 s to start (more on a busy machine); its own
#: default patience is 20 s.
TEMPORARY_SERVER_STARTUP_SECONDS = 120

EXIT_ARCHIVED: Final = 0
EXIT_ERROR: Final = 1
EXIT_INVALID: Final = 2
EXIT_REFUSED: Final = 3
EXIT_FAILED: Final = 4

Status = Literal["archived", "invalid", "refused", "failed", "error"]

NO_CREDENTIALS_MESSAGE = (
    "no API key: set OMNIFLASH_API_KEY, or save an OmniFlashCredentials block and pass its name "
    "with --credentials-block; or try it all for free on the built-in emulator with "
    "'omniflash demo'. Nothing was sent."
)

# The provider's clear "no": nothing was accepted, nothing is paid. A 429 that outlived the
# client's retries is one too (a submit is retried on 429 only because it certainly was refused);
# a 404 is the provider knowing no such task.
_REFUSALS = (
    AuthenticationError,
    PaymentRequiredError,
    InvalidRequestError,
    RateLimitedError,
    NotFoundError,
)
_PROGRESS_KEY_PREFIX = artifact_key("progress", "") + "-"
_VIDEO_KEY_PREFIX = artifact_key("video", "") + "-"
_TASK_ID_IN_DESCRIPTION = re.compile(r"\btask (\S+)$")


class CommandUsageError(UsageError):
    """Options or settings that make the run impossible; nothing was sent, no run was created."""


def classify(error: BaseException) -> tuple[Status, int]:
    """The status word and exit code of a failure (see ``omniflash generate --help``)."""
    if isinstance(error, InvalidVideoRequestError | InvalidTaskIdError | CommandUsageError):
        return "invalid", EXIT_INVALID
    if isinstance(error, _REFUSALS):
        return "refused", EXIT_REFUSED
    if isinstance(error, GenerationError):
        return "failed", EXIT_FAILED
    return "error", EXIT_ERROR


@dataclass(frozen=True)
class RunProgress:
    """How far a flow run has got, as read back from the Prefect API."""

    stage: str
    percent: float
    task_id: str | None = None


ProgressCallback = Callable[[RunProgress], None]


def progress_from_artifacts(artifacts: Sequence[Artifact]) -> RunProgress:
    """The stage of a ``generate_video`` run from the artifacts it has written so far.

    ``poll_video`` creates a progress artifact (described "... of task <id>") when it starts and
    moves it with the API's progress, up to 100 when the video is ready; the run adds a link
    artifact once the video is archived.
    """
    progress = [a for a in artifacts if (a.key or "").startswith(_PROGRESS_KEY_PREFIX)]
    if any((a.key or "").startswith(_VIDEO_KEY_PREFIX) for a in artifacts):
        return RunProgress("archived", 100.0, _task_id_of(progress))
    if not progress:
        return RunProgress("submitting", 0.0)
    values = [float(a.data) for a in progress if isinstance(a.data, int | float)]
    percent = min(max(values, default=0.0), 100.0)
    stage = "downloading" if percent >= 100 else "generating"
    return RunProgress(stage, percent, _task_id_of(progress))


def _task_id_of(progress: Sequence[Artifact]) -> str | None:
    for artifact in progress:
        match = _TASK_ID_IN_DESCRIPTION.search(artifact.description or "")
        if match:
            return match.group(1)
    return None


async def read_run_progress(client: PrefectClient, flow_run_id: UUID) -> RunProgress:
    """One read of a flow run's artifacts (those of its task runs included)."""
    artifacts = await client.read_artifacts(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )
    return progress_from_artifacts(artifacts)


@dataclass(frozen=True)
class GenerationOutcome:
    """How one ``generate_video`` (or ``fetch_video``) run ended: the archived video, or the
    error that stopped it."""

    prompt: str | None
    archived: ArchivedVideo | None = None
    error: BaseException | None = None
    task_id: str | None = None
    flow_run_id: UUID | None = None

    @property
    def status(self) -> Status:
        """``archived``, or the failure's status word."""
        return "archived" if self.error is None else classify(self.error)[0]

    @property
    def exit_code(self) -> int:
        """0 when archived, else the failure's exit code."""
        return EXIT_ARCHIVED if self.error is None else classify(self.error)[1]

    def to_json(self) -> dict[str, Any]:
        """The one JSON object ``omniflash generate --json`` prints."""
        body: dict[str, Any] = {
            "status": self.status,
            "task_id": self.task_id,
            "prompt": self.prompt,
            "flow_run_id": str(self.flow_run_id) if self.flow_run_id else None,
        }
        if self.archived is not None:
            body.update(
                task_id=self.archived.task_id,
                cost=self.archived.cost,
                location=self.archived.location,
                sha256=self.archived.sha256,
                size_bytes=self.archived.size_bytes,
            )
        if self.error is not None:
            body.update(error=str(self.error), error_type=type(self.error).__name__)
        return body


@contextlib.contextmanager
def process_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables (read by ``OmniFlashSettings``) for a block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def patient_temporary_server() -> Iterator[None]:
    """Without ``PREFECT_API_URL`` Prefect starts a temporary local server, and gives it 20 s;
    allow more, so a first run on a slow or busy machine does not time out. That throwaway
    server also sends no usage analytics (which only fail, noisily, on an offline machine)."""
    if PREFECT_API_URL.value():
        yield
        return
    timeout = max(
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), TEMPORARY_SERVER_STARTUP_SECONDS
    )
    with temporary_settings(
        {
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: timeout,
            PREFECT_SERVER_ANALYTICS_ENABLED: False,
        }
    ):
        yield


def flow_run_ui_url(flow_run_id: UUID) -> str | None:
    """The run's page in the Prefect UI; None when runs go to a temporary local server."""
    if not PREFECT_API_URL.value():
        return None
    return url_for("flow-run", obj_id=flow_run_id)


async def run_flow_watched(
    flow: Flow[..., Any],
    parameters: Mapping[str, Any],
    *,
    on_tick: Callable[[PrefectClient, UUID], Awaitable[None]] | None = None,
    watch_interval: float = 0.5,
) -> tuple[State[Any], UUID]:
    """Run ``flow`` in this process on a flow run created up front, and return its final state.

    Creating the run first (as the flow engine itself would) makes its id known while it runs:
    every ``watch_interval`` seconds, and once at the end, ``on_tick`` is awaited with a client and
    that id, e.g. to read back the run's progress artifacts.
    """
    arguments = dict(parameters)
    async with get_client() as client:
        flow_run = await client.create_flow_run(
            flow=flow,
            parameters=flow.serialize_parameters(arguments),
            state=Pending(),
            tags=TagsContext.get().current_tags,
        )
        run = asyncio.create_task(
            run_flow_async(flow, flow_run=flow_run, parameters=arguments, return_type="state")
        )
        try:
            while on_tick is not None:
                done, _ = await asyncio.wait({run}, timeout=watch_interval)
                if done:
                    break
                await on_tick(client, flow_run.id)
            state = await run
        finally:
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
        if on_tick is not None:
            await on_tick(client, flow_run.id)
    if not isinstance(state, State):
        raise TypeError(f"the flow engine returned {type(state).__name__}, not a state")
    return state, flow_run.id


async def run_generation(
    parameters: Mapping[str, Any],
    *,
    on_progress: ProgressCallback | None = None,
    watch_interval: float = 0.5,
    flow: Flow[..., Any] = agenerate_video,
) -> GenerationOutcome:
    """Run ``generate_video`` (or another one-video flow, e.g. ``fetch_video``) in this process
    and report how it ended; never raises for a failed run. ``on_progress`` is called with what
    the run's artifacts say while it runs."""
    last: list[RunProgress] = []

    async def follow(client: PrefectClient, flow_run_id: UUID) -> None:
        update = await _read_progress_quietly(client, flow_run_id)
        if update is not None:
            last.append(update)
            if on_progress is not None:
                on_progress(update)

    state, flow_run_id = await run_flow_watched(
        flow, parameters, on_tick=follow, watch_interval=watch_interval
    )
    prompt = parameters.get("prompt")
    outcome = await _outcome_of(
        state, prompt if isinstance(prompt, str) else None, flow_run_id, last[-1] if last else None
    )
    if outcome.task_id is None and isinstance(parameters.get("task_id"), str):
        outcome = dataclasses.replace(outcome, task_id=parameters["task_id"])
    return outcome


async def _read_progress_quietly(client: PrefectClient, flow_run_id: UUID) -> RunProgress | None:
    # Showing progress must never break the run it shows: a failed read just skips a refresh.
    try:
        return await read_run_progress(client, flow_run_id)
    except Exception:
        return None


async def _outcome_of(
    state: State[Any], prompt: str | None, flow_run_id: UUID, last: RunProgress | None
) -> GenerationOutcome:
    try:
        result: object = await state.aresult(raise_on_failure=False)
    except Exception as exc:
        result = exc
    if state.is_completed() and isinstance(result, ArchivedVideo):
        return GenerationOutcome(
            prompt, archived=result, task_id=result.task_id, flow_run_id=flow_run_id
        )
    error = (
        result
        if isinstance(result, BaseException)
        else RuntimeError(f"the flow run ended {state.name}: {state.message}")
    )
    task_id = error.task_id if isinstance(error, GenerationError) else None
    if task_id is None and last is not None:
        task_id = last.task_id
    return GenerationOutcome(prompt, error=error, task_id=task_id, flow_run_id=flow_run_id)


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
            "idempotency_key": self.idempotency_key,
        }


def check_generate_options(options: GenerateOptions) -> VideoRequest:
    """Everything checkable without a network call; raises before anything is created or sent.

    Local images count as images (by placeholder URLs) so an unsupported number of images is
    refused before any upload.
    """
    placeholders = [f"https://upload.invalid/{i}" for i in range(len(options.image_files))]
    request = options.request([*options.image_urls, *placeholders])
    if options.archive_dir is not None and options.storage_block:
        raise CommandUsageError(
            "--archive-dir and --storage-block are mutually exclusive: the video goes either to "
            "a local directory or to a storage block"
        )
    for path in options.image_files:
        if not path.is_file():
            raise CommandUsageError(f"--image-file {path}: not a readable file")
    check_credentials_configured(options.credentials_block)
    return request


def check_credentials_configured(credentials_block: str | None) -> None:
    """The ``OMNIFLASH_*`` settings are valid, and a key is given by them or by a block name."""
    try:
        settings = OmniFlashSettings()
    except ValidationError as exc:
        raise CommandUsageError(f"invalid OMNIFLASH_* setting: {exc}") from None
    if credentials_block is None and settings.api_key is None:
        raise CommandUsageError(NO_CREDENTIALS_MESSAGE)


async def upload_images(options: GenerateOptions) -> tuple[str, ...]:
    """Check the named blocks exist, then upload the local images; returns their URLs."""
    if options.storage_block:
        await _check_storage_block(options.storage_block)
    try:
        client = await load_client(options.credentials_block)
    except (ValueError, TypeError) as exc:
        raise CommandUsageError(f"--credentials-block: {exc}") from None
    async with client:
        return tuple([await client.upload_image(path) for path in options.image_files])


async def _check_storage_block(storage_block: str) -> None:
    try:
        await load_storage(storage_block)
    except (ValueError, TypeError) as exc:
        raise CommandUsageError(f"--storage-block: {exc}") from None


async def generate(
    options: GenerateOptions,
    *,
    on_progress: ProgressCallback | None = None,
    watch_interval: float = 0.5,
) -> GenerationOutcome:
    """``omniflash generate``: check, upload local images, run the flow; never raises."""
    with patient_temporary_server():
        try:
            check_generate_options(options)
            uploaded = await upload_images(options)
            request = options.request([*options.image_urls, *uploaded])
        except Exception as exc:
            return GenerationOutcome(options.prompt, error=exc)
        archive = {"OMNIFLASH_ARCHIVE_DIR": str(options.archive_dir)} if options.archive_dir else {}
        with process_environment(archive):
            try:
                return await run_generation(
                    options.flow_parameters(request),
                    on_progress=on_progress,
                    watch_interval=watch_interval,
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

    def flow_parameters(self) -> dict[str, Any]:
        """The parameters of the ``fetch_video`` run."""
        return {
            "task_id": self.task_id,
            "credentials_block": self.credentials_block,
            "storage_block": self.storage_block,
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
    with patient_temporary_server():
        try:
            validate_task_id(options.task_id)
            if options.archive_dir is not None and options.storage_block:
                raise CommandUsageError("--archive-dir and --storage-block are mutually exclusive")
            check_credentials_configured(options.credentials_block)
            if options.storage_block:
                await _check_storage_block(options.storage_block)
        except Exception as exc:
            return GenerationOutcome(None, error=exc, task_id=options.task_id)
        archive = {"OMNIFLASH_ARCHIVE_DIR": str(options.archive_dir)} if options.archive_dir else {}
        with process_environment(archive):
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
    with patient_temporary_server():
        storage = await load_result_storage(result_storage_block)
        return await release_submission(submission_key, storage, task_id=task_id)


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
    parameters: dict[str, Any] = {"prompt": DEMO_PROMPT, "duration": 4, "resolution": "720p"}
    archive = {"OMNIFLASH_ARCHIVE_DIR": str(archive_dir)} if archive_dir else {}
    with patient_temporary_server():
        try:
            if not use_emulator:
                if settings.api_key is None:
                    raise CommandUsageError(NO_CREDENTIALS_MESSAGE)
                with process_environment(archive):
                    outcome = await run_generation(
                        parameters, on_progress=on_progress, watch_interval=watch_interval
                    )
                return DemoResult(outcome, settings.base_url, used_emulator=False)
            with (
                EmulatorServer(EmulatorConfig(job_seconds=job_seconds)) as emulator,
                process_environment({**archive, **DEMO_POLL_SETTINGS}),
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
