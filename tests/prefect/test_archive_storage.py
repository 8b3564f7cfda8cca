"""Archiving into local directories and S3 (moto's server mode), through expiry and broken links."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest
from prefect import flow

from omniflash_prefect import (
    ArchivedVideo,
    VideoRequest,
    VideoTask,
    archive_video,
    generate_video,
    poll_video,
    submit_video,
)
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.errors import DownloadError, VideoExpiredError
from omniflash_prefect.video.credentials import load_client
from tests.support.s3 import Bucket
from tests.support.server_reads import omniflash_events

PROMPT = "Rain on a tin roof, macro shot, shallow depth of field"


async def test_dropped_download_is_resumed_into_the_archive(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """Two cut transfers of a 2 MiB video are resumed; the archive is byte-exact, no .part left."""
    emulator.config.video_size_bytes = 2 * 1024 * 1024
    emulator.config.drop_first_downloads = 2
    archived = await generate_video(prompt=PROMPT, credentials_block=credentials_block)
    assert archived.size_bytes == 2 * 1024 * 1024
    assert archived.sha256 == emulator.state.video_sha256(archived.task_id)
    folder = Path(archived.location).parent
    assert sorted(p.name.partition(".")[2] for p in folder.iterdir()) == [
        "contact-sheet.jpg",
        "json",
        "mp4",
        "poster.jpg",
    ]


async def test_expired_url_refuses_after_one_fresh_read(
    emulator: EmulatorServer, credentials_block: str, fast_settings: Path
) -> None:
    """URLs that are always expired: VideoExpiredError, nothing archived, and the task id is left
    in the run's events for a later resume."""
    emulator.config.url_ttl_seconds = 0
    with pytest.raises(VideoExpiredError):
        await generate_video(prompt=PROMPT, credentials_block=credentials_block)
    (task_id,) = list(emulator.state.snapshot()["tasks"])
    assert emulator.state.task(task_id).completed_downloads == 0
    assert not list(fast_settings.rglob("*.mp4"))
    events = await omniflash_events(task_id, {"submitted", "completed"})
    assert {e.event for e in events} >= {"omniflash.video.submitted", "omniflash.video.completed"}


def test_archive_renews_a_url_that_expired_while_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video archived a day after it completed: the stale URL is refused, one re-read gives a
    fresh one, and the archive completes."""
    offset = [0.0]
    with EmulatorServer(
        EmulatorConfig(job_seconds=0.2), clock=lambda: time.time() + offset[0]
    ) as emu:
        monkeypatch.setenv("OMNIFLASH_API_KEY", emu.api_key)
        monkeypatch.setenv("OMNIFLASH_BASE_URL", emu.base_url)

        @flow
        async def late_archive() -> tuple[VideoTask, ArchivedVideo]:
            task_id = await submit_video(VideoRequest(prompt=PROMPT))
            done = await poll_video(task_id)
            offset[0] = 2 * 86400.0  # the provider's clock moves past the URL's expiry
            return done, await archive_video(done)

        done, archived = asyncio.run(late_archive())
        assert done.video_expires_at is not None
        assert archived.source_expires_at is not None
        assert archived.source_expires_at > done.video_expires_at + 86400
        assert archived.sha256 == emu.state.video_sha256(archived.task_id)
        # Counted by the server once its last chunk is handed over, maybe just after the read.
        assert emu.state.wait_until(
            lambda state: state.task(archived.task_id).completed_downloads == 1, 10
        )


async def test_archive_to_s3_block_is_byte_exact_and_multipart(
    emulator: EmulatorServer, credentials_block: str, bucket: Bucket
) -> None:
    """A 12 MiB video goes to an S3Bucket block (multipart), with its sidecar, byte-exact."""
    s3 = bucket.s3
    size = 12 * 1024 * 1024
    emulator.config.video_size_bytes = size
    archived = await generate_video(
        prompt=PROMPT,
        credentials_block=credentials_block,
        storage_block=f"s3-bucket/{bucket.block_name}",
        archive_prefix="campaign/spring",
    )
    key = f"renders/{archived.storage_key}"
    assert archived.location == f"s3://{bucket.name}/{key}"
    assert archived.storage_key.startswith("campaign/spring/")
    stored = s3.get_object(Bucket=bucket.name, Key=key)
    body = stored["Body"].read()
    assert len(body) == size
    assert (
        hashlib.sha256(body).hexdigest()
        == archived.sha256
        == emulator.state.video_sha256(archived.task_id)
    )
    assert "-" in stored["ETag"], "uploaded in parts, not from one in-memory buffer"
    sidecar = json.loads(
        s3.get_object(Bucket=bucket.name, Key=key.removesuffix(".mp4") + ".json")["Body"].read()
    )
    assert sidecar["sha256"] == archived.sha256
    assert sidecar["video"] == archived.location


async def test_s3_download_broken_for_good_leaves_no_object_and_no_pending_upload(
    emulator: EmulatorServer,
    credentials_block: str,
    bucket: Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every transfer of a 40 MiB video is cut half way: the
    archive fails with DownloadError, and the bucket holds neither an object nor an upload."""
    monkeypatch.setenv("OMNIFLASH_DOWNLOAD_ATTEMPTS", "2")
    emulator.config.video_size_bytes = 40 * 1024 * 1024
    emulator.config.drop_first_downloads = 1_000
    with pytest.raises(DownloadError, match="gave up after 2 attempts"):
        await generate_video(
            prompt=PROMPT,
            credentials_block=credentials_block,
            storage_block=f"s3-bucket/{bucket.block_name}",
        )
    (task_id,) = list(emulator.state.snapshot()["tasks"])
    assert emulator.state.downloads(task_id) == 2
    assert bucket.keys() == []
    assert bucket.pending_uploads() == []


