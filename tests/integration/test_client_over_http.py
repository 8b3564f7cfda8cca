"""The real client over real HTTP on loopback against the emulator: success, failure, each fault."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import httpx
import pytest

from omniflash_prefect import OmniFlashClient, VideoRequest
from omniflash_prefect.core.polling import PollSchedule
from omniflash_prefect.core.protocol import error_from_response
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    DownloadError,
    GenerationFailedError,
    InvalidRequestError,
    InvalidVideoRequestError,
    PaymentRequiredError,
    PollTimeoutError,
    RateLimitedError,
    SubmissionOutcomeUnknownError,
    VideoExpiredError,
    VideoTooLargeError,
)
from tests.support.fast_client import FAST_RETRIES

REQUEST = VideoRequest(prompt="a lighthouse in a storm, waves crashing, slow aerial orbit")


def top_level_boxes(data: bytes) -> list[bytes]:
    """The MP4 top-level box types, checking they exactly cover the file."""
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        assert size >= 8
        boxes.append(kind)
        offset += size
    assert offset == len(data)
    return boxes


async def test_submit_wait_download_end_to_end(
    client: OmniFlashClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """One submit, polling that starts after the first delay, and the exact video bytes."""
    task_id = await client.submit(REQUEST)
    task = await client.wait(task_id)
    assert task.status == "completed"
    assert task.progress == 100
    assert task.cost == pytest.approx(0.24)
    assert task.video_url is not None
    video = await client.download(task.video_url, tmp_path / "out" / f"{task_id}.mp4")
    data = video.path.read_bytes()
    assert video.sha256 == hashlib.sha256(data).hexdigest() == emulator.state.video_sha256(task_id)
    assert video.size_bytes == len(data)
    assert {b"ftyp", b"moov", b"mdat"} <= set(top_level_boxes(data))
    assert not list(video.path.parent.glob("*.part"))
    assert emulator.state.submission_count == 1
    assert emulator.state.submissions == [REQUEST.to_api_body()]
    record = emulator.state.task(task_id)
    assert record.first_poll_at is not None
    assert record.first_poll_at - record.created_at >= client.poll_schedule.first_delay_seconds
    assert record.polls >= 2


@pytest.mark.parametrize(
    "fields",
    [
        {"resolution": "4K", "size": "9:16"},
        {"duration": 10, "image_urls": ["https://e.com/a.png"] * 3},
        {"duration": 4, "video_urls": ["https://e.com/motion.mp4"], "aspect_ratio": "1:1"},
    ],
)
async def test_locally_valid_requests_are_accepted_by_the_emulator(
    client: OmniFlashClient, emulator: EmulatorServer, fields: dict[str, object]
) -> None:
    """What the local rules accept, the emulator accepts too, as sent."""
    request = VideoRequest.model_validate({"prompt": "x", **fields})
    await client.submit(request)
    assert emulator.state.submissions == [request.to_api_body()]


async def test_emulator_refuses_what_the_local_rules_refuse(emulator: EmulatorServer) -> None:
    """A body that bypasses VideoRequest is refused by the emulator with the same code, and the
    answer maps to InvalidRequestError."""
    with pytest.raises(InvalidVideoRequestError) as local:
        VideoRequest(prompt="x", duration=7)
    async with httpx.AsyncClient(base_url=emulator.base_url) as raw:
        response = await raw.post(
            "/v1/videos/generations",
            json={"model": "Omni-Flash-Ext", "prompt": "x", "duration": 7},
            headers={"Authorization": f"Bearer {emulator.api_key}"},
        )
    mapped = error_from_response(response)
    assert isinstance(mapped, InvalidRequestError)
    assert mapped.code == local.value.code == "invalid_duration"


async def test_failed_generation_raises_with_the_api_reason(
    client: OmniFlashClient, emulator: EmulatorServer
) -> None:
    """A task the provider fails raises GenerationFailedError carrying its code and message."""
    emulator.config.task_failure_rate = 1.0
    task_id = await client.submit(REQUEST)
    with pytest.raises(GenerationFailedError) as info:
        await client.wait(task_id)
    assert info.value.task_id == task_id
    assert info.value.error_code == "task_failed"
    assert info.value.error_message


async def test_wrong_key_is_refused(emulator: EmulatorServer) -> None:
    """401 becomes AuthenticationError, and the wrong key is not in the message."""
    async with OmniFlashClient("sk-wrong-key-xyz", base_url=emulator.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.submit(REQUEST)
    assert "sk-wrong-key-xyz" not in str(info.value)
    assert emulator.state.submission_count == 0


async def test_low_balance_is_payment_required(
    client: OmniFlashClient, emulator: EmulatorServer
) -> None:
    """402 when the balance cannot pay; nothing is created."""
    emulator.config.balance = 0.01
    with pytest.raises(PaymentRequiredError):
        await client.submit(REQUEST)
    assert emulator.state.submission_count == 0


async def test_rate_limits_are_retried_with_retry_after(
    client: OmniFlashClient, emulator: EmulatorServer
) -> None:
    """429s with Retry-After are waited out; in the end exactly one task exists."""
    emulator.config.rate_limit_rate = 0.6
    emulator.config.retry_after_seconds = 0.01
    task_ids = [await client.submit(REQUEST) for _ in range(3)]
    assert len(set(task_ids)) == 3
    assert emulator.state.submission_count == 3
    assert emulator.state.submission_attempts > 3


async def test_persistent_rate_limit_raises_after_the_attempts(
    client: OmniFlashClient, emulator: EmulatorServer
) -> None:
    """429 on every try: RateLimitedError after max_attempts, no task."""
    emulator.config.rate_limit_rate = 1.0
    with pytest.raises(RateLimitedError):
        await client.submit(REQUEST)
    assert emulator.state.submission_attempts == FAST_RETRIES.max_attempts
    assert emulator.state.submission_count == 0


async def test_gateway_error_on_submit_is_not_resent(
    client: OmniFlashClient, emulator: EmulatorServer
) -> None:
    """A 502 on submit is ambiguous: one attempt, SubmissionOutcomeUnknownError."""
    emulator.config.server_error_rate = 1.0
    with pytest.raises(SubmissionOutcomeUnknownError) as info:
        await client.submit(REQUEST)
    assert emulator.state.submission_attempts == 1
    assert info.value.fingerprint == REQUEST.fingerprint()


async def test_polling_survives_gateway_errors_and_rate_limits(
    client: OmniFlashClient, emulator: EmulatorServer
) -> None:
    """502s and 429s while polling slow the loop down but the video is still noticed."""
    task_id = await client.submit(REQUEST)
    emulator.config.server_error_rate = 0.3
    emulator.config.rate_limit_rate = 0.3
    task = await client.wait(task_id)
    assert task.status == "completed"


async def test_slow_answers_time_out(emulator: EmulatorServer) -> None:
    """An answer slower than the read timeout: a status read gives APITimeoutError after its
    retries; a submit gives SubmissionOutcomeUnknownError after one attempt."""
    emulator.config.latency_seconds = 0.5
    async with OmniFlashClient(
        emulator.api_key, base_url=emulator.base_url, timeout=0.1, retry_policy=FAST_RETRIES
    ) as client:
        with pytest.raises(APITimeoutError):
            await client.get_balance()
        with pytest.raises(SubmissionOutcomeUnknownError) as info:
            await client.submit(REQUEST)
    assert isinstance(info.value.cause, APITimeoutError)
    assert emulator.state.submission_attempts == 1


async def test_poll_deadline_holds_when_every_call_hangs(emulator: EmulatorServer) -> None:
    """Status reads that never answer in time still end in PollTimeoutError, not a hang."""
    schedule = PollSchedule(
        first_delay_seconds=0, min_interval_seconds=0, max_interval_seconds=0, timeout_seconds=0.3
    )
    async with OmniFlashClient(
        emulator.api_key, base_url=emulator.base_url, poll_schedule=schedule, timeout=0.5
    ) as client:
        task_id = await client.submit(REQUEST)
        emulator.config.latency_seconds = 3.0
        with pytest.raises(PollTimeoutError) as info:
            await client.wait(task_id)
    assert info.value.task_id == task_id


async def test_unreachable_api_is_a_connection_error(tmp_path: Path) -> None:
    """Nothing listening: APIConnectionError saying the request was never sent."""
    with EmulatorServer() as server:
        base_url = server.base_url
    async with OmniFlashClient("k", base_url=base_url, retry_policy=FAST_RETRIES) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.submit(REQUEST)
    assert info.value.request_sent is False


async def test_interrupted_downloads_resume_to_the_exact_bytes(
    client: OmniFlashClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Two cut transfers are resumed with Range requests; the result is byte-exact."""
    emulator.config.video_size_bytes = 3 * 1024 * 1024
    emulator.config.drop_first_downloads = 2
    task_id = await client.submit(REQUEST)
    task = await client.wait(task_id)
    assert task.video_url is not None
    video = await client.download(task.video_url, tmp_path / "v.mp4")
    assert video.size_bytes == 3 * 1024 * 1024
    assert video.sha256 == emulator.state.video_sha256(task_id)
    assert hashlib.sha256((tmp_path / "v.mp4").read_bytes()).hexdigest() == video.sha256
    assert emulator.state.downloads(task_id) == 3


