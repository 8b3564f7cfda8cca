"""Video downloads as a CDN serves them: ranges, signed expiring URLs, and cut transfers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.types import Message

from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.emulator.downloads import (
    RangeNotSatisfiableError,
    VideoResponse,
    parse_byte_range,
)
from omniflash_prefect.emulator.videos import iter_video_chunks, video_layout

from .helpers import FakeClock, submit, task_data, top_level_boxes, video_url


async def _completed_task(client: httpx.AsyncClient, clock: FakeClock) -> str:
    task_id = await submit(client)
    clock.advance(10.0)
    return task_id


async def _partial_then_error(client: httpx.AsyncClient, url: str) -> bytes:
    """Stream ``url`` expecting the transfer to break; return the bytes that did arrive."""
    received = bytearray()
    try:
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_bytes():
                received += chunk
    except httpx.RemoteProtocolError:
        return bytes(received)
    raise AssertionError(f"the download was not cut ({len(received)} bytes arrived)")


async def _partial_then_read_timeout(
    client: httpx.AsyncClient,
    url: str,
    *,
    read_timeout: float,
    headers: dict[str, str] | None = None,
) -> bytes:
    """Stream ``url`` expecting it to stall past ``read_timeout``; return the bytes that arrived."""
    received = bytearray()
    timeout = httpx.Timeout(5.0, read=read_timeout)
    try:
        async with client.stream("GET", url, headers=headers, timeout=timeout) as response:
            assert response.status_code in (200, 206)
            async for chunk in response.aiter_bytes():
                received += chunk
    except httpx.ReadTimeout:
        return bytes(received)
    raise AssertionError(f"the download did not stall ({len(received)} bytes arrived)")


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


async def test_cut_download_raises_and_a_range_request_completes_it(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A cut download makes httpx raise (no silent short body); a Range resume gets the rest."""
    emulator.config.drop_first_downloads = 1
    emulator.config.video_size_bytes = 1_000_000
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)

    head = await _partial_then_error(client, url)
    assert 0 < len(head) < 1_000_000
    assert len(head) == 500_000  # about half of what the attempt would have sent

    rest = await client.get(url, headers={"Range": f"bytes={len(head)}-"})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {len(head)}-999999/1000000"
    video = head + rest.content
    assert hashlib.sha256(video).hexdigest() == emulator.state.video_sha256(task_id)
    record = emulator.state.task(task_id)
    assert (record.downloads, record.completed_downloads) == (2, 1)


