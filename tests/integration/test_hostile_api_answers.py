"""The client against a hostile provider. Bodies of API answers: oversized, endless, compressed,
malformed, contradictory; each a typed error or a sensible reading.

The scripted servers and answers are in :mod:`tests.support.hostile_answers`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from omniflash_prefect import OmniFlashError, VideoTask
from omniflash_prefect.client import MAX_API_ANSWER_BYTES
from omniflash_prefect.core.polling import PollSchedule
from omniflash_prefect.core.retry import RetryPolicy
from omniflash_prefect.errors import (
    AuthenticationError,
    DownloadError,
    NotFoundError,
    PaymentRequiredError,
    PollTimeoutError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
)
from tests.support.clock import FakeClock
from tests.support.hostile_answers import (
    ENDLESS,
    SMALL_VIDEO,
    TASK_ID,
    answer_bytes,
    answer_in_turn,
    answer_json,
    client_for,
    completed,
    serve_video,
    status,
)
from tests.support.hostile_server import Exchange, HostileServer, Reply


async def test_a_status_answer_of_megabytes_is_refused() -> None:
    """5 MB of valid-looking JSON with a Content-Length: UnexpectedResponseError at the cap,
    asked once (not retried)."""
    padding = "x" * (5 * 1024 * 1024)
    body = json.dumps(status(status="processing", padding=padding)).encode()
    async with HostileServer(answer_bytes(body)) as server, client_for(server) as client:
        with pytest.raises(UnexpectedResponseError, match=str(MAX_API_ANSWER_BYTES)):
            await client.get_task(TASK_ID)
    assert len(server.exchanges) == 1


async def test_an_endless_chunked_answer_is_cut_off_at_the_cap() -> None:
    """A chunked answer with no length that never ends: UnexpectedResponseError, and the client
    hangs up instead of reading on (the server sees it leave mid-stream)."""

    async def endless(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="application/json", chunked=True)
        await reply.chunk(b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "pad": "')
        while True:
            await reply.chunk(b"x" * 65536)

    async with HostileServer(endless) as server, client_for(server) as client:
        async with asyncio.timeout(ENDLESS):
            with pytest.raises(UnexpectedResponseError, match=str(MAX_API_ANSWER_BYTES)):
                await client.get_task(TASK_ID)
        await server.exchanges[0].finished()
    assert server.exchanges[0].client_left
    assert len(server.exchanges) == 1


async def test_a_compressed_answer_that_inflates_past_the_cap_is_refused() -> None:
    """A gzip answer of 50 KB that inflates to 50 MB is refused at the cap like a large one."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "pad": "'
    bomb = packer.compress(head + b"x" * (50 * 1024 * 1024)) + packer.flush()

    async def handler(exchange: Exchange, reply: Reply) -> None:
        headers = [("Content-Encoding", "gzip")]
        await reply.send(200, bomb, headers, content_type="application/json")

    async with HostileServer(handler) as server, client_for(server) as client:
        with pytest.raises(UnexpectedResponseError, match=str(MAX_API_ANSWER_BYTES)):
            await client.get_task(TASK_ID)


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "text/html", "not JSON"),
        (b"", "application/json", "not JSON"),
        (b'{"code": 200, "data": {"id": "', "application/json", "not JSON"),
        (b"\xff\xfe\x00{}", "application/json", "not JSON"),
        (b"[1, 2, 3]", "application/json", "list"),
        (b'"ok"', "application/json", "str"),
        (b"NaN", "application/json", "float"),
        (b'{"code": 200}', "application/json", "no 'data'"),
        (b'{"code": 200, "data": "nope"}', "application/json", "unexpected shape"),
        (b'{"code": 200, "data": [{"id": "x"}]}', "application/json", "unexpected shape"),
        (b'{"code": 200, "data": {"status": "completed"}}', "application/json", "id"),
        (
            b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'"}}',
            "application/json",
            "status",
        ),
        (
            b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "status": null}}',
            "application/json",
            "status",
        ),
        (
            b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "status": 5}}',
            "application/json",
            "status",
        ),
        (
            b'{"code": 200, "data": {"id": "task_other", "status": "completed"}}',
            "application/json",
            "task_other",
        ),
    ],
    ids=[
        "html",
        "empty",
        "truncated",
        "not-utf8",
        "list",
        "string",
        "nan",
        "no-data",
        "data-string",
        "data-list",
        "no-id",
        "no-status",
        "null-status",
        "number-status",
        "other-task",
    ],
)
async def test_unreadable_status_answers_are_typed_errors(
    body: bytes, content_type: str, match: str
) -> None:
    """Whatever the body of an HTTP 200, get_task raises UnexpectedResponseError saying why,
    never a KeyError, TypeError or AttributeError."""
    async with (
        HostileServer(answer_bytes(body, content_type)) as server,
        client_for(server) as client,
    ):
        with pytest.raises(UnexpectedResponseError, match=match):
            await client.get_task(TASK_ID)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (402, PaymentRequiredError),
        (404, NotFoundError),
        (429, RateLimitedError),
        (500, ServerError),
        (999, ServerError),
    ],
)
async def test_an_error_code_inside_an_http_200_maps_like_its_status(
    code: int, error: type[OmniFlashError]
) -> None:
    """``{"code": 401, ...}`` in an HTTP 200 is an AuthenticationError, 429 a RateLimitedError,
    and so on; a code outside 4xx/5xx is a gateway failure."""
    body = {"code": code, "message": "from inside the envelope", "data": None}
    async with HostileServer(answer_json(body)) as server, client_for(server) as client:
        with pytest.raises(error, match="from inside the envelope"):
            await client.get_task(TASK_ID)


