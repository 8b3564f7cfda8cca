"""Archive keys, integrity checks and what the UI shows: the pure parts of the Prefect layer."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem
from prefect_aws import S3Bucket

from omniflash_prefect import ArchivedVideo, VideoRequest, VideoTask
from omniflash_prefect.errors import InvalidTaskIdError
from omniflash_prefect.video.archive import (
    archive_day,
    check_prefix,
    destination_of,
    looks_like_mp4,
    sidecar_key,
    staging_path,
    video_key,
)
from omniflash_prefect.video.observability import (
    artifact_key,
    link_for,
    render_summary,
    short_prompt,
)

TASK = VideoTask.model_validate(
    {
        "id": "task_01ABC",
        "status": "completed",
        "created": 1779246294,
        "completed": 1779246534,
        "cost": 0.4,
        "actual_time": 240,
    }
)


def test_video_key_is_prefix_day_task_id() -> None:
    """<prefix>/<YYYY-MM-DD of completion, UTC>/<task_id>.mp4, and the sidecar beside it."""
    key = video_key("omniflash", TASK)
    assert key == "omniflash/2026-05-20/task_01ABC.mp4"
    assert sidecar_key(key) == "omniflash/2026-05-20/task_01ABC.json"
    assert video_key("", TASK) == "2026-05-20/task_01ABC.mp4"
    assert video_key("/a/b/", TASK) == "a/b/2026-05-20/task_01ABC.mp4"


def test_archive_day_is_stable_for_a_task() -> None:
    """The day comes from the task, not the clock, so re-runs land on the same key."""
    created_only = VideoTask.model_validate({"id": "t1", "status": "completed", "created": 0})
    assert archive_day(created_only) == "1970-01-01"
    assert archive_day(TASK) == archive_day(TASK)


@pytest.mark.parametrize("prefix", ["../up", "a/../b", "a b", "a\x00b", "c:/x", "~/x"])
def test_unsafe_prefixes_are_refused(prefix: str) -> None:
    """Nothing can climb out of the storage or smuggle odd bytes into a key."""
    with pytest.raises(ValueError, match="invalid archive prefix"):
        check_prefix(prefix)


def test_unsafe_task_ids_never_become_keys() -> None:
    """A task id is validated again before it is joined into a key."""
    evil = VideoTask.model_construct(id="../../etc/passwd", status="completed")
    with pytest.raises(InvalidTaskIdError):
        video_key("omniflash", evil)


@pytest.mark.parametrize(
    ("head", "ok"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00", True),
        (b"<html><body>expired", False),
        (b"\x00\x00\x00\x20moov", False),
        (b"", False),
    ],
)
def test_mp4_sniffing(head: bytes, ok: bool) -> None:
    """An error page is never taken for a video."""
    assert looks_like_mp4(head) is ok


def test_destinations_identify_where_a_video_lands(tmp_path: Path) -> None:
    """Local paths are absolute; S3 locations are s3:// URIs with the bucket folder."""
    local = LocalFileSystem(basepath=str(tmp_path))
    assert destination_of(local, "a/b.mp4") == str(tmp_path / "a" / "b.mp4")
    bucket = S3Bucket.model_construct(bucket_name="vids", bucket_folder="renders/")
    assert destination_of(bucket, "a/b.mp4") == "s3://vids/renders/a/b.mp4"


def test_local_staging_is_beside_the_destination(tmp_path: Path) -> None:
    """A local archive stages next to the final name, so the last step is an atomic rename."""
    local = LocalFileSystem(basepath=str(tmp_path))
    staged = staging_path(local, "x/v.mp4", tmp_path / "scratch")
    assert staged.parent == tmp_path / "x"
    assert staged.name != "v.mp4"
    bucket = S3Bucket.model_construct(bucket_name="vids", bucket_folder="")
    assert staging_path(bucket, "x/v.mp4", tmp_path / "scratch") == tmp_path / "scratch" / "v.mp4"


@pytest.mark.parametrize(
    ("task_id", "key"),
    [("task_01ABC", "omniflash-progress-task-01abc"), ("A--B__c", "omniflash-progress-a--b-c")],
)
def test_artifact_keys_follow_prefect_rules(task_id: str, key: str) -> None:
    """Only lower-case letters, digits and dashes."""
    assert artifact_key("progress", task_id) == key


def test_short_prompt_and_links() -> None:
    """Prompts fold to one short line; local paths become file:// links."""
    assert short_prompt("a  b\n c") == "a b c"
    assert len(short_prompt("x" * 500)) == 60
    assert link_for("/tmp/v.mp4") == "file:///tmp/v.mp4"
    assert link_for("s3://b/k.mp4") == "s3://b/k.mp4"


def test_summary_shows_what_a_user_needs() -> None:
    """Prompt, parameters, task id, status, cost, API vs wall time, sha256 and location."""
    archived = ArchivedVideo(
        task_id="task_01ABC",
        location="/v/a.mp4",
        storage_key="a.mp4",
        sidecar_location="/v/a.json",
        sha256="f" * 64,
        size_bytes=1234,
        download_seconds=0.5,
        cost=TASK.cost,
        api_seconds=TASK.actual_time,
    )
    request = VideoRequest(prompt="a | pipe", duration=8, resolution="4K")
    markdown = render_summary(request=request, archived=archived, wall_seconds=250.0)
    for expected in [
        "a \\| pipe",
        "8 s",
        "4k",
        "task_01ABC",
        "completed",
        "0.4",
        "240 s",
        "250.0 s",
        "f" * 64,
        "file:///v/a.mp4",
    ]:
        assert expected in markdown