async def test_first_downloads_are_cut_per_task(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """drop_first_downloads counts attempts per task: each task's first N are cut, then OK."""
    emulator.config.drop_first_downloads = 2
    first = await _completed_task(client, clock)
    second = await _completed_task(client, clock)
    for task_id in (first, second):
        url = await video_url(client, task_id)
        await _partial_then_error(client, url)
        await _partial_then_error(client, url)
        assert (await client.get(url)).status_code == 200
        assert emulator.state.downloads(task_id) == 3


async def test_download_drop_rate_cuts_random_attempts(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """download_drop_rate 1.0 cuts every attempt, resumed ranges included."""
    emulator.config.download_drop_rate = 1.0
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)
    head = await _partial_then_error(client, url)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(url, headers={"Range": f"bytes={len(head)}-"})
    assert emulator.state.task(task_id).completed_downloads == 0


async def test_cut_downloads_log_nothing(
    emulator: EmulatorServer,
    client: httpx.AsyncClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An intended cut is not reported by uvicorn as an 'Exception in ASGI application'."""
    emulator.config.drop_first_downloads = 1
    task_id = await _completed_task(client, clock)
    with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
        await _partial_then_error(client, await video_url(client, task_id))
    assert [r for r in caplog.records if r.name.startswith("uvicorn")] == []


async def test_range_requests(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Range answers 206 with Content-Range and exactly the requested bytes."""
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)
    full = (await client.get(url)).content
    size = len(full)
    cases = {
        "bytes=100-199": (100, 200),
        "bytes=100-": (100, size),
        "bytes=-50": (size - 50, size),
        f"bytes=0-{size * 10}": (0, size),
        f"bytes={size - 1}-{size - 1}": (size - 1, size),
    }
    for header, (start, end) in cases.items():
        response = await client.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.headers["content-length"] == str(end - start)
        assert response.content == full[start:end]


async def test_ignore_range_serves_the_whole_file(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With ignore_range, a Range request gets the whole file as a 200, as some CDNs answer."""
    emulator.config.ignore_range = True
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)
    response = await client.get(url, headers={"Range": "bytes=100-"})
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert hashlib.sha256(response.content).hexdigest() == emulator.state.video_sha256(task_id)


@pytest.mark.parametrize("start", [0, 2, 6, 100])
async def test_serve_non_mp4_renames_the_first_box(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock, start: int
) -> None:
    """With serve_non_mp4, bytes 4-8 read 'junk' instead of 'ftyp' (in any range that covers
    them); every other byte and the size are the video's."""
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)
    genuine = (await client.get(url)).content
    assert genuine[4:8] == b"ftyp"
    emulator.config.serve_non_mp4 = True
    served = (await client.get(url, headers={"Range": f"bytes={start}-"})).content
    expected = genuine[:4] + b"junk" + genuine[8:]
    assert served == expected[start:]


async def test_unsatisfiable_range_is_416(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A range starting at or past the end answers 416 with the size in Content-Range."""
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)
    size = emulator.state.video_size(task_id)
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
        response = await client.get(url, headers={"Range": header})
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-9", (0, 10)),
        ("BYTES=5-", (5, 1000)),
        ("bytes=-10", (990, 1000)),
        ("bytes=-5000", (0, 1000)),
        ("bytes=990-5000", (990, 1000)),
        ("bytes=9-0", None),
        ("bytes=0-1,5-6", None),
        ("items=0-9", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_byte_range(header: str | None, expected: tuple[int, int] | None) -> None:
    """Single ranges become [start, end); forms the server does not serve are ignored."""
    assert parse_byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_parse_byte_range_unsatisfiable(header: str) -> None:
    """Ranges that start at or past the end cannot be satisfied."""
    with pytest.raises(RangeNotSatisfiableError):
        parse_byte_range(header, 1000)


async def test_head_gives_headers_without_counting_a_download(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """HEAD tells the size without a body and is not counted as a download attempt."""
    task_id = await _completed_task(client, clock)
    response = await client.head(await video_url(client, task_id))
    assert response.status_code == 200
    assert response.headers["content-length"] == str(emulator.state.video_size(task_id))
    assert response.content == b""
    assert emulator.state.downloads(task_id) == 0


async def test_expired_url_is_403_and_a_fresh_read_gives_a_new_one(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A URL is refused with S3's AccessDenied XML once its ttl has passed; reading the task again
    hands out a new, working URL."""
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)
    clock.advance(86399.0)
    assert (await client.get(url)).status_code == 200
    clock.advance(1.0)
    expired = await client.get(url)
    assert expired.status_code == 403
    assert expired.headers["content-type"] == "application/xml"
    assert (
        "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
        in expired.text
    )
    fresh = await video_url(client, task_id)
    assert fresh != url
    assert (await client.get(fresh)).status_code == 200


async def test_zero_ttl_urls_are_born_expired(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With url_ttl_seconds 0 the handed-out URL is already expired."""
    emulator.config.url_ttl_seconds = 0.0
    task_id = await _completed_task(client, clock)
    data = await task_data(client, task_id)
    assert data["result"]["videos"][0]["expires_at"] == int(clock.now)
    assert (await client.get(data["result"]["videos"][0]["url"][0])).status_code == 403


async def test_tampered_url_is_403(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """Changing the signature or stretching the expiry invalidates the signed URL."""
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)
    signature = parse_qs(urlsplit(url).query)["sig"][0]
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    forged_sig = ("0" if signature[0] != "0" else "1") + signature[1:]
    for tampered in (
        _with_query(url, sig=forged_sig),
        _with_query(url, expires=str(expires + 86400)),
        _with_query(url, expires="soon"),
        url.split("?")[0],
    ):
        response = await client.get(tampered)
        assert response.status_code == 403, tampered
        assert "<Code>AccessDenied</Code>" in response.text


async def test_unknown_or_unfinished_video_is_404(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """There is no file for an unknown task, nor for one still running."""
    finished = await _completed_task(client, clock)
    url = await video_url(client, finished)
    running = await submit(client)
    for other in ("task_01KS1H7ZYSJWH1N779S2FSHTKA", running):
        response = await client.get(url.replace(finished, other))
        assert response.status_code == 404
        assert "<Code>NoSuchKey</Code>" in response.text


async def test_video_of_a_requested_size(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """video_size_bytes gives valid MP4s of exactly that size, different for each task."""
    emulator.config.video_size_bytes = 5_000_000
    first = await _completed_task(client, clock)
    second = await _completed_task(client, clock)
    digests = set()
    for task_id in (first, second):
        response = await client.get(await video_url(client, task_id))
        assert response.headers["content-length"] == "5000000"
        assert len(response.content) == 5_000_000
        boxes = top_level_boxes(response.content)
        assert [kind for kind, _ in boxes][-1] == "free"
        assert {"ftyp", "moov", "mdat"} <= {kind for kind, _ in boxes}
        digest = hashlib.sha256(response.content).hexdigest()
        assert digest == emulator.state.video_sha256(task_id)
        digests.add(digest)
    assert len(digests) == 2


async def test_video_size_is_fixed_at_submit(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Changing video_size_bytes later does not change the video of an accepted task."""
    emulator.config.video_size_bytes = 400_000
    task_id = await _completed_task(client, clock)
    emulator.config.video_size_bytes = None
    response = await client.get(await video_url(client, task_id))
    assert len(response.content) == 400_000


async def test_download_stops_when_the_client_goes_away() -> None:
    """Once the server reports a disconnect, streaming stops and the download is not counted
    as completed (it would otherwise generate the rest of a large video for nobody)."""
    size = 5_000_000
    gone = asyncio.Event()
    messages: list[Message] = []
    completed: list[str] = []

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)
        if message["type"] == "http.response.body":
            gone.set()
            await asyncio.sleep(0)  # let the server notice, as it would between socket writes

    response = VideoResponse(
        await asyncio.to_thread(video_layout, "task_01KS1H7ZYSJWH1N779S2FSHTKA", size),
        (0, size),
        partial=False,
        cut=False,
        on_complete=lambda: completed.append("done"),
    )
    await response({"type": "http", "method": "GET"}, receive, send)
    assert [message["type"] for message in messages] == [
        "http.response.start",
        "http.response.body",
    ]
    assert completed == []


async def test_stalled_download_times_out_a_client_after_half_the_body(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With download_stall_seconds, half the body arrives and then nothing: a client with a
    shorter read timeout gets ReadTimeout, and the abandoned download never counts as complete."""
    emulator.config.video_size_bytes = 1_000_000
    emulator.config.download_stall_seconds = 0.6
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)

    received = await _partial_then_read_timeout(client, url, read_timeout=0.15)
    assert len(received) == 500_000
    assert received == b"".join(iter_video_chunks(task_id, 1_000_000, 0, 500_000))

    # Had the server missed the disconnect, it would finish sending after the 0.6 s stall.
    completed = emulator.state.wait_until(
        lambda state: state.task(task_id).completed_downloads > 0, timeout=1.2
    )
    assert not completed
    record = emulator.state.task(task_id)
    assert (record.downloads, record.completed_downloads) == (1, 0)


async def test_short_stall_delays_a_download_that_then_completes(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A stall shorter than the read timeout only delays the video: it arrives byte-exact."""
    emulator.config.video_size_bytes = 1_000_000
    emulator.config.download_stall_seconds = 0.2
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)

    started = time.monotonic()
    response = await client.get(url, timeout=httpx.Timeout(5.0))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == emulator.state.video_sha256(task_id)
    assert elapsed >= 0.2  # the stall did happen
    # Counted by the server once its last chunk is handed over, maybe just after the read.
    assert await asyncio.to_thread(
        emulator.state.wait_until, lambda state: state.task(task_id).completed_downloads == 1, 10
    )


async def test_stall_applies_to_range_requests_too(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A resumed (Range) download also stalls after half of what it sends."""
    emulator.config.video_size_bytes = 1_000_000
    emulator.config.download_stall_seconds = 0.6
    task_id = await _completed_task(client, clock)
    url = await video_url(client, task_id)

    received = await _partial_then_read_timeout(
        client, url, read_timeout=0.15, headers={"Range": "bytes=200000-"}
    )
    assert received == b"".join(iter_video_chunks(task_id, 1_000_000, 200_000, 600_000))
