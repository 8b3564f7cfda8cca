"""The client against a hostile provider. Downloads: lengths that lie, stalls, servers that ignore
Range, error pages, videos over the cap.

The scripted servers and answers are in :mod:`tests.support.hostile_answers`.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest

from omniflash_prefect import OmniFlashClient
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import DownloadError, VideoTooLargeError
from tests.support.fast_client import FAST_RETRIES, FAST_SCHEDULE
from tests.support.hostile_answers import (
    ENDLESS,
    REQUEST,
    SMALL_VIDEO,
    VIDEO,
    Resolver,
    answer_bytes,
    assert_nothing_left,
    client_for,
    serve_video,
)
from tests.support.hostile_server import Exchange, HostileServer, Reply


async def test_bytes_beyond_the_announced_length_are_never_written(tmp_path: Path) -> None:
    """A server that writes more than its Content-Length: the body is the announced bytes (HTTP
    framing), so exactly those are kept and hashed; the surplus never reaches the file."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="video/mp4", content_length=len(SMALL_VIDEO))
        await reply.raw(SMALL_VIDEO + b"SURPLUS" * 10_000)

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        downloaded = await client.download(server.url("/v.mp4"), destination)
    assert destination.read_bytes() == SMALL_VIDEO
    assert (downloaded.size_bytes, downloaded.sha256) == (
        len(SMALL_VIDEO),
        hashlib.sha256(SMALL_VIDEO).hexdigest(),
    )
    assert not destination.with_name("v.mp4.part").exists()


async def test_a_body_longer_than_the_expected_size_is_refused(tmp_path: Path) -> None:
    """A chunked body longer than the size the caller expects: DownloadError, nothing kept."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="video/mp4", chunked=True)
        await reply.chunk(SMALL_VIDEO + b"SURPLUS")
        await reply.last_chunk()

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        with pytest.raises(DownloadError, match="announced"):
            await client.download(server.url("/v.mp4"), destination, expected_size=len(SMALL_VIDEO))
    assert_nothing_left(destination)


async def test_a_body_shorter_than_announced_is_retried_then_refused(tmp_path: Path) -> None:
    """A server that announces N bytes, sends half and closes: each attempt is retried, then
    DownloadError after ``download_attempts``, and nothing is kept."""

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="video/mp4", content_length=len(SMALL_VIDEO))
        await reply.raw(SMALL_VIDEO[: len(SMALL_VIDEO) // 2])

    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(handler) as server,
        client_for(server, download_attempts=3) as client,
    ):
        with pytest.raises(DownloadError, match="gave up after 3 attempts"):
            await client.download(server.url("/v.mp4"), destination)
    assert len(server.exchanges) == 3
    assert_nothing_left(destination)


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
async def test_a_body_without_a_length_is_downloaded_and_hashed(
    framing: str, tmp_path: Path
) -> None:
    """No Content-Length (chunked in uneven pieces, or read until the server closes): the exact
    bytes are kept and hashed, no ``.part`` remains and the download carries no API key."""
    body = VIDEO[: 1536 * 1024 + 7]

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if framing == "chunked":
            await reply.head(200, content_type="video/mp4", chunked=True)
            offset = 0
            for size in [1, 7, 4096, 65_535, 1024 * 1024]:
                await reply.chunk(body[offset : offset + size])
                offset += size
            await reply.chunk(body[offset:])
            await reply.last_chunk()
        else:
            await reply.head(200, content_type="video/mp4")
            await reply.raw(body)

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        downloaded = await client.download(server.url("/v.mp4"), destination)
    assert destination.read_bytes() == body
    assert downloaded.size_bytes == len(body)
    assert downloaded.sha256 == hashlib.sha256(body).hexdigest()
    assert list(destination.parent.iterdir()) == [destination]
    assert "authorization" not in server.exchanges[0].headers


async def test_a_download_stalling_mid_body_is_resumed(tmp_path: Path) -> None:
    """A server that stalls after 2.5 MiB: the read timeout fires, the download resumes with a
    Range request and the result is byte-exact."""
    stall_at = 5 * 512 * 1024
    video = serve_video(VIDEO)

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if "range" in exchange.headers or len(server.exchanges) > 1:
            await video(exchange, reply)
            return
        await reply.head(200, content_type="video/mp4", content_length=len(VIDEO))
        await reply.raw(VIDEO[:stall_at])
        await reply.stall()

    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(handler) as server,
        client_for(server, timeout=httpx.Timeout(1.0, read=0.3)) as client,
    ):
        downloaded = await client.download(server.url("/v.mp4"), destination)
    assert downloaded.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert destination.read_bytes() == VIDEO
    assert len(server.exchanges) == 2
    resumed_at = int(server.exchanges[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= stall_at
    assert not destination.with_name("v.mp4.part").exists()


async def test_a_server_ignoring_range_after_a_cut_restarts_from_byte_zero(
    tmp_path: Path,
) -> None:
    """The first answer is cut after 1 MiB; the resume asks for a Range but gets the whole file
    as a 200: the client starts over, and the file and hash are the video, not 1 MiB twice."""
    cut_at = 1024 * 1024

    async def handler(exchange: Exchange, reply: Reply) -> None:
        await reply.head(200, content_type="video/mp4", content_length=len(VIDEO))
        if len(server.exchanges) == 1:
            await reply.raw(VIDEO[:cut_at])  # then the connection closes: a cut transfer
            return
        await reply.raw(VIDEO)

    destination = tmp_path / "out" / "v.mp4"
    async with HostileServer(handler) as server, client_for(server) as client:
        downloaded = await client.download(server.url("/v.mp4"), destination)
    assert [e.headers.get("range") for e in server.exchanges] == [None, f"bytes={cut_at}-"]
    assert destination.read_bytes() == VIDEO
    assert (downloaded.size_bytes, downloaded.sha256) == (
        len(VIDEO),
        hashlib.sha256(VIDEO).hexdigest(),
    )
    assert list(destination.parent.iterdir()) == [destination]


async def test_a_download_that_always_stalls_gives_up(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The emulator's stall fault on every attempt: DownloadError after ``download_attempts``
    read timeouts, and nothing is kept."""
    emulator.config.download_stall_seconds = 60
    destination = tmp_path / "out" / "v.mp4"
    async with OmniFlashClient(
        emulator.api_key,
        base_url=emulator.base_url,
        timeout=httpx.Timeout(1.0, read=0.3),
        download_attempts=3,
        retry_policy=FAST_RETRIES,
        poll_schedule=FAST_SCHEDULE,
        resolve=Resolver(),
    ) as client:
        task = await client.wait(await client.submit(REQUEST))
        assert task.video_url is not None
        with pytest.raises(DownloadError, match="gave up after 3 attempts"):
            await client.download(task.video_url, destination)
    assert emulator.state.downloads(task.id) == 3
    assert_nothing_left(destination)