async def test_downloads_that_keep_breaking_give_up_without_a_file(
    client: OmniFlashClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """More cuts than attempts: DownloadError, and neither the file nor a .part is left."""
    emulator.config.drop_first_downloads = 100
    task = await client.wait(await client.submit(REQUEST))
    assert task.video_url is not None
    with pytest.raises(DownloadError, match="gave up"):
        await client.download(task.video_url, tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


async def test_expired_url_is_refused(
    client: OmniFlashClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A URL past its expiry raises VideoExpiredError and writes nothing."""
    emulator.config.url_ttl_seconds = 0
    task = await client.wait(await client.submit(REQUEST))
    assert task.video_url is not None
    with pytest.raises(VideoExpiredError, match="read the task again"):
        await client.download(task.video_url, tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


async def test_videos_over_the_cap_are_refused(emulator: EmulatorServer, tmp_path: Path) -> None:
    """A video larger than max_download_bytes is refused from its Content-Length."""
    emulator.config.video_size_bytes = 2 * 1024 * 1024
    async with OmniFlashClient(
        emulator.api_key,
        base_url=emulator.base_url,
        max_download_bytes=1024 * 1024,
        poll_schedule=PollSchedule(0.05, 0.02, 0.05, 30),
    ) as client:
        task = await client.wait(await client.submit(REQUEST))
        assert task.video_url is not None
        with pytest.raises(VideoTooLargeError):
            await client.download(task.video_url, tmp_path / "v.mp4")
    assert list(tmp_path.iterdir()) == []


async def test_balance_of_key_and_account(
    client: OmniFlashClient, emulator: EmulatorServer
) -> None:
    """Both balance endpoints are read; spending shows up in them."""
    before = await client.get_balance()
    await client.submit(REQUEST)
    after = await client.get_balance(account=True)
    assert before.remain_balance == pytest.approx(100)
    assert after.remain_balance == pytest.approx(100 - 0.24)
    assert not after.unlimited


async def test_upload_image_returns_a_url_that_serves_it(
    client: OmniFlashClient, tmp_path: Path
) -> None:
    """A local PNG is uploaded; the URL serves the same bytes back."""
    image = tmp_path / "frame.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    url = await client.upload_image(image)
    async with httpx.AsyncClient() as raw:
        fetched = await raw.get(url)
    assert fetched.content == image.read_bytes()
    VideoRequest(prompt="x", image_urls=[url])


async def test_upload_refuses_non_images_before_sending(
    client: OmniFlashClient, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """A text file or a missing file is refused locally."""
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InvalidVideoRequestError, match="not a JPEG"):
        await client.upload_image(text)
    with pytest.raises(InvalidVideoRequestError, match="not a readable file"):
        await client.upload_image(tmp_path / "missing.png")
    assert emulator.state.snapshot()["uploads"] == []
