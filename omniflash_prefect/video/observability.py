"""What a video generation shows in the Prefect UI: progress, events, links and a summary.

Rendering (keys, markdown, event payloads) is pure; the emitters are thin calls into Prefect's
artifact and event APIs. Nothing here ever receives the API key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect.artifacts import acreate_link_artifact, acreate_markdown_artifact
from prefect.events import emit_event

from omniflash_prefect.core.models import VideoTask
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.video.archive import ArchivedVideo

EVENT_PREFIX = "omniflash.video"


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


def render_summary(
    *,
    request: VideoRequest | None,
    task: VideoTask,
    archived: ArchivedVideo,
    wall_seconds: float,
) -> str:
    """The markdown summary of one generation, shown on its flow run (without the request's
    rows when only the task id was known, as for ``fetch_video``)."""
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
        ("Task id", f"`{task.id}`"),
        ("Status", task.status),
        ("Cost", "unknown" if task.cost is None else f"{task.cost:g}"),
        ("API time", "unknown" if task.actual_time is None else f"{task.actual_time:g} s"),
        ("Wall time", f"{wall_seconds:.1f} s"),
        ("Size", f"{archived.size_bytes:,} bytes"),
        ("SHA-256", f"`{archived.sha256}`"),
        ("Location", f"[{archived.location}]({link_for(archived.location)})"),
    ]
    table = "\n".join(f"| {name} | {_cell(value)} |" for name, value in rows)
    return f"# Video generated\n\n| | |\n|---|---|\n{table}\n"


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


async def publish_archive_artifacts(
    *, request: VideoRequest | None, task: VideoTask, archived: ArchivedVideo, wall_seconds: float
) -> None:
    """The link artifact to the archived video and the markdown summary, on the current run."""
    await acreate_link_artifact(
        link=link_for(archived.location),
        link_text=Path(archived.storage_key).name,
        key=artifact_key("video", task.id),
        description=f"Archived video of task {task.id}",
    )
    await acreate_markdown_artifact(
        markdown=render_summary(
            request=request, task=task, archived=archived, wall_seconds=wall_seconds
        ),
        key=artifact_key("summary", task.id),
        description=f"Generation summary of task {task.id}",
    )
