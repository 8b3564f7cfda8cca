"""Reusable Prefect tasks: submit, poll and archive one video; each usable alone in any flow.

They are thin: each step is done by :mod:`omniflash_prefect.video.steps` (on top of the client,
the at-most-once bookkeeping of :mod:`omniflash_prefect.video.submissions` and
:mod:`omniflash_prefect.video.claims`, the storage of :mod:`omniflash_prefect.video.archive` and
what the UI shows, :mod:`omniflash_prefect.video.observability`). What they add is Prefect's
memory:

* ``submit_video`` sends a request at most once per submission key, however many callers race
  for it (a claim around "read the record, mark it in flight, send, record the task id"); a key
  whose request was in flight when its sender died raises :class:`SubmissionOutcomeUnknownError`
  rather than possibly paying twice. Without an ``idempotency_key`` each call of a flow run is its
  own video, and a retried run reuses them one for one.
* ``poll_video`` runs one poll loop per video, retries (Prefect) what is transient and not the
  client's to retry, and caches a *completed* task by its id, so polling a finished task again
  costs no status call.
* ``archive_video`` caches its result by task id and destination and claims that pair, so a
  re-run, or a concurrent run, never downloads a video that is (being) archived.
* ``upload_image`` turns a local image into the URL ``VideoRequest.image_urls`` takes, cached by
  the image's bytes and where it went for a day, so a retried flow does not upload it again.

Each is exported twice, as prefect-aws does: ``asubmit_video``, ``apoll_video``,
``aarchive_video`` and ``aupload_image`` are the async tasks; ``submit_video``, ``poll_video``,
``archive_video`` and ``upload_image`` are the same tasks that sync code may also call directly
(:mod:`omniflash_prefect.video.dispatch`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from typing import Any, Final

from prefect import Task, get_run_logger, task
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.filesystems import WritableFileSystem

from omniflash_prefect.client.images import read_image_file
from omniflash_prefect.core.models import VideoTask, validate_task_id
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.errors import InvalidImageFileError
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.claims import current_record_storage
from omniflash_prefect.video.credentials import load_client
from omniflash_prefect.video.dispatch import dispatching_task
from omniflash_prefect.video.observability import TaskProgress
from omniflash_prefect.video.setup import default_storage
from omniflash_prefect.video.steps import (
    POLL_RETRY_DELAYS,
    archive_record_key,
    archive_step,
    call_submission_key,
    poll_record_key,
    poll_step,
    prefect_api_unavailable,
    submit_step,
)

# -- submit ----------------------------------------------------------------------------------


def _submission_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return call_submission_key(
        parameters["request"], parameters.get("idempotency_key"), context.task_run
    )


@task(
    name="submit-video",
    task_run_name="submit-video",
    cache_key_fn=_submission_cache_key,
    persist_result=True,
    result_serializer="json",
)
async def asubmit_video(
    request: VideoRequest,
    credentials_block: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Submit one video (a paid call) and return its task id: at most once per submission key.

    With ``idempotency_key``, one video per request and key, across runs. Without, each call in
    a flow run is its own video (two identical calls are two takes), and a retry of the run
    reuses every video of the earlier attempt one for one. Callers racing for one key wait for
    the one that sends, and get its task id.
    """
    context = TaskRunContext.get()
    key = call_submission_key(request, idempotency_key, context.task_run if context else None)
    return await submit_step(request, key, await current_record_storage(), credentials_block)


submit_video = dispatching_task(asubmit_video)


# -- poll ------------------------------------------------------------------------------------


def poll_failure_is_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``poll_video``'s retry condition: retry only what is neither the provider's answer nor
    the client's to retry, i.e. the Prefect API being briefly unavailable. A failed or cancelled
    generation, a bad or unknown task id, a refused key and a poll deadline are final; the
    provider's transient errors are already survived inside the poll loop."""
    del task, task_run
    error = state.data
    return isinstance(error, BaseException) and prefect_api_unavailable(error)


def _poll_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    # Only a completed task is ever returned (anything else raises, and failures are never
    # cached), so this caches exactly the final, successful reading of each task id.
    return poll_record_key(str(parameters["task_id"]))


def seconds_spent_before(run_count: int, start_time: dt.datetime | None, now: dt.datetime) -> float:
    """How long the earlier attempts of a task run already waited: none on its first attempt,
    else the time since the run started (Prefect keeps a run's start time across retries)."""
    if run_count <= 1 or start_time is None:
        return 0.0
    return max((now - start_time).total_seconds(), 0.0)


def _seconds_spent_by_earlier_attempts() -> float:
    """What the current task run's earlier attempts waited of the deadline (see
    :func:`seconds_spent_before`); none outside a task run."""
    context = TaskRunContext.get()
    if context is None:
        return 0.0
    run = context.task_run
    return seconds_spent_before(run.run_count, run.start_time, dt.datetime.now(dt.UTC))