@pytest.mark.parametrize(
    "content_type",
    ["text/html", "text/html; charset=utf-8", "TEXT/PLAIN", "application/json", "application/xml"],
)
async def test_an_error_page_is_never_archived(content_type: str, tmp_path: Path) -> None:
    """A 200 whose Content-Type is a page or an API answer is refused at once (DownloadError,
    not retried), and nothing is kept."""
    page = b"<html><body>Your link has expired</body></html>"
    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(answer_bytes(page, content_type)) as server,
        client_for(server) as client,
    ):
        with pytest.raises(DownloadError, match="not a video"):
            await client.download(server.url("/v.mp4"), destination)
    assert len(server.exchanges) == 1
    assert_nothing_left(destination)


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked-endless"])
async def test_a_video_over_the_cap_is_refused(announced: bool, tmp_path: Path) -> None:
    """Over ``max_download_bytes``: refused from the Content-Length before reading the body, or
    while streaming an endless chunked body (the client hangs up); nothing is kept."""
    cap = 256 * 1024

    async def handler(exchange: Exchange, reply: Reply) -> None:
        if announced:
            await reply.head(200, content_type="video/mp4", content_length=cap + 1)
            await reply.stall()  # the client must decide from the header alone
            return
        await reply.head(200, content_type="video/mp4", chunked=True)
        while True:
            await reply.chunk(SMALL_VIDEO)

    destination = tmp_path / "out" / "v.mp4"
    async with (
        HostileServer(handler) as server,
        client_for(server, max_download_bytes=cap, timeout=ENDLESS) as client,
    ):
        async with asyncio.timeout(ENDLESS):
            with pytest.raises(VideoTooLargeError):
                await client.download(server.url("/v.mp4"), destination)
        await server.exchanges[0].finished()
    assert len(server.exchanges) == 1
    assert server.exchanges[0].client_left or announced
    assert_nothing_left(destination)
