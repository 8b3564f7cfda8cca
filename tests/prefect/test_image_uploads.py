"""``upload_image`` in flows, on a real Prefect server against the emulator over loopback: a
local image becomes the URL of an image-to-video request, once per image and account."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from prefect import flow

from omniflash_prefect import (
    ArchivedVideo,
    aupload_image,
    generate_video_task,
    upload_image,
)
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import InvalidImageFileError

#: A PNG as the upload endpoint reads it: its signature, then anything.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def test_a_flow_uploads_a_local_png_and_makes_an_image_to_video(
    emulator: EmulatorServer, credentials_block: str, tmp_path: Path
) -> None:
    """A sync flow uploads a local PNG and submits its URL: the video is made from it, and the
    URL serves the same bytes."""
    image = tmp_path / "lantern.png"
    image.write_bytes(PNG)

    @flow
    def image_to_video() -> tuple[str, ArchivedVideo]:
        url = upload_image(image, credentials_block=credentials_block)
        video = generate_video_task(
            "A paper lantern drifts up into the night",
            image_urls=[url],
            credentials_block=credentials_block,
        )
        return url, video

    url, video = image_to_video()
    [submitted] = emulator.state.submissions
    assert submitted["image_urls"] == [url]
    assert url.startswith(f"{emulator.base_url}/uploads/")
    assert httpx.get(url).content == PNG
    assert Path(video.location).is_file()
    assert len(emulator.state.snapshot()["uploads"]) == 1


async def test_a_rerun_reuses_the_upload_of_the_same_image(
    emulator: EmulatorServer,
    credentials_block: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same bytes through the same block are uploaded once, whatever the file is called and
    wherever it lies (a relative path is made absolute where the run starts); other bytes are
    uploaded again."""
    monkeypatch.chdir(tmp_path)
    Path("first.png").write_bytes(PNG)
    (tmp_path / "copies").mkdir()
    shutil.copy("first.png", "copies/renamed.png")
    Path("other.png").write_bytes(PNG + b"another picture")

    @flow
    async def upload(path: str) -> str:
        return await aupload_image(path, credentials_block=credentials_block)

    first = await upload("first.png")
    again = await upload("copies/renamed.png")
    other = await upload(str(tmp_path / "other.png"))
    assert again == first
    assert other != first
    uploads = emulator.state.snapshot()["uploads"]
    assert [upload["filename"] for upload in uploads] == ["first.png", "other.png"]


async def test_a_wrong_file_is_refused_before_anything_is_read_or_sent(
    emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing file or a text file raises InvalidImageFileError naming the absolute path,
    before the credentials block (which does not even exist here) is read or the API called."""
    monkeypatch.chdir(tmp_path)
    Path("notes.png").write_text("not an image")

    @flow
    async def upload(path: str) -> str:
        return await aupload_image(path, credentials_block="no-such-block")

    with pytest.raises(InvalidImageFileError, match="is not a readable file") as missing:
        await upload("missing.png")
    assert missing.value.path == str(tmp_path / "missing.png")
    with pytest.raises(InvalidImageFileError, match="not a JPEG, PNG, WebP or GIF") as text:
        await upload("notes.png")
    assert text.value.path == str(tmp_path / "notes.png")
    assert emulator.state.snapshot()["uploads"] == []