@task(
    name="poll-video",
    task_run_name="poll-video-{task_id}",
    retries=len(POLL_RETRY_DELAYS),
    retry_delay_seconds=list(POLL_RETRY_DELAYS),
    retry_condition_fn=poll_failure_is_transient,
    cache_key_fn=_poll_cache_key,
    persist_result=True,
    result_serializer="json",
)
async def apoll_video(
    task_id: str,
    credentials_block: str | None = None,
    max_wait_seconds: float | None = None,
    first_poll_delay: float | None = None,
    prompt: str | None = None,
) -> VideoTask:
    """Wait for a task to complete, showing its progress live; raise if it fails or stalls.

    One poll loop inside one task run, paced by the client's schedule. A progress artifact on the
    run follows the API's progress, each status change is logged, and ``completed``/``failed``
    events are emitted. Pass ``first_poll_delay=0`` when resuming an old task id. A completed
    task is cached by its id: polling it again, in any run, makes no status call (its expired URL
    is renewed by ``archive_video``).

    Prefect retries (``retries``, ``retry_delay_seconds``, tunable with ``.with_options``) only
    follow :func:`poll_failure_is_transient`, and a retry waits out what is left of the same
    deadline (``max_wait_seconds``, default ``OMNIFLASH_POLL_TIMEOUT_SECONDS``) instead of
    starting a new one. Reads are at least ``OMNIFLASH_POLL_MIN_SECONDS`` apart and each is at
    most ``OMNIFLASH_MAX_ATTEMPTS`` calls, so one task id costs at most
    ``(retries + 1 + max_wait / poll_min) * max_attempts`` status calls: 1,815 with the defaults
    (2 retries, 1800 s, 5 s, 5 attempts).
    """
    progress = TaskProgress(validate_task_id(task_id), get_run_logger())
    done = await poll_step(
        task_id,
        progress,
        credentials_block=credentials_block,
        max_wait_seconds=max_wait_seconds,
        waited_before=_seconds_spent_by_earlier_attempts(),
        first_poll_delay=first_poll_delay,
        prompt=prompt,
    )
    await progress.finish()
    return done


poll_video = dispatching_task(apoll_video)


# -- archive ---------------------------------------------------------------------------------


def _archive_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return archive_record_key(
        parameters["task"].id,
        parameters.get("storage") or default_storage(),
        parameters.get("prefix", "omniflash"),
    )


@task(
    name="archive-video",
    task_run_name="archive-video-{task.id}",
    cache_key_fn=_archive_cache_key,
    persist_result=True,
    result_serializer="json",
)
async def aarchive_video(
    task: VideoTask,
    storage: WritableFileSystem | None = None,
    prefix: str = "omniflash",
    request: VideoRequest | None = None,
    credentials_block: str | None = None,
) -> ArchivedVideo:
    """Stream a completed video into ``storage`` (default: the local archive directory).

    The key is ``<prefix>/<YYYY-MM-DD>/<task_id>.mp4`` with a sidecar JSON beside it. An expired
    URL is renewed by reading the task once more; if that URL fails too,
    :class:`VideoExpiredError` is raised. The video never appears half-written under its key.
    Concurrent archives of one task to one destination download it once: the others wait and
    return the same result.
    """
    return await archive_step(
        task,
        await current_record_storage(),
        storage=storage,
        prefix=prefix,
        request=request,
        credentials_block=credentials_block,
    )


archive_video = dispatching_task(aarchive_video)


# -- upload an image -------------------------------------------------------------------------

#: How long an uploaded image's URL is reused. The provider keeps it 72 hours; a URL handed out
#: from the cache must outlive the video it is submitted with (a poll deadline of 30 minutes by
#: default, a retried flow some hours later), so it is reused for a day at most and always has
#: two days left.
UPLOAD_CACHE_EXPIRATION: Final = dt.timedelta(hours=24)


def upload_record_key(image_sha256: str, credentials_block: str | None) -> str:
    """The cache key of one image uploaded through one account: the image's bytes (not its name,
    so a renamed or moved copy is not uploaded again) and the credentials block, else the API
    root of the ``OMNIFLASH_*`` settings (never the key itself)."""
    account = f"block:{credentials_block}" if credentials_block else OmniFlashSettings().base_url
    digest = hashlib.sha256(f"{image_sha256}|{account}".encode()).hexdigest()
    return f"omniflash-upload-{digest}"


def _upload_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    try:
        image = read_image_file(parameters["path"])
    except InvalidImageFileError:
        return None  # nothing to cache: the task run raises the same error before sending
    return upload_record_key(image.sha256, parameters.get("credentials_block"))


@task(
    name="upload-image",
    task_run_name="upload-image",
    cache_key_fn=_upload_cache_key,
    cache_expiration=UPLOAD_CACHE_EXPIRATION,
    persist_result=True,
    result_serializer="json",
)
async def aupload_image(path: str | os.PathLike[str], credentials_block: str | None = None) -> str:
    """Upload a local JPEG, PNG, WebP or GIF (up to 20 MB) and return its URL, for
    ``VideoRequest.image_urls`` (image-to-video, reference fusion).

    ``path`` is made absolute where the run starts. A missing file, another type or one over
    20 MB raises :class:`~omniflash_prefect.errors.InvalidImageFileError` before anything is
    sent. An upload costs nothing, but the URL lives only 72 hours: the result is cached by the
    image's SHA-256 and the credentials block (:func:`upload_record_key`) for
    ``UPLOAD_CACHE_EXPIRATION`` (24 hours), so a retried or re-run flow submits the URL it
    uploaded before, which still has two days to live, instead of uploading the image again.
    """
    image = read_image_file(path)
    async with await load_client(credentials_block) as client:
        url = await client.upload_image(image.path)
    get_run_logger().info("uploaded %s as %s", image.path, url)
    return url


upload_image = dispatching_task(aupload_image)
