"""Where a generated video is kept: storage keys, integrity checks, and the write into storage.

A paid video is only safe once it sits in the user's storage, intact and never half-written under
its final name. The video is first downloaded to a staging file (next to the destination for a
local directory, in a temporary directory otherwise), checked to be an MP4 and hashed on the way,
and only then moved or uploaded under its final key, with a sidecar JSON that records what it is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.filesystems import LocalFileSystem, WritableFileSystem
from pydantic import BaseModel, ConfigDict, Field

from omniflash_prefect.core.media import MediaCheck
from omniflash_prefect.core.models import VideoTask, validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.errors import DownloadError, MediaCheckError, UsageError

_PREFIX_PART = re.compile(r"[A-Za-z0-9._-]+")


class ArchivedVideo(BaseModel):
    """A video kept in storage: where it is, what it is, what it cost and how long it took."""

    model_config = ConfigDict(frozen=True)

    task_id: str = Field(description="The provider's task id.")
    location: str = Field(description="Absolute path or storage URI (s3://...) of the video.")
    storage_key: str = Field(description="The video's key inside the storage block.")
    sidecar_location: str = Field(description="Where the sidecar JSON was written.")
    sha256: str = Field(description="SHA-256 of the archived bytes.")
    size_bytes: int = Field(description="Size of the archived video.")
    cost: float | None = Field(default=None, description="What the provider charged.")
    prompt: str | None = Field(default=None, description="The prompt, when the request is known.")
    created: int | None = Field(default=None, description="Task creation (Unix seconds).")
    completed: int | None = Field(default=None, description="Task completion (Unix seconds).")
    api_seconds: float | None = Field(default=None, description="Generation time per the API.")
    download_seconds: float = Field(description="Time spent downloading and storing.")
    source_expires_at: int | None = Field(default=None, description="When the source URL expired.")
    media: MediaCheck | None = Field(
        default=None,
        description="What the file holds (duration, frame size, codec...) and whether it is what "
        "was asked for; None in records written before videos were checked.",
    )
    preview_keys: dict[str, str] = Field(
        default_factory=dict,
        description="Keys of the previews beside the video, by kind (poster, contact_sheet).",
    )

    def raise_for_media(self) -> None:
        """Raise :class:`MediaCheckError` when the media check flagged this video (a mismatch
        or an unreadable file); the video stays where it is."""
        if self.media is not None and self.media.flagged:
            raise MediaCheckError(self.task_id, self.location, self.media.describe())


def archive_day(task: VideoTask) -> str:
    """The ``YYYY-MM-DD`` (UTC) a task's video is filed under: when it completed, else created.

    Taken from the task rather than the clock, so a re-run files the same video under the same key.
    """
    stamp = task.completed or task.created
    when = (
        dt.datetime.fromtimestamp(stamp, dt.UTC) if stamp is not None else dt.datetime.now(dt.UTC)
    )
    return when.date().isoformat()


def check_prefix(prefix: str) -> str:
    """A storage prefix of safe segments (``a/b-c``); ``..`` and odd characters are refused."""
    parts = [part for part in prefix.strip().strip("/").split("/") if part]
    for part in parts:
        if part in (".", "..") or not _PREFIX_PART.fullmatch(part):
            raise UsageError(
                f"invalid archive prefix {prefix!r}: use segments of letters, digits, '.', '_' "
                "or '-' separated by '/'"
            )
    return "/".join(parts)


def video_key(prefix: str, task: VideoTask) -> str:
    """``<prefix>/<YYYY-MM-DD>/<task_id>.mp4``, every part validated."""
    task_id = validate_task_id(task.id)
    head = check_prefix(prefix)
    name = f"{archive_day(task)}/{task_id}.mp4"
    return f"{head}/{name}" if head else name


def sidecar_key(key: str) -> str:
    """The sidecar JSON's key, next to the video's."""
    return key.removesuffix(".mp4") + ".json"


def preview_key(key: str, kind: str) -> str:
    """A preview's key, next to the video's: ``<task id>.poster.jpg``."""
    return key.removesuffix(".mp4") + f".{kind.replace('_', '-')}.jpg"


def looks_like_mp4(head: bytes) -> bool:
    """True when the first bytes are an ISO media file (``ftyp`` box first), not an error page."""
    return len(head) >= 12 and head[4:8] == b"ftyp"


def check_is_mp4(path: Path) -> None:
    """Raise :class:`DownloadError` unless ``path`` holds an MP4 container."""
    with path.open("rb") as handle:
        head = handle.read(12)
    if not looks_like_mp4(head):
        raise DownloadError(
            f"the downloaded file is not an MP4 video (starts with {head[:12]!r}); "
            "the provider may have served an error page"
        )


def destination_of(storage: WritableFileSystem, key: str) -> str:
    """Where ``key`` lands in ``storage``, as a path or URI: the archive's identity."""
    if isinstance(storage, LocalFileSystem):
        return str(_local_path(storage, key))
    bucket = getattr(storage, "bucket_name", None)
    if isinstance(bucket, str):
        folder = str(getattr(storage, "bucket_folder", "") or "").strip("/")
        return f"s3://{bucket}/{folder + '/' if folder else ''}{key}"
    basepath = getattr(storage, "basepath", None)
    if isinstance(basepath, str) and basepath:
        return f"{basepath.rstrip('/')}/{key}"
    return f"{type(storage).__name__}:{key}"


