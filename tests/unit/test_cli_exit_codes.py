"""One meaning per exit code, decided from the error tree in one place for every command."""

from __future__ import annotations

import pytest

from omniflash_prefect import errors
from omniflash_prefect.batches.manifest import InvalidManifestError, Manifest, ManifestError
from omniflash_prefect.batches.report import BatchItem, BatchReport
from omniflash_prefect.cli.batch_commands import BatchOutcome
from omniflash_prefect.cli.exit_codes import classify
from omniflash_prefect.cli.usage import CommandUsageError
from omniflash_prefect.cli.video_runs import GenerationOutcome
from omniflash_prefect.errors import RequestProblem

PROBLEM = RequestProblem("invalid_duration", "duration", 7, "not allowed", "4, 6, 8, 10")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.UsageError("bad argument"), "invalid", 2),
        (errors.BlockTypeError("not a storage block"), "invalid", 2),
        (CommandUsageError("contradicting options"), "invalid", 2),
        (errors.InvalidVideoRequestError([PROBLEM]), "invalid", 2),
        (errors.InvalidTaskIdError("../x"), "invalid", 2),
        (ManifestError("not UTF-8"), "invalid", 2),
        (InvalidManifestError(Manifest(rows=())), "invalid", 2),
        (errors.SubmissionReleaseError("holds a task"), "invalid", 2),
        (errors.AuthenticationError("no", status_code=401), "refused", 3),
        (errors.PaymentRequiredError("no", status_code=402), "refused", 3),
        (errors.InvalidRequestError("no", status_code=400), "refused", 3),
        (errors.RateLimitedError("no"), "refused", 3),
        (errors.NotFoundError("no", status_code=404), "refused", 3),
        (errors.InsufficientBalanceError("too little"), "refused", 3),
        (errors.GenerationFailedError("t", error_code=None, error_message=None), "failed", 4),
        (errors.GenerationCancelledError("t"), "failed", 4),
        (errors.PollTimeoutError("t", waited_seconds=1, last_status=None), "failed", 4),
        (errors.ServerError("gateway", status_code=502), "error", 1),
        (errors.SubmissionOutcomeUnknownError("f" * 64), "error", 1),
        (errors.DownloadError("cut"), "error", 1),
        (ValueError("not the package's"), "error", 1),
        (RuntimeError("the flow run ended Crashed"), "error", 1),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_each_error_has_one_status_and_code(error: BaseException, status: str, code: int) -> None:
    assert classify(error) == (status, code)
    one_video = GenerationOutcome("a prompt", error=error)
    assert (one_video.status, one_video.exit_code) == (status, code)


def test_a_batch_stopped_by_any_value_error_is_invalid_input() -> None:
    outcome = BatchOutcome(error=ValueError("a bad parameter"))
    assert (outcome.status, outcome.exit_code) == ("invalid", 2)
    assert classify(ValueError("elsewhere")) == ("error", 1)


def test_a_batch_stopping_error_takes_the_shared_meaning() -> None:
    assert BatchOutcome(error=errors.InsufficientBalanceError("low")).exit_code == 3
    assert BatchOutcome(error=errors.SubmissionOutcomeUnknownError("f" * 64)).exit_code == 1


def test_a_batch_report_is_ok_or_partial() -> None:
    archived = BatchItem(id="a", status="archived")
    done = BatchReport.of("b", [archived], wall_seconds=1.0)
    partial = BatchReport.of("b", [archived, BatchItem(id="f", status="failed")], 1.0)
    assert (BatchOutcome(report=done).status, BatchOutcome(report=done).exit_code) == ("ok", 0)
    assert BatchOutcome(report=partial).status == "partial"
    assert BatchOutcome(report=partial).exit_code == 4
