"""Every error this package raises, under one root: the bottom of the package, imported by every
layer and by users (``from omniflash_prefect.errors import SpendLimitReachedError``).

Callers catch :class:`OmniFlashError` for "anything from this package", or a leaf for a decision:
re-run with a fixed request, top up the balance, resume from a recorded task id. Each leaf carries
the context that decision needs, and every message says what to do next.

The tree::

    OmniFlashError
    ├── UsageError (ValueError)         a call or command made wrongly: a bad argument or option
    │   │                               (checked before anything is created or sent)
    │   ├── BlockTypeError (TypeError)  a block name that loads a block of the wrong type
    │   ├── CredentialsBlockNotFoundError
    │   │                               no credentials block of that name (lists those there are)
    │   └── CommandUsageError           contradicting ``omniflash`` options (in ``cli``)
    ├── LocalServerError                the local Prefect server could not start (in ``cli``)
    ├── InvalidVideoRequestError        refused locally, nothing was sent (field, value, allowed)
    │   └── InvalidImageFileError       a local image that cannot be uploaded (path, reason)
    ├── InvalidTaskIdError              a task id that must not reach a URL path or a storage key
    ├── APIError                        the provider answered with an error (status, code, message)
    │   ├── InvalidRequestError         400: the API refused the request (API code kept)
    │   ├── AuthenticationError         401/403: the API key was refused
    │   ├── PaymentRequiredError        402: balance too low
    │   ├── RateLimitedError            429: slow down (retry_after when the server sent one)
    │   ├── NotFoundError               404: no such task
    │   ├── ServerError                 5xx
    │   └── UnexpectedResponseError     an answer this package cannot read
    ├── APIConnectionError              no answer: connection failed or broke
    │   └── APITimeoutError             no answer in time
    ├── SubmissionOutcomeUnknownError   a submit may or may not have been accepted (never resent)
    ├── SubmissionReleaseError          a submission record that must not be released
    ├── InsufficientBalanceError        a batch's preflight balance check failed, nothing was sent
    ├── SpendLimitReachedError          a spend limit (or a batch's budget) cannot hold the video;
    │                                   nothing was sent
    ├── SpendLimitNotFoundError         no spend limit of that name (``omniflash spend-limit set``)
    ├── VideoRunLostError               a batch's video run died with its worker, or outlived the
    │                                   row's deadline: the row runs again (resuming what was paid)
    ├── RemoteRunError                  a batch's video run on a worker failed (its error's class)
    ├── RunCancelledError               a run was cancelled (the UI, Ctrl-C): its paid tasks are
    │                                   handed over to a sweep (task_ids)
    ├── ManifestError                   a batch manifest cannot be read (in ``batches.manifest``)
    │   └── InvalidManifestError        some rows are invalid (line, id, message, API codes)
    ├── GenerationError                 the task exists but produced no video (task_id)
    │   ├── GenerationFailedError       status "failed", with the API's error code and message
    │   ├── GenerationCancelledError    status "cancelled"
    │   └── PollTimeoutError            still running when the poll deadline passed
    ├── DownloadError                   the video could not be fetched intact
    │   ├── UnsafeDownloadURLError      a URL this package will not fetch (scheme, host)
    │   ├── VideoTooLargeError          over the size cap
    │   └── VideoExpiredError           the signed result URL has expired
    └── MediaCheckError                 ``strict_media``: archived (location kept), but not the
                                        video asked for, or unreadable

Each class also says, once, what its error means for money and for the shell: ``charged`` (the
video may have been paid for when this error stopped it, so a budget or a spend limit counts its
estimate until an exact cost replaces it) and ``exit_status`` (what a command that ended with it
tells the shell: ``invalid`` and ``refused`` mean nothing was accepted, so nothing is charged).
Batches, spend limits and the command line all read these two attributes.

None of these messages ever contains the API key: the response mapping takes the key and
scrubs it from anything the server echoed back.
(:func:`omniflash_prefect.core.protocol.error_from_response` maps an HTTP error answer to its leaf.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

_REDACTED = "[REDACTED]"

#: How a failed command ends, from the error that stopped it: asked for something wrong
#: (nothing sent), refused by the provider or a limit (nothing accepted), a task that produced
#: no video, a video archived but not as asked (``strict_media``), or anything else.
ExitStatus = Literal["invalid", "refused", "failed", "not_as_asked", "cancelled", "error"]


class OmniFlashError(Exception):
    """Root of every error raised by omniflash-prefect."""

    #: Whether the video may have been paid for when this error stopped it. True unless the
    #: error is certain nothing was charged: an unknown error counts as paid.
    charged: ClassVar[bool] = True
    #: What a command that ended with this error tells the shell (see ``cli.exit_codes``).
    exit_status: ClassVar[ExitStatus] = "error"


class UsageError(OmniFlashError, ValueError):
    """A function, flow or command called wrongly (an argument out of range, options that
    contradict each other), found before anything was created or sent. Also a ``ValueError``,
    which is what Python code expects from a bad argument."""

    charged = False
    exit_status = "invalid"


class BlockTypeError(UsageError, TypeError):
    """A block name that loads a block of another type than the one needed (e.g. a storage
    block where credentials were expected)."""


class CredentialsBlockNotFoundError(UsageError):
    """No ``omniflash-credentials`` block has this name on the Prefect server; nothing was sent.

    ``block_name`` is the name asked for; ``existing`` the names of the credentials blocks that
    do exist, which the message lists (or, when there are none, says how to save one), so a typo
    is fixed without opening the UI.
    """

    def __init__(self, block_name: str, existing: tuple[str, ...]) -> None:
        self.block_name = block_name
        self.existing = existing
        if existing:
            shown = ", ".join(repr(name) for name in existing[:20])
            more = f" and {len(existing) - 20} more" if len(existing) > 20 else ""
            hint = f"the omniflash-credentials blocks there are: {shown}{more}"
        else:
            hint = (
                "there are none: save one with OmniFlashCredentials(api_key=...).save(NAME), or "
                "in the Prefect UI under Blocks (Omni-Flash-Ext Credentials)"
            )
        super().__init__(
            f"no omniflash-credentials block named {block_name!r} on this Prefect server; {hint}. "
            "Nothing was sent."
        )


@dataclass(frozen=True)
class RequestProblem:
    """One reason a video request was refused locally.

    ``code`` is the error code the API itself would answer with, so users can match on the same
    strings whether the refusal came from this package or from the provider.
    """

    code: str
    field: str
    value: Any
    message: str
    allowed: str | None = None


class InvalidVideoRequestError(OmniFlashError):
    """A video request broke a rule of the API; it was refused before any paid request was sent.

    ``problems`` lists every rule broken; ``code``, ``field``, ``value`` and ``allowed`` describe
    the first, for the common one-problem case.
    """

    charged = False
    exit_status = "invalid"

    def __init__(self, problems: list[RequestProblem]) -> None:
        if not problems:
            raise UsageError("InvalidVideoRequestError needs at least one problem")
        self.problems = problems
        first = problems[0]
        self.code = first.code
        self.field = first.field
        self.value = first.value
        self.allowed = first.allowed
        lines = [
            f"{p.field}: {p.message}"
            + (f" (allowed: {p.allowed})" if p.allowed else "")
            + f" [{p.code}]"
            for p in problems
        ]
        super().__init__("invalid video request (nothing was sent): " + "; ".join(lines))


class InvalidImageFileError(InvalidVideoRequestError):
    """A local image the upload endpoint would refuse (missing, not a JPEG, PNG, WebP or GIF,
    over 20 MB), found before anything was uploaded or submitted. ``path`` is the file, made
    absolute; ``reason`` what is wrong with it. Also an :class:`InvalidVideoRequestError`: the
    video it was meant for cannot be asked for either. An upload costs nothing."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            [
                RequestProblem(
                    "invalid_request_error",
                    "image_file",
                    path,
                    f"{path} {reason}",
                    allowed="JPEG, PNG, WebP or GIF up to 20 MB",
                )
            ]
        )


