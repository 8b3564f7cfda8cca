"""What is retried, and how long to wait: pure functions, declared in one place.

Retries live at exactly one layer, the client, so they never multiply with Prefect task retries.
The rules differ by operation because a submit is paid and the provider has no idempotency key:

* ``"idempotent"`` (task status, balance, image upload): retry connection failures, timeouts,
  429 and 5xx.
* ``"submit"``: retry only when the provider certainly did not accept the request: the
  connection was never established, or it answered 429. Anything else after the body may have been
  sent is not retried here (the client raises :class:`SubmissionOutcomeUnknownError`).

The delay honours a server's ``Retry-After`` (seconds or HTTP-date) up to a cap, else uses
jittered exponential backoff, the scheme openai-python and botocore use.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from omniflash_prefect.errors import (
    APIConnectionError,
    APIError,
    OmniFlashError,
    RateLimitedError,
    ServerError,
    UsageError,
)

Operation = Literal["idempotent", "submit"]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None.

    Negative, non-finite or unreadable values give None, so a broken header falls back to backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def is_retryable(error: OmniFlashError, operation: Operation) -> bool:
    """Whether ``error`` may be retried for ``operation`` without risking a second paid video."""
    if isinstance(error, RateLimitedError):
        return True
    if isinstance(error, APIConnectionError):
        return operation == "idempotent" or not error.request_sent
    if isinstance(error, ServerError):
        return operation == "idempotent"
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, and how long between them.

    ``max_attempts`` counts the first try. Backoff is ``min(base * 2**n, max)`` reduced by up to
    25% jitter so that many clients hitting a limit together spread out; a server's
    ``Retry-After`` wins, capped at ``retry_after_cap_seconds``.
    """

    max_attempts: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    retry_after_cap_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UsageError("max_attempts must be at least 1")
        if self.backoff_base_seconds < 0 or self.backoff_max_seconds < 0:
            raise UsageError("backoff seconds must not be negative")

    def should_retry(self, error: OmniFlashError, operation: Operation, attempt: int) -> bool:
        """Whether to try again after the ``attempt``-th (1-based) try failed with ``error``."""
        return attempt < self.max_attempts and is_retryable(error, operation)

    def delay(
        self, attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after the ``attempt``-th (1-based) failed try."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap_seconds)
        backoff = min(self.backoff_base_seconds * 2.0 ** (attempt - 1), self.backoff_max_seconds)
        # Jitter needs no cryptographic strength.
        jitter = rng.random() if rng is not None else random.random()  # noqa: S311
        return backoff * (1 - 0.25 * jitter)


def submission_certainly_refused(error: OmniFlashError) -> bool:
    """True when a failed submit certainly created no task (so no paid video is left behind).

    The provider refusing with a 4xx, or a connection that was never established, is certain;
    a 5xx, a broken connection or an answer that cannot be read (HTTP 200) is not.
    """
    if isinstance(error, APIConnectionError):
        return not error.request_sent
    return isinstance(error, APIError) and 400 <= error.status_code < 500


def retry_after_of(error: OmniFlashError) -> float | None:
    """The server's wait hint carried by ``error``, if any."""
    return error.retry_after if isinstance(error, RateLimitedError) else None
