"""What a video generation shows in the Prefect UI: progress, events, links and a summary.

Rendering (keys, markdown, event payloads) is pure; the emitters are thin calls into Prefect's
artifact and event APIs. Nothing here ever receives the API key.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final
from uuid import UUID

import httpx
from prefect.artifacts import (
    acreate_link_artifact,
    acreate_markdown_artifact,
    aupdate_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.events import emit_event
from prefect.filesystems import WritableFileSystem
from prefect.utilities.context import get_task_and_flow_run_ids

from omniflash_prefect.core.media import MediaCheck, MediaFacts
from omniflash_prefect.core.models import VideoTask
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.media.inspection import within_embed_budget
from omniflash_prefect.video.archive import ArchivedVideo, read_stored

EVENT_PREFIX = "omniflash.video"
#: The smallest rise of the API's progress (in points) that updates the progress artifact.
PROGRESS_STEP: Final = 10
#: The least time between two updates of the progress artifact of a video in a batch (the
#: first reading is shown unless the process is busy writing others, the completion always): a
#: job of a few minutes moves its bar every so often, and hundreds of short jobs write twice
#: each, not once per step. A video of its own (a ``generate_video`` run, followed live by
#: ``omniflash generate``) has no minimum.
PROGRESS_MIN_SECONDS: Final = 15.0
#: Progress writes (not the final one, which always happens) that may wait on the Prefect API at
#: once in one process: half of its client's 16 connections. A reading due while they are all
#: taken is not shown (a later one may be). With a thousand videos polling in one process, the
#: writes queued faster than the server took them and starved every other call of the process.
PROGRESS_WRITES_IN_FLIGHT: Final = 8
#: The key, in a progress artifact's metadata, of the provider task it follows.
TASK_ID_METADATA: Final = "task_id"

RunLogger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def artifact_key(kind: str, task_id: str) -> str:
    """An artifact key from a task id: Prefect keys allow only lower-case letters, digits, '-'."""
    return re.sub(r"[^a-z0-9-]+", "-", f"omniflash-{kind}-{task_id}".lower()).strip("-")


def video_resource(task_id: str, prompt: str | None = None) -> dict[str, str]:
    """The Prefect event resource of one video generation task."""
    resource = {"prefect.resource.id": f"omniflash.task.{task_id}", "omniflash.task-id": task_id}
    if prompt:
        resource["prefect.resource.name"] = short_prompt(prompt)
    return resource


def short_prompt(prompt: str, limit: int = 60) -> str:
    """A prompt shortened to one line for names and titles."""
    line = " ".join(prompt.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


async def acreate_task_progress_artifact(
    task_id: str, progress: float, description: str | None = None
) -> UUID:
    """A progress artifact on the current run for one provider task, whose metadata names the
    task (``TASK_ID_METADATA``), so readers such as ``omniflash generate`` need not parse text."""
    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    async with get_client() as client:
        artifact = await client.create_artifact(
            ArtifactCreate(
                type="progress",
                key=artifact_key("progress", task_id),
                description=description or f"Generation progress of task {task_id}",
                data=progress,
                metadata_={TASK_ID_METADATA: task_id},
                task_run_id=task_run_id,
                flow_run_id=flow_run_id,
            )
        )
    return artifact.id


def progress_write_due(
    *, shown: float | None, progress: float, seconds_since_shown: float, min_seconds: float
) -> bool:
    """Whether a reading of a task moves its progress artifact: the first reading (``shown``
    is None), then a rise of at least ``PROGRESS_STEP`` points at least ``min_seconds`` after
    the last write. A reading of 100 waits for :meth:`TaskProgress.finish`, which the end
    of the poll (or of the archive, with the summary) calls: one write, not two."""
    if shown is None:
        return True
    if progress >= 100:
        return False
    return progress >= shown + PROGRESS_STEP and seconds_since_shown >= min_seconds


class TaskProgress:
    """What a poll shows of one task: a log line per status, and its progress artifact.

    The artifact is created at the first reading, not at 0 before it (one write less per video,
    and a resumed video shows its real progress at once), then moves in steps of at least
    ``PROGRESS_STEP`` points and ``PROGRESS_MIN_SECONDS`` up to 100
    (:func:`progress_write_due`): every write is a database write on the Prefect server, which a
    batch of hundreds of videos must not flood.
    """

    #: Progress writes of this process waiting on the Prefect API right now (see
    #: :data:`PROGRESS_WRITES_IN_FLIGHT`).
    writing: ClassVar[int] = 0

    def __init__(self, task_id: str, logger: RunLogger, *, min_seconds: float = 0.0) -> None:
        self.task_id = task_id
        self.logger = logger
        self.min_seconds = min_seconds
        self.status: str | None = None
        self.progress = 0.0
        self.shown_at = 0.0
        self.artifact_id: UUID | None = None

    async def report(self, update: VideoTask) -> None:
        """One reading of the task (the client's ``on_update``)."""
        if update.status != self.status:
            self.logger.info(
                "Task %s is %s (progress %s%%)", self.task_id, update.status, update.progress
            )
            self.status = update.status
        progress = float(update.progress) if update.progress is not None else self.progress
        due = progress_write_due(
            shown=None if self.artifact_id is None else self.progress,
            progress=progress,
            seconds_since_shown=time.monotonic() - self.shown_at,
            min_seconds=self.min_seconds,
        )
        if due and TaskProgress.writing < PROGRESS_WRITES_IN_FLIGHT:
            TaskProgress.writing += 1
            try:
                await self._show(progress)
            finally:
                TaskProgress.writing -= 1

    async def finish(self, summary: str | None = None) -> None:
        """The task completed: the artifact shows 100%, and ``summary`` (markdown) as its
        description when given: a video that is a task run of a batch shows its summary there,
        in the same write, instead of in an artifact of its own."""
        if self.artifact_id is None or self.progress != 100 or summary is not None:
            await self._show(100.0, summary)

    async def _show(self, progress: float, description: str | None = None) -> None:
        """Write the artifact. What the UI shows must never fail a paid video: a Prefect API
        too busy to answer (a 503, or no free connection in time with hundreds of videos in
        flight in one process) costs this update, with a warning, not the video's run."""
        try:
            if self.artifact_id is None:
                self.artifact_id = await acreate_task_progress_artifact(
                    self.task_id, progress, description
                )
            else:
                await aupdate_progress_artifact(self.artifact_id, progress, description)
        except httpx.HTTPError as exc:
            self.logger.warning("Progress of task %s not shown: %r", self.task_id, exc)
            return
        self.progress = progress
        self.shown_at = time.monotonic()


def emit_video_event(
    name: str, task_id: str, *, prompt: str | None = None, payload: dict[str, Any] | None = None
) -> None:
    """Emit ``omniflash.video.<name>`` about ``task_id``; Prefect relates it to the current run."""
    emit_event(
        f"{EVENT_PREFIX}.{name}",
        resource=video_resource(task_id, prompt),
        payload=payload or {},
    )


def link_for(location: str) -> str:
    """A clickable link for an archived location: ``file://`` for local paths, else as is."""
    if "://" in location:
        return location
    return Path(location).as_uri()


#: What a flagged verdict adds to the summary's title: a file read and found different is not
#: the same news as a file nothing could read (which may be a broken download, not the model).
SUMMARY_TITLE_FLAGS: Final[Mapping[str, str]] = {
    "mismatch": ": not as asked",
    "unreadable": ": unreadable video",
}


def render_summary(
    *,
    request: VideoRequest | None,
    archived: ArchivedVideo,
    wall_seconds: float,
    previews: Mapping[str, str] | None = None,
) -> str:
    """The markdown summary of one generation, shown on its run (without the request's rows
    when only the task id was known, as for ``fetch_video``): what was asked, what it cost,
    what the file holds and whether that is what was asked, and ``previews`` (``data:`` URIs by
    kind) as images, which the UI shows without any public URL."""
    rows = []
    if request is not None:
        rows += [
            ("Prompt", short_prompt(request.prompt, 300)),
            ("Mode", request.mode),
            ("Duration", f"{request.duration} s"),
            ("Resolution", request.resolution),
            ("Aspect ratio", request.aspect_ratio),
        ]
    rows += [
        ("Task id", f"`{archived.task_id}`"),
        ("Status", "completed"),
        ("Cost", "unknown" if archived.cost is None else f"{archived.cost:g}"),
        ("API time", "unknown" if archived.api_seconds is None else f"{archived.api_seconds:g} s"),
        ("Wall time", f"{wall_seconds:.1f} s"),
        ("Size", f"{archived.size_bytes:,} bytes"),
        ("SHA-256", f"`{archived.sha256}`"),
        ("Location", f"[{archived.location}]({link_for(archived.location)})"),
    ]
    if archived.media is not None:
        rows += media_rows(archived.media)
    table = "\n".join(f"| {name} | {table_cell(value)} |" for name, value in rows)
    title = "Video generated" + SUMMARY_TITLE_FLAGS.get(
        archived.media.verdict if archived.media else "ok", ""
    )
    images = "".join(
        f"\n![{kind.replace('_', ' ')} of {archived.task_id}]({uri})\n"
        for kind, uri in (previews or {}).items()
    )
    return f"# {title}\n\n| | |\n|---|---|\n{table}\n{images}"


def media_rows(check: MediaCheck) -> list[tuple[str, str]]:
    """The summary's rows about what the file holds: the verdict, then the facts."""
    verdict = {
        "ok": "as asked",
        "unchecked": "not compared (request unknown)",
    }.get(check.verdict, f"**{check.describe()}**")
    rows = [("Media check", verdict)]
    if check.facts is not None:
        rows.append(("Delivered", describe_facts(check.facts)))
    return rows


def describe_facts(facts: MediaFacts) -> str:
    """``1080x1920 portrait, 6.02 s, h264, 24 fps, no audio``."""
    parts = [f"{facts.resolution_label} {facts.orientation}"]
    if facts.duration_seconds is not None:
        parts.append(f"{facts.duration_seconds:g} s")
    parts.append(facts.codec)
    if facts.frame_rate is not None:
        parts.append(f"{facts.frame_rate:g} fps")
    parts.append("audio" if facts.has_audio else "no audio")
    return ", ".join(parts)


def table_cell(value: str) -> str:
    """Text that stays in its markdown table cell."""
    return value.replace("|", "\\|").replace("\n", " ")


def table_section(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a markdown section with a table, or none when there are no rows."""
    if not rows:
        return []
    return [
        "",
        f"## {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


async def embedded_previews(
    storage: WritableFileSystem, archived: ArchivedVideo, logger: RunLogger
) -> dict[str, str]:
    """The video's previews read back from its storage, as ``data:`` URIs within
    :data:`~omniflash_prefect.media.inspection.EMBED_BUDGET_BYTES`; none when they cannot be
    read (a summary without pictures is still a summary)."""
    try:
        jpegs = {
            kind: await read_stored(storage, key) for kind, key in archived.preview_keys.items()
        }
    except Exception as exc:  # storage blocks raise anything, and previews are optional
        logger.warning("Previews of task %s could not be read: %s", archived.task_id, exc)
        return {}
    return within_embed_budget(jpegs)


async def publish_archive_artifacts(archived: ArchivedVideo, summary: str) -> None:
    """The link artifact to the archived video and its markdown ``summary``, on the current
    run."""
    await acreate_link_artifact(
        link=link_for(archived.location),
        link_text=Path(archived.storage_key).name,
        key=artifact_key("video", archived.task_id),
        description=f"Archived video of task {archived.task_id}",
    )
    await acreate_markdown_artifact(
        markdown=summary,
        key=artifact_key("summary", archived.task_id),
        description=f"Generation summary of task {archived.task_id}",
    )
