"""What ``omniflash batch`` does behind its options: check the manifest, run the batch, report.

* :func:`check_batch_options` reads and validates a local manifest before any flow run is
  created or anything is sent, so a bad row is reported by line with exit code 2;
* :func:`run_batch` runs ``generate_video_batch`` in this process (on a flow run created up front,
  whose progress artifact feeds the progress bar) and turns its final state into a
  :class:`BatchOutcome`: the report, or the error that stopped the batch, and an exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import State

from omniflash_prefect.batches.flow import agenerate_video_batch
from omniflash_prefect.batches.manifest import InvalidManifestError, Manifest, read_manifest_file
from omniflash_prefect.batches.options import BatchRunOptions, FanOut
from omniflash_prefect.batches.report import BatchReport
from omniflash_prefect.cli.exit_codes import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_NOT_AS_ASKED,
    EXIT_OK,
    classify,
)
from omniflash_prefect.cli.flow_runs import RunStarted, run_flow_watched, server_for_command
from omniflash_prefect.cli.progress import ProgressCallback, read_batch_progress
from omniflash_prefect.cli.usage import (
    CommandUsageError,
    check_credentials_block,
    check_credentials_configured,
    check_one_archive_target,
)
from omniflash_prefect.errors import ExitStatus

BatchStatus = Literal["ok", "partial"] | ExitStatus


@dataclass(frozen=True)
class BatchOptions:
    """What ``omniflash batch`` was asked for: how the batch runs (:class:`BatchRunOptions`,
    shared with the flow), and what only the command has (the manifest, blocks, archive)."""

    manifest: str
    run: BatchRunOptions = field(default_factory=BatchRunOptions)
    manifest_block: str | None = None
    credentials_block: str | None = None
    storage_block: str | None = None
    archive_dir: Path | None = None
    archive_prefix: str = "omniflash"
    result_storage_block: str | None = None
    spend_limit: str | None = None
    strict_media: bool = False

    def flow_parameters(self) -> dict[str, Any]:
        """The parameters of the ``generate_video_batch`` run (a local manifest as an absolute
        path, so the run reads the same file whatever its working directory)."""
        manifest = self.manifest
        if self.manifest_block is None:
            manifest = str(Path(manifest).expanduser().resolve())
        return {
            "manifest": manifest,
            "manifest_block": self.manifest_block,
            "options": self.run.model_dump(mode="json"),
            "credentials_block": self.credentials_block,
            "storage_block": self.storage_block,
            "archive_dir": str(self.archive_dir) if self.archive_dir else None,
            "archive_prefix": self.archive_prefix,
            "result_storage_block": self.result_storage_block,
            "spend_limit": self.spend_limit,
            "strict_media": self.strict_media,
        }


@dataclass(frozen=True)
class BatchOutcome:
    """How ``omniflash batch`` ended: a report (some rows may have failed) or a stopping error."""

    report: BatchReport | None = None
    error: BaseException | None = None
    flow_run_id: UUID | None = None
    strict_media: bool = False

    @property
    def status(self) -> BatchStatus:
        """``ok`` or ``partial`` with a report (``not_as_asked`` when ``--strict-media`` finds
        an archived video that is not), else the stopping error's status word."""
        if self.report is not None:
            if not self.report.ok:
                return "partial"
            return "not_as_asked" if self._strictly_flagged else "ok"
        return self._failure()[0]

    @property
    def exit_code(self) -> int:
        """0 every row archived; 4 some rows not archived; 5 all archived, but with
        ``--strict-media`` some not as asked; else the stopping error's code (2 invalid manifest
        or usage and 3 balance too low: nothing sent; 1 anything else)."""
        if self.report is not None:
            if not self.report.ok:
                return EXIT_FAILED
            return EXIT_NOT_AS_ASKED if self._strictly_flagged else EXIT_OK
        return self._failure()[1]

    @property
    def _strictly_flagged(self) -> bool:
        return self.strict_media and self.report is not None and bool(self.report.media_flagged)

    def _failure(self) -> tuple[ExitStatus, int]:
        if self.error is None:
            return "error", EXIT_ERROR
        # Any ValueError stopping a batch has always meant bad input (exit 2), not only the
        # package's own usage errors.
        return classify(self.error, also_invalid=(ValueError,))

    def to_json(self) -> dict[str, Any]:
        """The one JSON object ``omniflash batch --json`` prints."""
        body: dict[str, Any] = {
            "status": self.status,
            "flow_run_id": str(self.flow_run_id) if self.flow_run_id else None,
        }
        if self.report is not None:
            body.update(self.report.model_dump(mode="json"))
        if self.error is not None:
            body.update(error=str(self.error), error_type=type(self.error).__name__)
            if isinstance(self.error, InvalidManifestError):
                body["problems"] = [
                    {"line": p.line, "id": p.id, "message": p.message, "codes": list(p.codes)}
                    for p in self.error.problems
                ]
        return body


