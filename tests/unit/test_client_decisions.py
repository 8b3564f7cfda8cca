"""The client's retry, submit-safety and poll-loop decisions, over an in-memory httpx transport.

A scripted ``httpx.MockTransport`` plays exact answer sequences (including connection failures)
and a fake clock makes sleeps instant, so each decision is checked precisely. The same client
runs over real HTTP against the emulator in ``tests/integration``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest

from omniflash_prefect import OmniFlashClient, VideoRequest, VideoTask
from omniflash_prefect.client import SOCKET_READ_BYTES
from omniflash_prefect.core.polling import PollSchedule
from omniflash_prefect.core.retry import RetryPolicy
from omniflash_prefect.errors import (
    APIConnectionError,
    AuthenticationError,
    GenerationCancelledError,
    GenerationFailedError,
    InvalidRequestError,
    PaymentRequiredError,
    PollTimeoutError,
    RateLimitedError,
    SubmissionOutcomeUnknownError,
)
from tests.support.clock import FakeClock

KEY = "sk-unit-test-key"
TASK_ID = "task_01KS1H7ZYSJWH1N779S2FSHTKA"
REQUEST = VideoRequest(prompt="a paper boat on a pond")
Answer = httpx.Response | Exception


def submitted() -> httpx.Response:
    return httpx.Response(200, json={"code": 200, "data": [{"task_id": TASK_ID}]})


def status(state: str, **extra: Any) -> httpx.Response:
    data = {"id": TASK_ID, "status": state, **extra}
    return httpx.Response(200, json={"code": 200, "data": data})


class Script:
    """Answers requests in order and records them."""

    def __init__(self, answers: list[Answer]) -> None:
        self._answers: Iterator[Answer] = iter(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self._answers)
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_client(script: Script, clock: FakeClock, **options: Any) -> OmniFlashClient:
    options.setdefault("retry_policy", RetryPolicy(max_attempts=4))
    return OmniFlashClient(
        KEY,
        base_url="https://api.test",
        transport=httpx.MockTransport(script),
        sleep=clock.sleep,
        clock=clock,
        **options,
    )


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("connection refused")


def read_error() -> httpx.ReadError:
    return httpx.ReadError("connection reset by peer")


async def test_submit_sends_the_body_key_and_user_agent(fake_clock: FakeClock) -> None:
    """One POST with the explicit body, bearer key and a User-Agent naming the package."""
    script = Script([submitted()])
    async with make_client(script, fake_clock) as client:
        assert await client.submit(REQUEST) == TASK_ID
    (sent,) = script.requests
    assert sent.url == "https://api.test/v1/videos/generations"
    assert json.loads(sent.content) == REQUEST.to_api_body()
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["user-agent"].startswith("omniflash-prefect/0.1.0 ")


@pytest.mark.parametrize(
    "first",
    [connect_error(), httpx.ConnectTimeout("slow connect"), httpx.Response(429, json={})],
    ids=["refused", "connect-timeout", "429"],
)
async def test_submit_is_retried_when_certainly_not_accepted(
    fake_clock: FakeClock, first: Answer
) -> None:
    """Connection never made, or 429: sent again, one task id in the end."""
    script = Script([first, first, submitted()])
    async with make_client(script, fake_clock) as client:
        assert await client.submit(REQUEST) == TASK_ID
    assert len(script.requests) == 3
    assert len(fake_clock.sleeps) == 2


@pytest.mark.parametrize(
    "failure",
    [
        read_error(),
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.Response(500, text="oops"),
        httpx.Response(502, text="<html>Bad Gateway</html>"),
        httpx.Response(503, json={}),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json={"code": 200, "data": []}),
    ],
    ids=["reset", "read-timeout", "disconnect", "500", "502-html", "503", "200-html", "200-no-id"],
)
async def test_ambiguous_submit_failure_is_never_resent(
    fake_clock: FakeClock, failure: Answer
) -> None:
    """Any failure after the body may have arrived: exactly one POST and a typed error."""
    script = Script([failure, submitted()])
    async with make_client(script, fake_clock) as client:
        with pytest.raises(SubmissionOutcomeUnknownError) as info:
            await client.submit(REQUEST)
    assert len(script.requests) == 1
    assert info.value.fingerprint == REQUEST.fingerprint()
    assert "not resent" in str(info.value)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"error": {"code": "invalid_duration"}}), InvalidRequestError),
        (httpx.Response(401, json={}), AuthenticationError),
        (httpx.Response(402, json={}), PaymentRequiredError),
    ],
)
async def test_certain_refusals_raise_their_own_error_once(
    fake_clock: FakeClock, answer: httpx.Response, error: type[Exception]
) -> None:
    """400/401/402 are the provider's clear no: raised as is, not retried."""
    script = Script([answer])
    async with make_client(script, fake_clock) as client:
        with pytest.raises(error):
            await client.submit(REQUEST)
    assert len(script.requests) == 1


async def test_rate_limit_honours_retry_after_then_gives_up(fake_clock: FakeClock) -> None:
    """429 waits the server's Retry-After; after max attempts the 429 is raised."""
    limited = httpx.Response(429, headers={"Retry-After": "3"}, json={})
    script = Script([limited] * 4)
    async with make_client(script, fake_clock) as client:
        with pytest.raises(RateLimitedError):
            await client.submit(REQUEST)
    assert fake_clock.sleeps == [3.0, 3.0, 3.0]