class InvalidTaskIdError(OmniFlashError):
    """A task id with characters that could escape a URL path or a storage key."""

    charged = False
    exit_status = "invalid"

    def __init__(self, task_id: object) -> None:
        self.task_id = task_id
        shown = repr(task_id)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(
            f"invalid task id {shown}: expected 1-128 characters of A-Z, a-z, 0-9, '_' or '-'"
        )


class APIError(OmniFlashError):
    """The provider answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        detail = f"HTTP {status_code}"
        if code:
            detail += f", {code}"
        if request_id:
            detail += f", request id {request_id}"
        super().__init__(f"{message} ({detail})")


class _RefusedByAPIError(APIError):
    """An answer refusing the request: nothing was accepted, so nothing is charged."""

    charged = False
    exit_status = "refused"


class InvalidRequestError(_RefusedByAPIError):
    """400: the API refused the request; ``code`` is the API's error code."""


class AuthenticationError(_RefusedByAPIError):
    """401/403: the API key was refused."""


class PaymentRequiredError(_RefusedByAPIError):
    """402: the account balance cannot pay for the video."""


class RateLimitedError(_RefusedByAPIError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds, if it sent one."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code, request_id=request_id)
        self.retry_after = retry_after


class NotFoundError(_RefusedByAPIError):
    """404: the task (or endpoint) does not exist for this API key."""


class ServerError(APIError):
    """5xx: the provider or a gateway in front of it failed."""


class UnexpectedResponseError(APIError):
    """An answer this package cannot read: wrong shape, not JSON, or an unexpected status."""


class APIConnectionError(OmniFlashError):
    """No answer from the API: the connection failed or broke.

    ``request_sent`` is False only when the connection was never established, which is the one
    case where a submit is certainly not accepted and may safely be sent again.
    """

    def __init__(self, message: str, *, request_sent: bool) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """No answer from the API in time."""


class SubmissionOutcomeUnknownError(OmniFlashError):
    """A submit failed after its body may have reached the provider.

    The provider has no idempotency key, so sending it again could pay for a second video. This
    error is raised instead of retrying; ``fingerprint`` identifies the request so the user can
    check the provider's task list (or balance) before deciding. ``submission_key`` names the
    record that now blocks the key, when there is one: ``omniflash release`` resolves it.
    """

    def __init__(
        self,
        fingerprint: str,
        cause: OmniFlashError | None = None,
        *,
        submission_key: str | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        self.cause = cause
        self.submission_key = submission_key
        what = (
            f"({cause})"
            if cause is not None
            else "(an earlier attempt with the same idempotency key was interrupted while it "
            "was sending, or died holding the key)"
        )
        advice = (
            "check the provider's task list or balance, then submit with a new idempotency key "
            "if no task was created"
        )
        if submission_key is not None:
            advice = (
                "check the provider's task list or balance: if a task was created, keep it with "
                f"'omniflash release {submission_key} --task-id <task id>'; if none was, free the "
                f"key with 'omniflash release {submission_key}' (or submit with a new "
                "idempotency key)"
            )
        super().__init__(
            f"the submission of request {fingerprint[:16]} may or may not have been accepted "
            f"{what}; it was not resent to avoid paying twice: {advice}"
        )


class SubmissionReleaseError(OmniFlashError):
    """``omniflash release`` refused to change a submission record (it already holds a task id,
    or the key is not a submission key)."""

    charged = False
    exit_status = "invalid"


class VideoRunLostError(OmniFlashError):
    """A video run of a batch ended without an outcome: its process or worker died (the run was
    set ``Crashed``, e.g. by the ``omniflash-crash-lost-runs`` automation) or it reached no final
    state by the row's deadline. The batch runs the row again; the row's submission record makes
    the new run resume the task already paid for instead of paying again."""


class RemoteRunError(OmniFlashError):
    """A ``generate-video`` deployment run did not complete; ``error_type`` is its exception's
    class when it is one of this package's (used to decide whether to retry or stop)."""

    def __init__(self, message: str, error_type: type[BaseException] | None) -> None:
        super().__init__(message)
        self.error_type = error_type


class RunCancelledError(OmniFlashError):
    """A run was cancelled (from the UI, ``prefect flow-run cancel``, Ctrl-C) before it ended.

    ``task_ids`` are the tasks it paid for and did not archive: their records say where they
    go, and a sweep (``omniflash sweep``, the ``sweep-paid-videos`` deployment or its Automation)
    archives them.
    """

    exit_status = "cancelled"

    def __init__(self, message: str, task_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.task_ids = task_ids


class InsufficientBalanceError(OmniFlashError):
    """A batch's preflight balance check found too little credit; nothing was submitted."""

    charged = False
    exit_status = "refused"


class SpendLimitReachedError(OmniFlashError):
    """A named spend limit (or a batch's own budget, ``limit="budget"``) cannot hold the video's
    estimated cost; nothing was sent.

    ``limit`` is the limit's name; ``spent``, ``reserved`` and ``amount`` its numbers when refused.
    """

    charged = False
    exit_status = "refused"

    def __init__(self, message: str, *, limit: str, spent: float, reserved: float, amount: float):
        super().__init__(message)
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.amount = amount


class SpendLimitNotFoundError(OmniFlashError):
    """No spend limit has this name on the Prefect server; nothing was sent."""

    charged = False
    exit_status = "invalid"


class GenerationError(OmniFlashError):
    """The task exists but did not produce a video."""

    exit_status = "failed"

    def __init__(self, message: str, *, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(message)


class GenerationFailedError(GenerationError):
    """The task ended with status ``failed``; ``error_code``/``error_message`` are the API's."""

    charged = False

    def __init__(self, task_id: str, *, error_code: str | None, error_message: str | None) -> None:
        self.error_code = error_code
        self.error_message = error_message
        reason = error_message or "no reason given"
        code = f" [{error_code}]" if error_code else ""
        super().__init__(
            f"video generation failed for task {task_id}: {reason}{code}; failed tasks are not "
            "charged, fix the prompt or retry later",
            task_id=task_id,
        )


class GenerationCancelledError(GenerationError):
    """The task ended with status ``cancelled``."""

    charged = False

    def __init__(self, task_id: str) -> None:
        super().__init__(f"video generation was cancelled for task {task_id}", task_id=task_id)


class PollTimeoutError(GenerationError):
    """The task was still running when the poll deadline passed.

    The task may still complete: resume waiting on ``task_id`` later instead of submitting again.
    """

    def __init__(self, task_id: str, *, waited_seconds: float, last_status: str | None) -> None:
        self.waited_seconds = waited_seconds
        self.last_status = last_status
        super().__init__(
            f"task {task_id} was still {last_status or 'unread'} after {waited_seconds:.0f} s; "
            "it may still complete: wait on the same task id again rather than resubmitting",
            task_id=task_id,
        )


class DownloadError(OmniFlashError):
    """The video could not be fetched intact."""


class UnsafeDownloadURLError(DownloadError):
    """A URL this package refuses to fetch: not https (outside loopback), or without a host."""


class VideoTooLargeError(DownloadError):
    """The video is larger than the configured size cap."""


class VideoExpiredError(DownloadError):
    """The result URL has expired (links live about 24 hours); nothing was downloaded."""


class MediaCheckError(OmniFlashError):
    """The archived video is not what was asked for, or could not be read (``strict_media``).

    Raised only after the video is stored: the paid file is kept at ``location`` and its record
    says what was found, so nothing needs to be generated or downloaded again to look at it.
    """

    exit_status = "not_as_asked"

    def __init__(self, task_id: str, location: str, problem: str) -> None:
        self.task_id = task_id
        self.location = location
        self.problem = problem
        super().__init__(
            f"the video of task {task_id} is archived at {location}, but its media check found "
            f"{problem}"
        )


def redact(text: str, secret: str | None) -> str:
    """Return ``text`` with ``secret`` replaced: for anything a server echoes back."""
    if secret and secret in text:
        return text.replace(secret, _REDACTED)
    return text


def may_have_been_charged(error: BaseException | type[BaseException]) -> bool:
    """Whether a video stopped by ``error`` (an exception or its class, all that is known of a
    deployment run's failure) may have been paid for: its class's ``charged``, and True for
    anything that is not this package's (a bug may strike after the provider accepted)."""
    kind = error if isinstance(error, type) else type(error)
    return not issubclass(kind, OmniFlashError) or kind.charged
