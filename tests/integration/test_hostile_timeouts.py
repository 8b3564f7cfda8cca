"""The client against a hostile provider. A slow or hung API: every wait ends at its deadline, and
an unanswered submit is an unknown outcome.

The scripted servers and answers are in :mod:`tests.support.hostile_answers`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pytest

from omniflash_prefect import OmniFlashClient
from omniflash_prefect.core.retry import RetryPolicy
from omniflash_prefect.errors import (
    APITimeoutError,
    PollTimeoutError,
    SubmissionOutcomeUnknownError,
)
from tests.support.hostile_answers import (
    ENDLESS,
    REQUEST,
    TASK_ID,
    client_for,
)
from tests.support.hostile_server import Exchange, HostileServer, Reply


async def never_answer(exchange: Exchange, reply: Reply) -> None:
    await reply.stall()


Call = Callable[[OmniFlashClient], Awaitable[object]]


@pytest.mark.parametrize(
    "call",
    [lambda client: client.get_task(TASK_ID), lambda client: client.get_balance()],
    ids=["get_task", "get_balance"],
)
async def test_an_api_that_never_answers_times_out(call: Call) -> None:
    """A server that accepts the request and never answers: APITimeoutError after the
    configured read timeout on each attempt."""
    policy = RetryPolicy(max_attempts=2, backoff_base_seconds=0.01)
    async with (
        HostileServer(never_answer) as server,
        client_for(server, timeout=0.3, retry_policy=policy) as client,
    ):
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await call(client)
        elapsed = time.monotonic() - started
    assert len(server.exchanges) == 2
    assert elapsed < ENDLESS


async def test_a_submit_that_is_never_answered_is_an_unknown_outcome() -> None:
    """The body was sent and no answer came: SubmissionOutcomeUnknownError (cause
    APITimeoutError, request sent), after exactly one POST."""
    async with (
        HostileServer(never_answer) as server,
        client_for(server, timeout=0.3) as client,
    ):
        with pytest.raises(SubmissionOutcomeUnknownError) as info:
            await client.submit(REQUEST)
    assert isinstance(info.value.cause, APITimeoutError)
    assert info.value.cause.request_sent
    assert server.paths == ["/v1/videos/generations"]
    assert json.loads(server.exchanges[0].body) == REQUEST.to_api_body()


async def test_the_poll_deadline_holds_when_the_api_never_answers() -> None:
    """Status reads that hang for longer than the whole wait: PollTimeoutError once the
    2-second deadline passes, not after the 30-second call timeout."""
    async with (
        HostileServer(never_answer) as server,
        client_for(server, timeout=30.0) as client,
    ):
        started = time.monotonic()
        with pytest.raises(PollTimeoutError) as info:
            await client.wait(TASK_ID, max_wait_seconds=2, first_poll_delay=0)
        elapsed = time.monotonic() - started
    assert info.value.waited_seconds >= 2
    assert elapsed < ENDLESS
    assert len(server.exchanges) >= 1


async def test_an_answer_trickled_byte_by_byte_still_times_out() -> None:
    """An answer whose bytes arrive one every 50 ms (each read within the 0.3 s timeout, the
    body never ending) still ends in APITimeoutError within a bounded time."""

    async def trickle(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="application/json", chunked=True)
        while True:
            await reply.chunk(b" ")
            await asyncio.sleep(0.05)

    async with (
        HostileServer(trickle) as server,
        client_for(server, timeout=0.3, retry_policy=RetryPolicy(max_attempts=1)) as client,
    ):
        async with asyncio.timeout(3.0):
            with pytest.raises(APITimeoutError):
                await client.get_balance()