async def test_connection_never_made_raises_connection_error(fake_clock: FakeClock) -> None:
    """A submit that never connected after every retry says so (it is certainly unpaid)."""
    script = Script([connect_error()] * 4)
    async with make_client(script, fake_clock) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.submit(REQUEST)
    assert info.value.request_sent is False


async def test_status_reads_retry_transient_failures(fake_clock: FakeClock) -> None:
    """A status read survives a reset, a 502 and a 429 within one call."""
    script = Script([read_error(), httpx.Response(502), httpx.Response(429), status("pending")])
    async with make_client(script, fake_clock) as client:
        task = await client.get_task(TASK_ID)
    assert task.status == "pending"
    assert len(script.requests) == 4


async def test_status_for_another_task_is_refused(fake_clock: FakeClock) -> None:
    """An answer about a different task is not taken for ours."""
    other = httpx.Response(200, json={"code": 200, "data": {"id": "task_other", "status": "x"}})
    async with make_client(Script([other]), fake_clock) as client:
        with pytest.raises(Exception, match="task_other"):
            await client.get_task(TASK_ID)


async def test_wait_follows_the_schedule_until_completed(fake_clock: FakeClock) -> None:
    """First read after the first delay, then paced reads; every update reported; task returned."""
    script = Script(
        [
            status("pending"),
            status("processing", progress=40),
            status("weird-new-state"),
            status("completed", progress=100, result={"videos": [{"url": "https://c/v.mp4"}]}),
        ]
    )
    seen: list[str] = []

    async def on_update(task: VideoTask) -> None:
        seen.append(task.status)

    schedule = PollSchedule(first_delay_seconds=7, min_interval_seconds=5, max_interval_seconds=10)
    async with make_client(script, fake_clock, poll_schedule=schedule) as client:
        task = await client.wait(TASK_ID, on_update=on_update)
    assert task.video_url == "https://c/v.mp4"
    assert seen == ["pending", "processing", "weird-new-state", "completed"]
    assert fake_clock.sleeps[0] == 7
    assert all(5 <= s <= 10 for s in fake_clock.sleeps[1:])


async def test_wait_resumes_without_first_delay(fake_clock: FakeClock) -> None:
    """A resumed task can be read at once."""
    done = status("completed", result={"videos": [{"url": "https://c/v.mp4"}]})
    async with make_client(Script([done]), fake_clock) as client:
        await client.wait(TASK_ID, first_poll_delay=0)
    assert fake_clock.sleeps == [0]


@pytest.mark.parametrize(
    ("final", "error"),
    [
        (
            status("failed", error={"code": "task_failed", "message": "moderation"}),
            GenerationFailedError,
        ),
        (status("cancelled"), GenerationCancelledError),
    ],
)
async def test_wait_raises_for_failed_and_cancelled(
    fake_clock: FakeClock, final: httpx.Response, error: type[Exception]
) -> None:
    """A failed task raises with the API's reason; a cancelled one raises its own error."""
    async with make_client(Script([status("processing"), final]), fake_clock) as client:
        with pytest.raises(error) as info:
            await client.wait(TASK_ID)
    if isinstance(info.value, GenerationFailedError):
        assert (info.value.error_code, info.value.error_message) == ("task_failed", "moderation")
        assert "moderation" in str(info.value)


async def test_wait_survives_failures_that_outlast_a_call(fake_clock: FakeClock) -> None:
    """A status call that fails all its retries does not end the wait; the next poll goes on."""
    policy = RetryPolicy(max_attempts=2)
    answers: list[Answer] = [read_error(), httpx.Response(503), status("completed")]
    async with make_client(Script(answers), fake_clock, retry_policy=policy) as client:
        assert (await client.wait(TASK_ID)).status == "completed"


async def test_wait_stops_on_a_refused_key(fake_clock: FakeClock) -> None:
    """A 401 while polling is not transient: raised at once."""
    async with make_client(Script([httpx.Response(401)]), fake_clock) as client:
        with pytest.raises(AuthenticationError):
            await client.wait(TASK_ID)


async def test_wait_has_an_overall_deadline(fake_clock: FakeClock) -> None:
    """A task that never finishes raises PollTimeoutError at the deadline, with its last status."""
    schedule = PollSchedule(
        first_delay_seconds=5, min_interval_seconds=5, max_interval_seconds=10, timeout_seconds=60
    )
    script = Script([status("processing", progress=1)] * 100)
    async with make_client(script, fake_clock, poll_schedule=schedule) as client:
        with pytest.raises(PollTimeoutError) as info:
            await client.wait(TASK_ID)
    assert info.value.last_status == "processing"
    assert fake_clock.now == pytest.approx(60)
    assert len(script.requests) <= 60 / 5 + 1
    assert "wait on the same task id" in str(info.value)


async def test_key_never_appears_in_errors(fake_clock: FakeClock) -> None:
    """Even when the server echoes the key in an error, no exception text carries it."""
    echo = httpx.Response(401, json={"error": {"message": f"token {KEY} is revoked"}})
    async with make_client(Script([echo]), fake_clock) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_task(TASK_ID)
    assert KEY not in str(info.value)
    assert "token [REDACTED] is revoked" in str(info.value)


def test_a_client_reads_sockets_in_pieces_of_256_kib() -> None:
    """Downloads read what asyncio hands over whole, not in httpcore's default 64 KiB pieces (a
    quarter of the trips through the HTTP stack; see benchmarks/README.md)."""
    OmniFlashClient(api_key="k", base_url="http://127.0.0.1:9")
    assert httpcore.AsyncHTTP11Connection.READ_NUM_BYTES == SOCKET_READ_BYTES == 256 * 1024
