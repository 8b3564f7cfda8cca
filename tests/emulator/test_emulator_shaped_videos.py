"""Over HTTP: each task's video has the shape it asked for, unless a media fault says otherwise.

Videos are probed from their headers (``av.open`` reads the index, nothing is decoded).
"""

from __future__ import annotations

import hashlib
import io

import av
import httpx
import pytest

from omniflash_prefect.emulator import EmulatorServer, VideoShape, video_sha256
from omniflash_prefect.emulator.clips import clip_bytes
from omniflash_prefect.emulator.videos import ftyp_box, min_video_size

from .helpers import FakeClock, body, error_code, submit, top_level_boxes, video_url

PORTRAIT = {"duration": 6, "resolution": "1080p", "aspect_ratio": "9:16"}
PORTRAIT_SHAPE = VideoShape(6, "1080p", "9:16")


def _probe(data: bytes) -> tuple[int, int, float, str]:
    """Width, height, seconds and codec, from the container and stream headers alone."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert container.duration is not None
        return stream.width, stream.height, container.duration / 1e6, stream.codec_context.name


async def _download(client: httpx.AsyncClient, clock: FakeClock, task_id: str) -> bytes:
    clock.advance(10.0)
    response = await client.get(await video_url(client, task_id))
    assert response.status_code == 200
    return response.content


async def test_a_1080p_portrait_video_reads_back_as_asked(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """6 s, 1080p, 9:16 is served as a 1080x1920, 6 s H.264 MP4 whose hash is predictable."""
    task_id = await submit(client, **PORTRAIT)
    video = await _download(client, clock, task_id)
    width, height, seconds, codec = _probe(video)
    assert (width, height, codec) == (1080, 1920, "h264")
    assert seconds == pytest.approx(6.0, abs=0.1)
    digest = hashlib.sha256(video).hexdigest()
    assert digest == emulator.state.video_sha256(task_id)
    assert digest == video_sha256(task_id, shape=PORTRAIT_SHAPE)
    assert emulator.state.task(task_id).shape == PORTRAIT_SHAPE


async def test_a_padded_shaped_video_is_exact_and_resumes_from_any_offset(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """video_size_bytes pads the shaped clip to exactly that size, the padding hides nothing
    from a reader, and a Range from inside the clip or the padding gives the same bytes."""
    emulator.config.video_size_bytes = 2_000_000
    task_id = await submit(client, **PORTRAIT)
    video = await _download(client, clock, task_id)
    assert len(video) == 2_000_000 == emulator.state.video_size(task_id)
    assert top_level_boxes(video)[-1] == ("free", 2_000_000 - len(clip_bytes(PORTRAIT_SHAPE)))
    assert _probe(video)[:2] == (1080, 1920)
    assert hashlib.sha256(video).hexdigest() == emulator.state.video_sha256(task_id)

    url = await video_url(client, task_id)
    for start in (len(clip_bytes(PORTRAIT_SHAPE)) - 5, 1_500_001):
        resumed = await client.get(url, headers={"Range": f"bytes={start}-"})
        assert resumed.status_code == 206
        assert resumed.headers["content-range"] == f"bytes {start}-1999999/2000000"
        assert resumed.content == video[start:]


async def test_a_size_too_small_for_the_clip_is_refused_at_submit(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """An exact size that cannot hold the asked clip answers 400 before anything is charged;
    the same size is fine for the wrong-shape fault, whose sample clip fits."""
    emulator.config.video_size_bytes = min_video_size()
    response = await client.post("/v1/videos/generations", json=body(**PORTRAIT))
    assert response.status_code == 400
    assert error_code(response) == "invalid_request_error"
    message = response.json()["error"]["message"]
    assert "video_size_bytes" in message
    assert "1080x1920" in message
    assert emulator.state.submission_count == 0
    assert emulator.state.used_balance() == 0

    emulator.config.serve_wrong_shape = True
    await submit(client, **PORTRAIT)
    assert emulator.state.submission_count == 1


async def test_the_wrong_shape_fault_serves_the_sample_and_is_fixed_at_submit(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With serve_wrong_shape, a 6 s 1080x1920 request gets the 1 s 320x180 sample; turning the
    fault off later does not change that task, and the next task is served as asked."""
    emulator.config.serve_wrong_shape = True
    faulty = await submit(client, **PORTRAIT)
    emulator.config.serve_wrong_shape = False
    fine = await submit(client, **PORTRAIT)

    wrong = await _download(client, clock, faulty)
    width, height, seconds, _ = _probe(wrong)
    assert (width, height) == (320, 180)
    assert seconds == pytest.approx(1.0, abs=0.1)
    assert hashlib.sha256(wrong).hexdigest() == emulator.state.video_sha256(faulty)
    assert emulator.state.snapshot()["tasks"][faulty]["video_fault"] == "wrong_shape"

    right = await _download(client, clock, fine)
    assert _probe(right)[:2] == (1080, 1920)


async def test_the_unreadable_fault_has_an_mp4_signature_and_nothing_readable(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With serve_unreadable_mp4 (which wins over serve_wrong_shape), the file starts with a
    valid ftyp box, no demuxer reads it, its hash is predictable and ranges still work."""
    emulator.config.serve_unreadable_mp4 = True
    emulator.config.serve_wrong_shape = True
    task_id = await submit(client, **PORTRAIT)
    video = await _download(client, clock, task_id)
    assert emulator.state.task(task_id).video_fault == "unreadable_mp4"
    assert video.startswith(ftyp_box())
    assert video[4:8] == b"ftyp"
    with pytest.raises(av.error.FFmpegError):
        _probe(video)
    assert hashlib.sha256(video).hexdigest() == emulator.state.video_sha256(task_id)

    resumed = await client.get(await video_url(client, task_id), headers={"Range": "bytes=30-"})
    assert resumed.status_code == 206
    assert resumed.content == video[30:]
