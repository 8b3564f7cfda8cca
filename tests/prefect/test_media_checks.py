"""Is each archived video the one that was paid for? On a real Prefect server, against the
emulator's real H.264 files over loopback: the shape as asked, a different shape, a file no
reader can open, strict mode, and the previews beside the video, locally and in S3."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from omniflash_prefect import ArchivedVideo, generate_video, generate_video_batch
from omniflash_prefect.cli import app
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import MediaCheckError
from omniflash_prefect.video.observability import artifact_key
from tests.support.s3 import Bucket
from tests.support.server_reads import omniflash_events, run_artifacts

DANCER = "a dancer on a rooftop at dusk"
#: The request of the user's case: 6 s, 1080p, portrait.
PORTRAIT_1080P: dict[str, Any] = {
    "prompt": DANCER,
    "duration": 6,
    "resolution": "1080p",
    "aspect_ratio": "9:16",
}


def image_size(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        return image.size


async def test_a_video_as_asked_is_checked_previewed_and_shown(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """The user's case: 6 s, 1080p, 9:16. The file is read as 1080x1920, about 6 s; its poster
    and contact sheet sit beside it, are listed in the sidecar and embedded in the summary."""
    state = await generate_video(
        **PORTRAIT_1080P, credentials_block=credentials_block, return_state=True
    )
    archived = await state.aresult()
    assert isinstance(archived, ArchivedVideo)
    media = archived.media
    assert media is not None
    assert media.verdict == "ok", media.describe()
    assert media.facts is not None
    assert (media.facts.width, media.facts.height, media.facts.codec) == (1080, 1920, "h264")
    assert media.facts.duration_seconds == pytest.approx(6, abs=0.5)

    video = Path(archived.location)
    assert set(archived.preview_keys) == {"poster", "contact_sheet"}
    poster = video.with_name(f"{archived.task_id}.poster.jpg")
    sheet = video.with_name(f"{archived.task_id}.contact-sheet.jpg")
    assert image_size(poster.read_bytes()) == (270, 480)  # portrait, 480 on the long side
    assert image_size(sheet.read_bytes()) == (2 * 135, 2 * 240)
    sidecar = json.loads(Path(archived.sidecar_location).read_text())
    assert sidecar["media"]["verdict"] == "ok"
    assert sidecar["media"]["facts"]["height"] == 1920
    assert sidecar["previews"] == archived.preview_keys

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    artifacts = {a.key: a for a in await run_artifacts(flow_run_id)}
    summary = str(artifacts[artifact_key("summary", archived.task_id)].data)
    assert "| Media check | as asked |" in summary
    assert f"![poster of {archived.task_id}](data:image/jpeg;base64," in summary
    assert f"![contact sheet of {archived.task_id}](data:image/jpeg;base64," in summary
    assert len(summary) < 64 * 1024 + 4096


async def test_a_video_not_as_asked_is_a_flagged_warning(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """Without strict mode the run completes; the summary, the record and an event say what
    differs, with the asked and the delivered values."""
    emulator.config.serve_wrong_shape = True
    state = await generate_video(
        **PORTRAIT_1080P, credentials_block=credentials_block, return_state=True
    )
    assert state.is_completed()
    archived = await state.aresult()
    assert isinstance(archived, ArchivedVideo)
    assert archived.media is not None
    assert archived.media.verdict == "mismatch"
    fields = {mismatch.field for mismatch in archived.media.mismatches}
    assert "resolution" in fields or "duration" in fields or "orientation" in fields

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    artifacts = {a.key: a for a in await run_artifacts(flow_run_id)}
    summary = str(artifacts[artifact_key("summary", archived.task_id)].data)
    assert summary.startswith("# Video generated: not as asked")

    events = await omniflash_events(archived.task_id, {"archived", "mismatch"})
    (mismatch,) = [e for e in events if e.event == "omniflash.video.mismatch"]
    assert mismatch.payload["verdict"] == "mismatch"
    assert mismatch.payload["location"] == archived.location
    listed = {entry["field"]: entry for entry in mismatch.payload["mismatches"]}
    assert set(listed) == fields
    for entry in listed.values():
        assert entry["asked"]
        assert entry["delivered"]
    related = {r.id for r in mismatch.related}
    assert f"prefect.flow-run.{flow_run_id}" in related


async def test_strict_media_fails_the_run_after_the_video_is_stored(
    emulator: EmulatorServer, credentials_block: str, fast_settings: Path
) -> None:
    """The paid file is kept and recorded: running again with the same key downloads nothing."""
    emulator.config.serve_wrong_shape = True
    arguments = {
        **PORTRAIT_1080P,
        "credentials_block": credentials_block,
        "idempotency_key": "strict-dancer",
        "strict_media": True,
    }
    state = await generate_video(**arguments, return_state=True)
    assert state.is_failed()
    error = await state.aresult(raise_on_failure=False)
    assert isinstance(error, MediaCheckError)
    stored = Path(error.location)
    assert stored.is_file()
    assert stored.is_relative_to(fast_settings)
    assert stored.with_suffix(".json").is_file()
    assert "mismatch" in error.problem
    downloads = emulator.state.downloads(error.task_id)

    again = await generate_video(**arguments, return_state=True)
    assert again.is_failed()
    assert emulator.state.submission_count == 1
    assert emulator.state.downloads(error.task_id) == downloads

    relaxed = await generate_video(**{**arguments, "strict_media": False})
    assert relaxed.location == error.location


async def test_an_unreadable_file_is_archived_and_marked(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """A file with an MP4 signature that no reader can open was paid for: it is kept, marked
    unreadable with the reason, and has no previews; strict mode fails on it."""
    emulator.config.serve_unreadable_mp4 = True
    state = await generate_video(
        prompt=DANCER, credentials_block=credentials_block, return_state=True
    )
    archived = await state.aresult()
    assert archived.media is not None
    assert archived.media.verdict == "unreadable"
    assert archived.media.reason
    assert archived.preview_keys == {}
    assert Path(archived.location).stat().st_size == archived.size_bytes
    sidecar = json.loads(Path(archived.sidecar_location).read_text())
    assert sidecar["media"]["verdict"] == "unreadable"

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    artifacts = {a.key: a for a in await run_artifacts(flow_run_id)}
    summary = str(artifacts[artifact_key("summary", archived.task_id)].data)
    assert summary.startswith("# Video generated: unreadable video\n")
    events = await omniflash_events(archived.task_id, {"archived", "unreadable"})
    names = {event.event for event in events}
    assert "omniflash.video.mismatch" not in names
    (flagged,) = [e for e in events if e.event == "omniflash.video.unreadable"]
    assert flagged.payload["verdict"] == "unreadable"
    assert flagged.payload["reason"] == archived.media.reason
    assert flagged.payload["location"] == archived.location
    assert f"prefect.flow-run.{flow_run_id}" in {r.id for r in flagged.related}

    with pytest.raises(MediaCheckError, match="unreadable"):
        await generate_video(
            prompt=DANCER + ", again", credentials_block=credentials_block, strict_media=True
        )


async def test_previews_go_beside_the_video_in_s3(
    emulator: EmulatorServer, credentials_block: str, bucket: Bucket
) -> None:
    archived = await generate_video(
        prompt=DANCER,
        duration=4,
        resolution="720p",
        credentials_block=credentials_block,
        storage_block=f"s3-bucket/{bucket.block_name}",
    )
    assert archived.media is not None
    assert archived.media.verdict == "ok"
    video_key = f"renders/{archived.storage_key}"
    for kind, name in (("poster", "poster"), ("contact_sheet", "contact-sheet")):
        assert archived.preview_keys[kind] == archived.storage_key.replace(".mp4", f".{name}.jpg")
        body = bucket.read(video_key.replace(".mp4", f".{name}.jpg"))
        width, height = image_size(body)
        assert width > height  # 16:9
    sidecar = json.loads(bucket.read(video_key.replace(".mp4", ".json")))
    assert sidecar["previews"] == archived.preview_keys


async def test_a_strict_batch_ends_failed_once_every_row_is_archived(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    emulator.config.serve_wrong_shape = True
    state = await generate_video_batch(
        requests=[{"id": f"row-{i}", "prompt": f"{DANCER} {i}"} for i in range(3)],
        credentials_block=credentials_block,
        strict_media=True,
        return_state=True,
    )
    assert state.is_failed()
    report = await state.aresult(raise_on_failure=False)
    assert report.ok  # every row archived
    assert [item.id for item in report.media_flagged] == ["row-0", "row-1", "row-2"]
    assert "3 not as asked" in report.headline()
    assert emulator.state.submission_count == 3

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    artifacts = {a.key: a for a in await run_artifacts(flow_run_id)}
    summary = str(artifacts[artifact_key("batch-summary", report.batch_id)].data)
    assert "## Videos not as asked" in summary
    gallery = summary.partition("## Gallery")[2]
    assert "The first 3 of 3 videos." in gallery
    for item in report.items:
        assert item.task_run_id is not None
        assert f"![{item.id}](data:image/jpeg;base64," in gallery
        assert f"/runs/task-run/{item.task_run_id})" in gallery


def test_the_command_line_reports_the_check_and_exits_5_when_strict(
    emulator: EmulatorServer, block: str
) -> None:
    """``--json`` carries the verdict; a mismatch exits 0 unless ``--strict-media``, which
    exits 5 and still names where the paid video is."""
    emulator.config.serve_wrong_shape = True
    asked = [DANCER, "--duration", "6", "--resolution", "1080p", "--aspect-ratio", "9:16"]
    relaxed = CliRunner().invoke(app, ["generate", "--json", *asked, "--credentials-block", block])
    assert relaxed.exit_code == 0, relaxed.stdout
    report = json.loads(relaxed.stdout)
    assert report["status"] == "archived"
    assert report["media"]["verdict"] == "mismatch"
    assert report["media"]["mismatches"]

    strict = CliRunner().invoke(
        app,
        ["generate", "--json", *asked, "--credentials-block", block, "--strict-media"],
    )
    assert strict.exit_code == 5, strict.stdout
    failed = json.loads(strict.stdout)
    assert failed["status"] == "not_as_asked"
    assert failed["error_type"] == "MediaCheckError"
    assert Path(failed["location"]).is_file()
    assert failed["media_problem"].startswith("mismatch:")

    text = CliRunner().invoke(
        app, ["generate", *asked, "--credentials-block", block], env={"COLUMNS": "200"}
    )
    assert text.exit_code == 0
    assert "media:    mismatch:" in text.stdout