async def test_polling_survives_a_429_inside_an_http_200_but_stops_on_a_401() -> None:
    """While polling, a rate limit inside the envelope is waited out; a refused key is not."""
    done = completed("https://cdn.test/v.mp4")
    limited = {"code": 429, "message": "slow down"}
    async with (
        HostileServer(answer_in_turn(limited, limited, done)) as server,
        client_for(server) as client,
    ):
        task = await client.wait(TASK_ID, first_poll_delay=0)
    assert task.video_url == "https://cdn.test/v.mp4"
    assert len(server.exchanges) == 3

    refused = {"code": 401, "message": "key revoked"}
    async with HostileServer(answer_json(refused)) as server, client_for(server) as client:
        with pytest.raises(AuthenticationError):
            await client.wait(TASK_ID, first_poll_delay=0)
    assert len(server.exchanges) == 1


async def test_odd_progress_values_are_read_sensibly() -> None:
    """Progress going backwards, above 100, negative, a string or junk is clamped or dropped,
    and the poll goes on to the completed task."""
    answers = [
        status(status="processing", progress=50),
        status(status="processing", progress=20),
        status(status="processing", progress=150),
        status(status="processing", progress=-5),
        status(status="processing", progress="abc"),
        status(status="processing", progress="60"),
        status(status="processing", progress=[1]),
        completed("https://cdn.test/v.mp4"),
    ]
    seen: list[int | None] = []

    async def on_update(task: VideoTask) -> None:
        seen.append(task.progress)

    async with HostileServer(answer_in_turn(*answers)) as server, client_for(server) as client:
        task = await client.wait(TASK_ID, first_poll_delay=0, on_update=on_update)
    assert task.status == "completed"
    assert seen == [50, 20, 100, 0, None, 60, None, 100]


@pytest.mark.parametrize(
    "data",
    [
        b'"progress": Infinity, "result": {"videos": [{"url": ["https://cdn.test/v.mp4"]}]}',
        b'"progress": 1e999, "result": {"videos": [{"url": ["https://cdn.test/v.mp4"]}]}',
        b'"result": {"videos": [{"url": ["https://cdn.test/v.mp4"], "expires_at": 1e999}]}',
    ],
    ids=["progress-Infinity", "progress-1e999", "expires_at-1e999"],
)
async def test_infinite_numbers_in_a_status_answer_are_read_sensibly(data: bytes) -> None:
    """An infinite progress or expiry is junk read as 100 or None: the completed video is still
    noticed, never an OverflowError out of the poll loop."""
    body = b'{"code": 200, "data": {"id": "' + TASK_ID.encode() + b'", "status": "completed", '
    async with (
        HostileServer(answer_bytes(body + data + b"}}")) as server,
        client_for(server) as client,
    ):
        task = await client.wait(TASK_ID, first_poll_delay=0)
    assert task.video_url == "https://cdn.test/v.mp4"
    assert task.progress in (None, 100)
    assert task.video_expires_at is None


@pytest.mark.parametrize("code", [200, 400])
async def test_deeply_nested_json_is_an_unreadable_answer(code: int) -> None:
    """100,000 nested arrays (200 KB, under the size cap) are an unreadable answer: a typed
    APIError, never a RecursionError."""
    body = b"[" * 100_000 + b"]" * 100_000
    async with (
        HostileServer(answer_bytes(body, code=code)) as server,
        client_for(server) as client,
    ):
        with pytest.raises(UnexpectedResponseError if code == 200 else OmniFlashError):
            await client.get_task(TASK_ID)


