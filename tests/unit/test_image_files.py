"""The checks a local image passes before it is uploaded, and what an upload is cached by."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omniflash_prefect.client.images import read_image_file
from omniflash_prefect.core.protocol import MAX_IMAGE_UPLOAD_BYTES
from omniflash_prefect.errors import InvalidImageFileError, InvalidVideoRequestError
from omniflash_prefect.video.tasks import UPLOAD_CACHE_EXPIRATION, upload_record_key

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def test_a_relative_path_is_made_absolute_and_the_type_read_from_the_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("photo.png").write_bytes(JPEG)  # the name says PNG, the bytes say JPEG
    image = read_image_file("photo.png")
    assert image.path == tmp_path / "photo.png"
    assert image.content_type == "image/jpeg"
    assert image.content == JPEG


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "is not a readable file"),
        (b"GIF8 but not quite", "is not a JPEG, PNG, WebP or GIF image"),
        (b"", "is not a JPEG, PNG, WebP or GIF image"),
    ],
)
def test_a_file_the_endpoint_would_refuse_is_a_typed_error_naming_it(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "frame.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidImageFileError) as refused:
        read_image_file(path)
    assert refused.value.path == str(path)
    assert refused.value.reason == reason
    assert str(path) in str(refused.value)
    assert isinstance(refused.value, InvalidVideoRequestError)
    assert not refused.value.charged
    assert refused.value.exit_status == "invalid"


def test_a_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageFileError, match="is not a readable file"):
        read_image_file(tmp_path)


def test_an_image_over_20_mb_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A sparse file one byte over the limit, refused from its size alone."""
    path = tmp_path / "huge.png"
    with path.open("wb") as file:
        file.write(PNG)
        file.truncate(MAX_IMAGE_UPLOAD_BYTES + 1)
    with pytest.raises(InvalidImageFileError, match=f"{MAX_IMAGE_UPLOAD_BYTES + 1} bytes"):
        read_image_file(path)
    path.write_bytes(PNG)
    os.truncate(path, MAX_IMAGE_UPLOAD_BYTES)
    assert read_image_file(path).content_type == "image/png"


def test_an_upload_is_cached_by_its_bytes_and_account_for_well_under_72_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMNIFLASH_API_KEY", "sk-never-in-a-key")
    monkeypatch.setenv("OMNIFLASH_BASE_URL", "http://127.0.0.1:9")
    image = "ab" * 32
    assert upload_record_key(image, "team") == upload_record_key(image, "team")
    assert upload_record_key(image, "team") != upload_record_key(image, "other-team")
    assert upload_record_key(image, None) != upload_record_key(image, "team")
    assert upload_record_key("cd" * 32, "team") != upload_record_key(image, "team")
    from_settings = upload_record_key(image, None)
    monkeypatch.setenv("OMNIFLASH_BASE_URL", "http://127.0.0.1:10")
    assert upload_record_key(image, None) != from_settings
    assert "sk-never-in-a-key" not in from_settings
    assert UPLOAD_CACHE_EXPIRATION.total_seconds() <= 24 * 3600