def check_batch_options(options: BatchOptions) -> Manifest | None:
    """Everything checkable without a network call; raises before anything is created or sent.

    A local manifest is read and every row validated here (a manifest in a block is read by the
    run itself); returns it, or None for a manifest in a block.
    """
    check_credentials_configured(options.credentials_block)
    check_one_archive_target(options.archive_dir, options.storage_block)
    if options.archive_dir is not None and options.run.fan_out == FanOut.DEPLOYMENTS:
        raise CommandUsageError(
            "--archive-dir is a directory of this machine, and with --fan-out deployments the "
            "videos are archived by the workers: use --storage-block (e.g. s3-bucket/videos)"
        )
    if options.manifest_block is not None:
        return None
    manifest = read_manifest_file(Path(options.manifest))
    if manifest.problems and not options.run.skip_invalid:
        raise InvalidManifestError(manifest)
    return manifest


async def run_batch(
    options: BatchOptions,
    *,
    on_progress: ProgressCallback | None = None,
    watch_interval: float = 1.0,
    on_started: RunStarted | None = None,
) -> BatchOutcome:
    """``omniflash batch``: check, then run the batch in this process; never raises.

    ``on_progress`` is called with the percent of rows done and the tasks paid for so far,
    ``on_started`` with the batch run's id as soon as it exists."""
    with contextlib.ExitStack() as server:
        try:
            check_batch_options(options)
            server.enter_context(server_for_command())
            await check_credentials_block(options.credentials_block)
        except Exception as exc:
            return BatchOutcome(error=exc)

        async def follow(client: PrefectClient, flow_run_id: UUID) -> None:
            if on_progress is None:
                return
            with contextlib.suppress(Exception):  # a failed read only skips a refresh
                progress = await read_batch_progress(client, flow_run_id)
                if progress is not None:
                    on_progress(progress)

        flow: Flow[..., Any] = agenerate_video_batch
        try:
            state, flow_run_id = await run_flow_watched(
                flow,
                options.flow_parameters(),
                on_tick=follow,
                watch_interval=watch_interval,
                on_started=on_started,
            )
        except Exception as exc:
            return BatchOutcome(error=exc)
        outcome = await _outcome_of(state, flow_run_id)
        return dataclasses.replace(outcome, strict_media=options.strict_media)


async def _outcome_of(state: State[Any], flow_run_id: UUID) -> BatchOutcome:
    """The report of a finished batch run (complete or not), else the error that stopped it."""
    try:
        result: object = await state.aresult(raise_on_failure=False)
    except Exception as exc:
        result = exc
    if isinstance(result, BatchReport):
        return BatchOutcome(report=result, flow_run_id=flow_run_id)
    error = (
        result
        if isinstance(result, BaseException)
        else RuntimeError(f"the batch run ended {state.name}: {state.message}")
    )
    return BatchOutcome(error=error, flow_run_id=flow_run_id)