@pytest.mark.parametrize(
    "result",
    [
        None,
        {},
        {"videos": []},
        {"videos": [{"url": []}]},
        {"videos": [{"url": None}]},
        {"videos": [{"url": 5}]},
        {"videos": [{"url": ["", 3, None]}]},
        {"videos": "nope"},
    ],
)
async def test_completed_without_a_video_url_is_a_download_error(
    result: dict[str, Any] | None, tmp_path: Path
) -> None:
    """A completed task with no usable URL reads with ``video_url`` None; archiving it reads the
    task once more, then raises DownloadError (nothing staged)."""
    body = status(status="completed", progress=100)
    if result is not None:
        body["data"]["result"] = result
    staged = tmp_path / "staged.mp4"
    async with HostileServer(answer_json(body)) as server, client_for(server) as client:
        task = await client.get_task(TASK_ID)
        assert task.phase == "completed"
        assert task.video_url is None
        with pytest.raises(DownloadError, match="no video URL"):
            await client.download_task(task, staged)
    assert server.paths == [f"/v1/tasks/{TASK_ID}"] * 2
    assert not staged.exists()


async def test_of_two_videos_the_first_url_of_the_first_video_with_one_is_archived(
    tmp_path: Path,
) -> None:
    """With several videos (and several URLs), the first URL of the first video that has one is
    downloaded; the others are never fetched."""
    video = serve_video(SMALL_VIDEO)

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if exchange.path.startswith("/v1/tasks/"):
            first, second, third = (server.url(f"/{n}.mp4") for n in ("first", "second", "third"))
            result = {"videos": [{"url": []}, {"url": [first, second]}, {"url": third}]}
            await reply.json(status(status="completed", result=result))
        else:
            await video(exchange, reply)

    staged = tmp_path / "staged.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        task = await client.get_task(TASK_ID)
        source, downloaded = await client.download_task(task, staged)
    assert source.video_url == server.url("/first.mp4")
    assert len(source.videos) == 3
    assert server.paths == [f"/v1/tasks/{TASK_ID}", "/first.mp4"]
    assert downloaded.sha256 == hashlib.sha256(SMALL_VIDEO).hexdigest()


async def test_polling_a_server_that_only_answers_garbage_ends_at_the_deadline(
    fake_clock: FakeClock,
) -> None:
    """Garbage on every poll (wrong shapes, hostile or foreign ids claiming completion, 5xx, error
    codes in the envelope) neither ends nor extends the wait: PollTimeoutError at the deadline."""
    hostile_done = {
        "code": 200,
        "data": {"id": "../../x", "status": "completed", "result": {"videos": [{"url": "x"}]}},
    }
    other_done = {"code": 200, "data": {"id": "task_other", "status": "completed"}}
    garbage: list[tuple[int, str, bytes]] = [
        (200, "text/html", b"<html>maintenance</html>"),
        (200, "application/json", b"[]"),
        (200, "application/json", b'"ok"'),
        (200, "application/json", b'{"code": 200}'),
        (200, "application/json", b'{"code": 200, "data": 7}'),
        (200, "application/json", json.dumps(hostile_done).encode()),
        (200, "application/json", json.dumps(other_done).encode()),
        (200, "application/json", b'{"code": 200, "data": {'),
        (200, "application/json", b""),
        (502, "text/html", b"<html>Bad Gateway</html>"),
        (200, "application/json", b'{"code": 503, "message": "busy"}'),
        (200, "application/json", b'{"code": 429, "message": "slow"}'),
    ]
    served: list[int] = []

    async def handler(exchange: Exchange, reply: Reply) -> None:
        index = len(served) % len(garbage)
        served.append(index)
        code, content_type, body = garbage[index]
        await reply.send(code, body, content_type=content_type)

    schedule = PollSchedule(
        first_delay_seconds=5, min_interval_seconds=5, max_interval_seconds=10, timeout_seconds=300
    )
    async with (
        HostileServer(handler) as server,
        client_for(
            server,
            poll_schedule=schedule,
            retry_policy=RetryPolicy(max_attempts=2),
            sleep=fake_clock.sleep,
            clock=fake_clock,
        ) as client,
    ):
        with pytest.raises(PollTimeoutError) as info:
            await client.wait(TASK_ID)
    assert info.value.last_status is None
    assert fake_clock.now == pytest.approx(300, abs=10)
    assert set(served) == set(range(len(garbage)))
    assert len(server.exchanges) <= 2 * (300 / 5 + 1)
