"""What a failed ``omniflash`` command tells the shell: a status word and an exit code.

Decided here once, from an exception's place in the error tree of
:mod:`omniflash_prefect.core.errors`, for every command (generate, fetch, release, batch), so a
script can rely on one meaning per code whichever command it ran:

* 2 ``invalid``: the command was asked for something wrong, found before anything was paid for
  (a usage error, an invalid request, task id or manifest);
* 3 ``refused``: the provider clearly said no (key, balance, request, rate limit, unknown task),
  or a batch's balance check or a spend limit did; nothing was accepted, nothing is paid;
* 4 ``failed``: the task exists but produced no video (failed, cancelled, timed out);
* 5 ``not_as_asked``: with ``--strict-media``, a video was archived (it is kept) but is not the
  duration, resolution or shape asked for, or could not be read;
* 1 ``error``: anything else, e.g. a submission of unknown outcome or a failed download.
"""

from __future__ import annotations

from typing import Final, Literal

from omniflash_prefect.batches.manifest import ManifestError
from omniflash_prefect.core.errors import (
    AuthenticationError,
    GenerationError,
    InsufficientBalanceError,
    InvalidRequestError,
    InvalidTaskIdError,
    InvalidVideoRequestError,
    MediaCheckError,
    NotFoundError,
    PaymentRequiredError,
    RateLimitedError,
    SpendLimitNotFoundError,
    SpendLimitReachedError,
    SubmissionReleaseError,
    UsageError,
)

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_INVALID: Final = 2
EXIT_REFUSED: Final = 3
EXIT_FAILED: Final = 4
EXIT_NOT_AS_ASKED: Final = 5

FailureStatus = Literal["invalid", "refused", "failed", "not_as_asked", "error"]

#: Asked for something wrong; nothing was sent. ``UsageError`` covers the command's own
#: ``CommandUsageError``; a submission record that must not be released is ``release``'s.
INVALID: Final = (
    UsageError,
    InvalidVideoRequestError,
    InvalidTaskIdError,
    ManifestError,
    SubmissionReleaseError,
    SpendLimitNotFoundError,
)
#: The provider's clear "no": nothing was accepted, nothing is paid. A 429 that outlived the
#: client's retries is one too (a submit is retried on 429 only because it certainly was
#: refused); a 404 is the provider knowing no such task; a batch's balance check refuses before
#: anything is sent, and so does a named spend limit that cannot hold the video.
REFUSALS: Final = (
    AuthenticationError,
    PaymentRequiredError,
    InvalidRequestError,
    RateLimitedError,
    NotFoundError,
    InsufficientBalanceError,
    SpendLimitReachedError,
)


def classify(
    error: BaseException, *, also_invalid: tuple[type[BaseException], ...] = ()
) -> tuple[FailureStatus, int]:
    """The status word and exit code of a failure.

    ``also_invalid`` lets a command count more exception classes as invalid input (``batch``
    keeps counting any ``ValueError`` so, as it always has).
    """
    if isinstance(error, INVALID + also_invalid):
        return "invalid", EXIT_INVALID
    if isinstance(error, REFUSALS):
        return "refused", EXIT_REFUSED
    if isinstance(error, GenerationError):
        return "failed", EXIT_FAILED
    if isinstance(error, MediaCheckError):
        return "not_as_asked", EXIT_NOT_AS_ASKED
    return "error", EXIT_ERROR
