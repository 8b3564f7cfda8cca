"""Which failures are retried, for which operation, and how long to wait."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from omniflash_prefect import OmniFlashError
from omniflash_prefect.core.retry import RetryPolicy, is_retryable, parse_retry_after
from omniflash_prefect.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    InvalidRequestError,
    PaymentRequiredError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)

NOT_SENT = APIConnectionError("refused", request_sent=False)
BROKEN = APIConnectionError("reset", request_sent=True)
TIMED_OUT = APITimeoutError("read timeout", request_sent=True)
CONNECT_TIMEOUT = APITimeoutError("connect timeout", request_sent=False)
LIMITED = RateLimitedError("slow down")
FAILED = ServerError("boom", status_code=503)
REFUSED = InvalidRequestError("bad", status_code=400)
AUTH = AuthenticationError("key", status_code=401)
BROKE = PaymentRequiredError("money", status_code=402)
GARBLED = UnexpectedResponseError("garbled", status_code=200)


@pytest.mark.parametrize(
    ("error", "idempotent", "submit"),
    [
        (NOT_SENT, True, True),
        (CONNECT_TIMEOUT, True, True),
        (LIMITED, True, True),
        (BROKEN, True, False),
        (TIMED_OUT, True, False),
        (FAILED, True, False),
        (REFUSED, False, False),
        (AUTH, False, False),
        (BROKE, False, False),
        (GARBLED, False, False),
    ],
)
def test_retry_table(error: OmniFlashError, idempotent: bool, submit: bool) -> None:
    """A submit is retried only when the provider certainly did not accept it."""
    assert is_retryable(error, "idempotent") is idempotent
    assert is_retryable(error, "submit") is submit


def test_should_retry_stops_at_max_attempts() -> None:
    """max_attempts counts the first try."""
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(LIMITED, "submit", n) for n in (1, 2, 3)] == [True, True, False]


def test_backoff_grows_exponentially_up_to_the_cap_with_bounded_jitter() -> None:
    """min(base * 2^n, max), reduced by at most 25%."""
    policy = RetryPolicy(backoff_base_seconds=0.5, backoff_max_seconds=8.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        delays = [policy.delay(attempt, rng=rng) for _ in range(50)]
        assert all(0.75 * ceiling <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_server_hint_wins_up_to_the_cap() -> None:
    """Retry-After is honoured exactly, but never beyond the cap."""
    policy = RetryPolicy(retry_after_cap_seconds=120)
    assert policy.delay(1, retry_after=30) == 30
    assert policy.delay(1, retry_after=0) == 0
    assert policy.delay(1, retry_after=3600) == 120


def test_invalid_policies_are_refused() -> None:
    """A policy with no attempt or negative waits is a programming error."""
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(backoff_base_seconds=-1)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        (" 1.5 ", 1.5),
        ("", None),
        (None, None),
        ("-3", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_delta_seconds(header: str | None, seconds: float | None) -> None:
    """Delta-seconds are read; junk and negatives give None (fall back to backoff)."""
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date() -> None:
    """An HTTP-date is turned into seconds from now; a past date means now."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    future = format_datetime(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    past = format_datetime(datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(future, now=now) == 30.0
    assert parse_retry_after(past, now=now) == 0.0
