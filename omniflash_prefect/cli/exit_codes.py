"""What a failed ``omniflash`` command tells the shell: a status word and an exit code.

The status word is the error's own :attr:`~omniflash_prefect.errors.OmniFlashError.exit_status`
(declared once, on its class in the error tree), so a script can rely on one meaning per code
whichever command it ran (generate, fetch, release, batch):

* 2 ``invalid``: the command was asked for something wrong, found before anything was paid for
  (a usage error, an invalid request, task id or manifest);
* 3 ``refused``: the provider clearly said no (key, balance, request, rate limit, unknown task),
  or a batch's balance check or a spend limit did; nothing was accepted, nothing is paid;
* 4 ``failed``: the task exists but produced no video (failed, cancelled, timed out);
* 5 ``not_as_asked``: with ``--strict-media``, a video was archived (it is kept) but is not the
  duration, resolution or shape asked for, or could not be read;
* 130 ``cancelled``: the run was cancelled (the Prefect UI, ``prefect flow-run cancel``,
  Ctrl-C); what it paid for is handed over to a sweep, and the command prints the task ids;
* 1 ``error``: anything else, e.g. a submission of unknown outcome or a failed download.
"""

from __future__ import annotations

from typing import Final

from omniflash_prefect.errors import ExitStatus, OmniFlashError

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_INVALID: Final = 2
EXIT_REFUSED: Final = 3
EXIT_FAILED: Final = 4
EXIT_NOT_AS_ASKED: Final = 5
#: As a shell reports a command stopped by Ctrl-C (128 + SIGINT).
EXIT_CANCELLED: Final = 130

EXIT_CODES: Final[dict[ExitStatus, int]] = {
    "error": EXIT_ERROR,
    "invalid": EXIT_INVALID,
    "refused": EXIT_REFUSED,
    "failed": EXIT_FAILED,
    "not_as_asked": EXIT_NOT_AS_ASKED,
    "cancelled": EXIT_CANCELLED,
}


def classify(
    error: BaseException, *, also_invalid: tuple[type[BaseException], ...] = ()
) -> tuple[ExitStatus, int]:
    """The status word and exit code of a failure.

    ``also_invalid`` lets a command count more exception classes as invalid input (``batch``
    keeps counting any ``ValueError`` so, as it always has).
    """
    status: ExitStatus = "error"
    if isinstance(error, OmniFlashError):
        status = error.exit_status
    elif isinstance(error, also_invalid):
        status = "invalid"
    return status, EXIT_CODES[status]
