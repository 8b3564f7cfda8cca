"""What ``omniflash batch`` does behind its options: check the manifest, run the batch, report.

* :func:`check_batch_options` reads and validates a local manifest before any flow run is
  created or anything is sent, so a bad row is reported by line with exit code 2;
* :func:`run_batch` runs ``generate_video_batch`` in this process (on a flow run created up front,
  whose progress artifact feeds the progress bar) and turns its final state into a
  :class:`BatchOutcome`: the report, or the error that stopped the batch, and an exit code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from omniflash_prefect.batches.flow import agenerate_video_batch
from omniflash_prefect.batches.manifest import (
    InvalidManifestError,
    Manifest,
    ManifestError,
    read_manifest_file,
)
from omniflash_prefect.batches.options import FanOut
from omniflash_prefect.batches.report import BatchReport
from omniflash_prefect.cli.commands import (
    EXIT_ARCHIVED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_REFUSED,
    CommandUsageError,
    check_credentials_configured,
    patient_temporary_server,
    process_environment,
    run_flow_watched,
)
from omniflash_prefect.core.errors import InsufficientBalanceError
from omniflash_prefect.video.observability import artifact_key

_BATCH_PROGRESS_PREFIX: Final = artifact_key("batch-progress", "")


@dataclass(frozen=True)
class BatchOptions:
    """What ``omniflash batch`` was asked for."""

    manifest: str
    manifest_block: str | None = None
    skip_invalid: bool = False
    batch_id: str | None = None
    max_concurrency: int = 8
    concurrency_limit: str | None = None
    budget: float | None = None
    cost_estimate: float | None = None
    check_balance: bool = False
    fan_out: FanOut = FanOut.SUBFLOWS
    credentials_block: str | None = None
    storage_block: str | None = None
    archive_dir: Path | None = None
    archive_prefix: str = "omniflash"
    result_storage_block: str | None = None

    def flow_parameters(self) -> dict[str, Any]:
        """The parameters of the ``generate_video_batch`` run (a local manifest as an absolute
        path, so the run reads the same file whatever its working directory)."""
        manifest = self.manifest
        if self.manifest_block is None:
            manifest = str(Path(manifest).expanduser().resolve())
        return {
            "manifest": manifest,
            "manifest_block": self.manifest_block,
            "skip_invalid": self.skip_invalid,
            "batch_id": self.batch_id,
            "max_concurrency": self.max_concurrency,
            "concurrency_limit": self.concurrency_limit,
            "budget": self.budget,
            "cost_estimate": self.cost_estimate,
            "check_balance": self.check_balance,
            "fan_out": self.fan_out,
            "credentials_block": self.credentials_block,
            "storage_block": self.storage_block,
            "archive_prefix": self.archive_prefix,
            "result_storage_block": self.result_storage_block,
        }


@dataclass(frozen=True)
class BatchOutcome:
    """How ``omniflash batch`` ended: a report (some rows may have failed) or a stopping error."""

    report: BatchReport | None = None
    error: BaseException | None = None
    flow_run_id: UUID | None = None

    @property
    def exit_code(self) -> int:
        """0 every row archived; 2 invalid manifest or usage and 3 balance too low (nothing
        sent); 4 some rows not archived; 1 anything else."""
        if self.report is not None:
            return EXIT_ARCHIVED if self.report.ok else EXIT_FAILED
        if isinstance(self.error, ManifestError | CommandUsageError | ValueError):
            return EXIT_INVALID
        if isinstance(self.error, InsufficientBalanceError):
            return EXIT_REFUSED
        return EXIT_ERROR

    @property
    def status(self) -> str:
        """``ok``, ``partial``, ``invalid``, ``refused`` or ``error``."""
        return {
            EXIT_ARCHIVED: "ok",
            EXIT_FAILED: "partial",
            EXIT_INVALID: "invalid",
            EXIT_REFUSED: "refused",
        }.get(self.exit_code, "error")

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
    if options.max_concurrency < 1:
        raise CommandUsageError("--max-concurrency must be at least 1")
    if options.archive_dir is not None and options.storage_block:
        raise CommandUsageError("--archive-dir and --storage-block are mutually exclusive")
    if options.archive_dir is not None and options.fan_out == FanOut.DEPLOYMENTS:
        raise CommandUsageError(
            "--archive-dir is a directory of this machine, and with --fan-out deployments the "
            "videos are archived by the workers: use --storage-block (e.g. s3-bucket/videos)"
        )
    if options.manifest_block is not None:
        return None
    manifest = read_manifest_file(Path(options.manifest))
    if manifest.problems and not options.skip_invalid:
        raise InvalidManifestError(manifest)
    return manifest


ProgressCallback = Callable[[float], None]


async def run_batch(
    options: BatchOptions,
    *,
    on_progress: ProgressCallback | None = None,
    watch_interval: float = 1.0,
) -> BatchOutcome:
    """``omniflash batch``: check, then run the batch in this process; never raises."""
    with patient_temporary_server():
        try:
            check_batch_options(options)
        except Exception as exc:
            return BatchOutcome(error=exc)

        async def follow(client: PrefectClient, flow_run_id: UUID) -> None:
            if on_progress is None:
                return
            with contextlib.suppress(Exception):  # a failed read only skips a refresh
                artifacts = await client.read_artifacts(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
                )
                for artifact in artifacts:
                    key = artifact.key or ""
                    if key.startswith(_BATCH_PROGRESS_PREFIX) and isinstance(
                        artifact.data, int | float
                    ):
                        on_progress(float(artifact.data))

        flow: Flow[..., Any] = agenerate_video_batch
        archive = {"OMNIFLASH_ARCHIVE_DIR": str(options.archive_dir)} if options.archive_dir else {}
        try:
            with process_environment(archive):
                state, flow_run_id = await run_flow_watched(
                    flow, options.flow_parameters(), on_tick=follow, watch_interval=watch_interval
                )
        except Exception as exc:
            return BatchOutcome(error=exc)
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