def _local_path(storage: LocalFileSystem, key: str) -> Path:
    base = Path(storage.basepath).expanduser().resolve() if storage.basepath else Path.cwd()
    return base / key


def staging_path(storage: WritableFileSystem, key: str, scratch: Path) -> Path:
    """Where to download before the video is moved under ``key``.

    Beside the destination for a local directory, so the final move is an atomic rename; in the
    scratch directory for any other storage, which then receives an upload.
    """
    if isinstance(storage, LocalFileSystem):
        final = _local_path(storage, key)
        return final.with_name(f".{final.name}.staging")
    return scratch / Path(key).name


async def store_video(storage: WritableFileSystem, staged: Path, key: str) -> str:
    """Move or upload the verified ``staged`` file under ``key``; return its location.

    A local directory gets an atomic rename. An S3 bucket gets boto3's managed (multipart) upload
    straight from the file, so memory does not grow with the video. Any other writable filesystem
    gets ``write_path`` with the bytes, which holds the video in memory once.
    """
    if isinstance(storage, LocalFileSystem):
        final = _local_path(storage, key)
        os.replace(staged, final)
        return str(final)
    upload = getattr(storage, "aupload_from_path", None)
    if upload is not None:
        await upload(staged, key)
        return destination_of(storage, key)
    await _write(storage, key, await asyncio.to_thread(staged.read_bytes))
    return destination_of(storage, key)


async def write_sidecar(
    storage: WritableFileSystem,
    key: str,
    *,
    task: VideoTask,
    request: VideoRequest | None,
    archived: ArchivedVideo,
) -> None:
    """Write the sidecar JSON: request, task id, cost, timings, integrity and source expiry."""
    record: dict[str, Any] = {
        "task_id": task.id,
        "request": request.to_api_body() if request is not None else None,
        "status": task.status,
        "cost": task.cost,
        "created": task.created,
        "completed": task.completed,
        "api_seconds": task.actual_time,
        "estimated_seconds": task.estimated_time,
        "download_seconds": archived.download_seconds,
        "sha256": archived.sha256,
        "size_bytes": archived.size_bytes,
        "source_expires_at": task.video_expires_at,
        "video": archived.location,
        "archived_at": dt.datetime.now(dt.UTC).isoformat(),
        "media": archived.media.model_dump(mode="json") if archived.media is not None else None,
        "previews": archived.preview_keys,
    }
    await _write(storage, key, json.dumps(record, indent=2, sort_keys=True).encode())


async def store_previews(
    storage: WritableFileSystem, key: str, previews: Mapping[str, bytes]
) -> dict[str, str]:
    """Write each preview JPEG beside the video at ``key``; their keys, by kind."""
    keys = {kind: preview_key(key, kind) for kind in previews}
    await asyncio.gather(*(_write(storage, keys[kind], jpeg) for kind, jpeg in previews.items()))
    return keys


async def read_stored(storage: WritableFileSystem, key: str) -> bytes:
    """The bytes at ``key`` (a preview, to embed it in a summary): the block's own read, async
    where it has one (``LocalFileSystem`` and ``S3Bucket`` do)."""
    read = getattr(storage, "aread_path", None) or storage.read_path
    result = read(key)
    content: bytes = await result if inspect.isawaitable(result) else result
    return content


async def _write(storage: WritableFileSystem, key: str, content: bytes) -> None:
    # write_path is async on some blocks and sync-or-async (dispatching) on others.
    result = storage.write_path(key, content)
    if inspect.isawaitable(result):
        await result
