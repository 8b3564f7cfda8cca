"""What the UI shows of a video's check and previews: the run's summary, the batch's table,
summary and gallery, and the bounds that keep them light (no Prefect server needed)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from pathlib import Path

import pytest
from PIL import Image
from prefect.filesystems import LocalFileSystem

from omniflash_prefect import ArchivedVideo, BatchItem, BatchReport, VideoRequest
from omniflash_prefect.batches.flow import (
    GALLERY_BYTES,
    GALLERY_VIDEOS,
    gallery_thumbnails,
)
from omniflash_prefect.batches.report import report_markdown, report_table
from omniflash_prefect.core.media import MediaFacts, judge, unreadable
from omniflash_prefect.media.inspection import (
    EMBED_BUDGET_BYTES,
    data_uri,
    thumbnail,
    within_embed_budget,
)
from omniflash_prefect.video.observability import render_summary

LOGGER = logging.getLogger("omniflash-test-gallery")
REQUEST = VideoRequest(prompt="a dancer", duration=6, resolution="1080p", aspect_ratio="9:16")


def jpeg(width: int, height: int, *, noise: bool = False) -> bytes:
    """A JPEG; with ``noise``, one that does not compress (to reach byte bounds quickly)."""
    if noise:
        image = Image.frombytes("RGB", (width, height), _noise(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (200, 40, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _noise(size: int) -> bytes:
    state = 12345
    out = bytearray(size)
    for index in range(size):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out[index] = state >> 23
    return bytes(out)


def archived(check_facts: MediaFacts | None = None, **fields: object) -> ArchivedVideo:
    media = judge(check_facts, REQUEST) if check_facts is not None else unreadable("bad data")
    return ArchivedVideo(
        task_id="task_01ABC",
        location="/v/task_01ABC.mp4",
        storage_key="task_01ABC.mp4",
        sidecar_location="/v/task_01ABC.json",
        sha256="0" * 64,
        size_bytes=10,
        download_seconds=0.1,
        media=media,
        **fields,
    )


def as_asked() -> MediaFacts:
    return MediaFacts(duration_seconds=6.0, width=1080, height=1920, codec="h264", frame_rate=8.0)


def test_summary_shows_the_check_the_facts_and_the_embedded_previews() -> None:
    previews = {"poster": data_uri(jpeg(48, 64)), "contact_sheet": data_uri(jpeg(64, 48))}
    markdown = render_summary(
        request=REQUEST,
        archived=archived(as_asked()),
        wall_seconds=3.0,
        previews=previews,
    )
    assert markdown.startswith("# Video generated\n")
    assert "| Media check | as asked |" in markdown
    assert "| Delivered | 1080x1920 portrait, 6 s, h264, 8 fps, no audio |" in markdown
    assert f"![poster of task_01ABC]({previews['poster']})" in markdown
    assert f"![contact sheet of task_01ABC]({previews['contact_sheet']})" in markdown


def test_summary_flags_a_video_not_as_asked() -> None:
    landscape = MediaFacts(duration_seconds=1.0, width=320, height=180, codec="h264")
    markdown = render_summary(request=REQUEST, archived=archived(landscape), wall_seconds=3.0)
    assert markdown.startswith("# Video generated: not as asked\n")
    assert "**mismatch: duration: asked 6 s, delivered 1 s;" in markdown
    assert "![" not in markdown  # no previews given, none shown


def test_summary_of_an_unreadable_file() -> None:
    """Titled as unreadable, not as a video that was read and found different."""
    markdown = render_summary(request=REQUEST, archived=archived(), wall_seconds=1.0)
    assert markdown.startswith("# Video generated: unreadable video\n")
    assert "not as asked" not in markdown
    assert "| Media check | **unreadable: bad data** |" in markdown
    assert "Delivered" not in markdown


def test_embedded_previews_stay_within_their_budget_poster_first() -> None:
    small = {"poster": jpeg(32, 32), "contact_sheet": jpeg(32, 32)}
    assert list(within_embed_budget(small)) == ["poster", "contact_sheet"]
    heavy_sheet = {"poster": jpeg(32, 32), "contact_sheet": jpeg(200, 200, noise=True)}
    assert len(data_uri(heavy_sheet["contact_sheet"])) > 40_000
    chosen = within_embed_budget(heavy_sheet, budget=40_000)
    assert list(chosen) == ["poster"]
    assert sum(len(uri) for uri in chosen.values()) <= 40_000
    assert EMBED_BUDGET_BYTES == 64 * 1024


def test_a_data_uri_decodes_to_the_same_jpeg() -> None:
    picture = jpeg(20, 10)
    uri = data_uri(picture)
    assert uri.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(uri.partition(",")[2]) == picture


def test_thumbnail_fits_its_long_side() -> None:
    small = thumbnail(jpeg(480, 270), 160)
    with Image.open(io.BytesIO(small)) as image:
        assert image.size == (160, 90)
        assert image.format == "JPEG"


def _batch(count: int) -> BatchReport:
    items = [
        BatchItem(
            id=f"row-{index}",
            status="archived",
            location=f"/v/{index}.mp4",
            task_run_id=f"tr-{index}",
            preview_keys={"poster": f"{index}.poster.jpg"},
            media=judge(as_asked(), REQUEST),
        )
        for index in range(count)
    ]
    return BatchReport.of("b", items, 1.0)


def test_batch_gallery_is_bounded_by_count(tmp_path: Path) -> None:
    for index in range(GALLERY_VIDEOS + 6):
        (tmp_path / f"{index}.poster.jpg").write_bytes(jpeg(96, 54))
    report = _batch(GALLERY_VIDEOS + 6)
    thumbs = asyncio.run(
        gallery_thumbnails(report, LocalFileSystem(basepath=str(tmp_path)), LOGGER)
    )
    assert list(thumbs) == [f"row-{index}" for index in range(GALLERY_VIDEOS)]
    markdown = report_markdown(
        report, task_run_url=lambda run: f"http://ui/runs/task-run/{run}", thumbnails=thumbs
    )
    assert f"The first {GALLERY_VIDEOS} of {GALLERY_VIDEOS + 6} videos." in markdown
    assert f"[![row-0]({thumbs['row-0']})](http://ui/runs/task-run/tr-0)" in markdown
    assert "row-29" not in markdown


def test_batch_gallery_is_bounded_by_bytes(tmp_path: Path) -> None:
    for index in range(12):
        (tmp_path / f"{index}.poster.jpg").write_bytes(jpeg(480, 270, noise=True))
    report = _batch(12)
    storage = LocalFileSystem(basepath=str(tmp_path))
    everything = asyncio.run(gallery_thumbnails(report, storage, LOGGER))
    assert len(everything) == 12  # 12 thumbnails of a few KB are well within the default cap
    assert sum(len(uri) for uri in everything.values()) <= GALLERY_BYTES
    one = len(everything["row-0"])
    capped = asyncio.run(gallery_thumbnails(report, storage, LOGGER, max_bytes=3 * one + one // 2))
    assert list(capped) == ["row-0", "row-1", "row-2"]


def test_a_missing_poster_is_left_out_of_the_gallery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "1.poster.jpg").write_bytes(jpeg(96, 54))
    report = _batch(2)  # row-0's poster does not exist
    storage = LocalFileSystem(basepath=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        thumbs = asyncio.run(gallery_thumbnails(report, storage, LOGGER))
    assert list(thumbs) == ["row-1"]
    assert "No gallery picture of row row-0" in caplog.text


def test_batch_table_and_summary_flag_videos_not_as_asked() -> None:
    wrong = judge(MediaFacts(duration_seconds=1.0, width=320, height=180, codec="h264"), REQUEST)
    items = [
        BatchItem(id="good", status="archived", media=judge(as_asked(), REQUEST)),
        BatchItem(id="bad", status="archived", media=wrong, flow_run_id="fr-bad"),
        BatchItem(id="old", status="archived"),
    ]
    report = BatchReport.of("b", items, 1.0)
    assert [item.id for item in report.media_flagged] == ["bad"]
    assert report.ok  # every row is archived: a mismatch alone is not a failed row
    assert report.headline() == "3 of 3 videos archived, 1 not as asked, total cost 0"
    cut = BatchItem(id="cut", status="archived", media=unreadable("moov atom not found"))
    broken = BatchReport.of("b", [*items, cut], 1.0)
    assert broken.headline() == (
        "4 of 4 videos archived, 1 not as asked, 1 unreadable, total cost 0"
    )
    table = {row["id"]: row["media"] for row in report_table(report)}
    assert table == {"good": "ok", "bad": wrong.describe(), "old": ""}
    markdown = report_markdown(report, run_url=lambda run: f"http://ui/runs/flow-run/{run}")
    assert "## Videos not as asked" in markdown
    assert "| bad | mismatch: duration: asked 6 s, delivered 1 s;" in markdown
    assert "[fr-bad](http://ui/runs/flow-run/fr-bad)" in markdown
    assert "## Gallery" not in markdown
