"""Every file of ``examples/`` run as a user would start from it: against the emulator on
loopback, on the test Prefect server, checking what ended up archived.

The examples are imported by name when a test runs (not at collection), as a user's script is.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image
from prefect.client.orchestration import get_client

from omniflash_prefect.emulator import EmulatorServer
from tests.support.s3 import Bucket


@pytest.fixture
def s3_bucket(moto_s3: str, aws_env: None) -> Bucket:
    """A fresh bucket on moto with a saved S3Bucket block (folder ``renders``), saved from sync
    code as the examples' tests are."""
    made = Bucket(moto_s3)
    made.block.save(made.block_name)
    return made


def example(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module (its ``__main__`` part does not run)."""
    return importlib.import_module(f"examples.{name}")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


REPO = Path(__file__).resolve().parents[2]


def test_quickstart_archives_the_video_it_paid_for(
    emulator: EmulatorServer, block: str, fast_settings: Path
) -> None:
    """The README's and the home page's example: one submission, the video archived intact in
    the default archive directory, and checked to be the 4 s 720p landscape video asked for."""
    archived = example("quickstart").quickstart("A paper boat", credentials_block=block)

    assert emulator.state.submission_count == 1
    path = Path(archived.location)
    assert path.is_relative_to(fast_settings / "omniflash")
    assert path.name == f"{archived.task_id}.mp4"
    assert sha256_of(path.read_bytes()) == emulator.state.video_sha256(archived.task_id)
    assert archived.media is not None
    assert archived.media.describe() == "ok"


def test_the_readme_shows_the_quickstart_as_it_is() -> None:
    """The README cannot include a file, so it carries a copy: the copy is the file."""
    code = (REPO / "examples" / "quickstart.py").read_text(encoding="utf-8")
    assert f"```python\n{code}```" in (REPO / "README.md").read_text(encoding="utf-8")


def test_csv_flow_makes_one_video_per_row(
    emulator: EmulatorServer, block: str, fast_settings: Path, tmp_path: Path
) -> None:
    """Three CSV rows, one of them with only a prompt: three videos of the shapes the rows ask
    for, archived under the example's prefix, byte for byte the emulator's."""
    csv_file = tmp_path / "products.csv"
    csv_file.write_text(
        "prompt,duration,resolution,aspect_ratio\n"
        "A red sneaker turning on a plinth,4,720p,16:9\n"
        "A blue backpack on a trail,6,1080p,9:16\n"
        "A green kettle on a stove,,,\n",
        encoding="utf-8",
    )

    videos = example("csv_flow").csv_videos(str(csv_file), credentials_block=block)

    assert emulator.state.submission_count == 3
    assert [video.prompt for video in videos] == [
        "A red sneaker turning on a plinth",
        "A blue backpack on a trail",
        "A green kettle on a stove",
    ]
    shapes = []
    for video in videos:
        path = Path(video.location)
        assert path.is_relative_to(fast_settings / "csv")
        assert sha256_of(path.read_bytes()) == video.sha256
        assert video.sha256 == emulator.state.video_sha256(video.task_id)
        assert video.media is not None
        assert video.media.verdict == "ok", video.media
        assert video.media.facts is not None
        facts = video.media.facts
        shapes.append((round(facts.duration_seconds or 0), facts.width, facts.height))
    assert shapes == [(4, 1280, 720), (6, 1080, 1920), (4, 1280, 720)]
    assert sorted(s["duration"] for s in emulator.state.submissions) == [4, 4, 6]


def test_local_image_flow_uploads_the_image_and_animates_it(
    emulator: EmulatorServer, block: str, fast_settings: Path, tmp_path: Path
) -> None:
    """The local PNG is uploaded once, its URL is the request's one image, and the video that
    request paid for is archived intact under the example's prefix."""
    image = tmp_path / "boat.png"
    Image.new("RGB", (64, 48), (200, 80, 40)).save(image)

    archived = asyncio.run(
        example("local_image_flow").animate_image(
            str(image), "The paper boat drifts across the pond", credentials_block=block
        )
    )

    (submission,) = emulator.state.submissions
    (image_url,) = submission["image_urls"]
    (upload,) = emulator.state.snapshot()["uploads"]
    assert image_url.endswith(f"/uploads/{upload['name']}")
    stored = emulator.state.upload(upload["name"])
    assert stored is not None
    assert stored.data == image.read_bytes()
    path = Path(archived.location)
    assert path.is_relative_to(fast_settings / "animated")
    assert sha256_of(path.read_bytes()) == emulator.state.video_sha256(archived.task_id)


def test_scheduled_serve_runs_once_and_serves_a_valid_schedule(
    emulator: EmulatorServer, block: str, fast_settings: Path
) -> None:
    """Run directly, the served flow archives the day's teaser, and a second run the same day
    pays for nothing more; the arguments the example serves with make a deployment the server
    accepts, with the cron schedule and parameters the example names."""
    module = example("scheduled_serve")
    serve = module.SERVE

    first = module.daily_teaser("a lighthouse at dawn", credentials_block=block)
    second = module.daily_teaser("a lighthouse at dawn", credentials_block=block)

    assert first == second
    assert emulator.state.submission_count == 1
    (task_id,) = emulator.state.snapshot()["tasks"]
    video = Path(first)
    assert video.is_relative_to(fast_settings / "teasers")
    assert video.name == f"{task_id}.mp4"
    assert sha256_of(video.read_bytes()) == emulator.state.video_sha256(task_id)

    module.daily_teaser.validate_parameters(serve["parameters"])
    deployment_id = module.daily_teaser.to_deployment(**serve).apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    assert deployment.name == serve["name"]
    assert deployment.parameters == serve["parameters"]
    assert set(serve["tags"]) <= set(deployment.tags)
    (schedule,) = deployment.schedules
    assert getattr(schedule.schedule, "cron", None) == serve["cron"]
    assert schedule.active


def test_s3_batch_reads_its_manifest_from_s3_and_archives_there(
    emulator: EmulatorServer, block: str, s3_bucket: Bucket
) -> None:
    """The manifest is read from the bucket; every row's video lands in the same bucket, under
    the block's folder and the example's prefix, byte for byte the emulator's; the same batch id
    again resumes from the records without a call to pay for anything."""
    rows = [
        {"id": "sku-1", "prompt": "A red sneaker turning on a plinth", "duration": 4},
        {"id": "sku-2", "prompt": "A blue backpack on a trail", "duration": 6},
    ]
    s3_bucket.s3.put_object(
        Bucket=s3_bucket.name,
        Key="renders/manifests/nightly.jsonl",
        Body="".join(json.dumps(row) + "\n" for row in rows).encode(),
    )
    s3_batch = example("s3_batch").s3_batch
    bucket_block = f"s3-bucket/{s3_bucket.block_name}"

    report = s3_batch(
        "manifests/nightly.jsonl", "nightly-1", bucket_block=bucket_block, credentials_block=block
    )

    assert report.ok, report.headline()
    assert [(item.id, item.status) for item in report.items] == [
        ("sku-1", "archived"),
        ("sku-2", "archived"),
    ]
    assert emulator.state.submission_count == 2
    stored = s3_bucket.keys()
    videos = sorted(key for key in stored if key.endswith(".mp4"))
    assert len(videos) == 2
    for item in report.items:
        assert item.task_id is not None
        (key,) = [key for key in videos if key.endswith(f"/{item.task_id}.mp4")]
        assert key.startswith("renders/nightly/")
        assert item.location is not None
        assert item.location.endswith(key)
        data = s3_bucket.read(key)
        assert sha256_of(data) == item.sha256 == emulator.state.video_sha256(item.task_id)

    again = s3_batch(
        "manifests/nightly.jsonl", "nightly-1", bucket_block=bucket_block, credentials_block=block
    )

    assert again.ok
    assert emulator.state.submission_count == 2
    assert [item.task_id for item in again.items] == [item.task_id for item in report.items]