async def test_s3_refuses_a_body_that_is_not_an_mp4(
    emulator: EmulatorServer, credentials_block: str, bucket: Bucket
) -> None:
    """A whole, well-framed 20 MiB body that is not an MP4: refused after the download, and
    nothing reaches the bucket (no object, no pending upload)."""
    emulator.config.video_size_bytes = 20 * 1024 * 1024
    emulator.config.serve_non_mp4 = True
    with pytest.raises(DownloadError, match="not an MP4"):
        await generate_video(
            prompt=PROMPT,
            credentials_block=credentials_block,
            storage_block=f"s3-bucket/{bucket.block_name}",
        )
    assert bucket.keys() == []
    assert bucket.pending_uploads() == []


async def test_s3_archive_is_byte_exact_when_the_server_ignores_range_after_a_cut(
    emulator: EmulatorServer, credentials_block: str, bucket: Bucket
) -> None:
    """The first transfer is cut half way, the resume's Range is ignored (a 200 with the whole
    file): the download starts over, and the object is the video exactly."""
    size = 24 * 1024 * 1024
    emulator.config.video_size_bytes = size
    emulator.config.drop_first_downloads = 1
    emulator.config.ignore_range = True
    archived = await generate_video(
        prompt=PROMPT,
        credentials_block=credentials_block,
        storage_block=f"s3-bucket/{bucket.block_name}",
    )
    assert emulator.state.downloads(archived.task_id) == 2
    key = f"renders/{archived.storage_key}"
    body = bucket.s3.get_object(Bucket=bucket.name, Key=key)["Body"].read()
    assert (
        hashlib.sha256(body).hexdigest()
        == archived.sha256
        == emulator.state.video_sha256(archived.task_id)
    )
    assert bucket.pending_uploads() == []


async def test_storage_block_name_needs_its_type(credentials_block: str) -> None:
    """'videos' alone is ambiguous: a clear error before anything is submitted."""
    with pytest.raises(ValueError, match="block-type-slug"):
        await generate_video(
            prompt=PROMPT, credentials_block=credentials_block, storage_block="videos"
        )


async def test_load_client_prefers_the_named_block(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A named block wins over settings."""
    async with await load_client(credentials_block) as client:
        assert client.base_url == emulator.base_url
