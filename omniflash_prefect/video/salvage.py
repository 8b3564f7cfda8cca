"""Salvage: paid videos that no run will archive, found and archived without anyone remembering.

A run can stop after its video was paid for and before it was archived: cancelled from the UI,
timed out, killed with its worker, or a pipeline of the user's failing between ``submit_video``
and ``archive_video``. The provider's download URLs expire after about a day, and then the money
is lost. Every submission leaves a record that says where its video goes
(:class:`~omniflash_prefect.video.submissions.SubmissionRecord`); a sweep reads them all in a
run's record storage and, for each task that was paid for:

* already archived where its run would have put it (the archive record exists): counted, no call
  to the provider, and the record marked ``archived`` so the next sweep reads only the record;
* its run still going: left to it;
* completed at the provider: archived now, where its run would have put it, under the same claim
  a run takes (a sweep racing a resumed batch, or another sweep, downloads it once), its cost
  counted on its spend limit, and an ``omniflash.video.salvaged`` event;
* still generating: left for the next sweep;
* failed or cancelled at the provider (free) or its URL expired (paid and lost, said loudly with
  its cost, and an ``omniflash.video.expired`` event): recorded, so no sweep reads it again.

A submission whose outcome is unknown (its sender died while the request was in flight) is
reported with its age, its request's fingerprint and what to do.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args
from uuid import UUID

from prefect import Flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.exceptions import ObjectNotFound
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.logging.loggers import flow_run_logger
from prefect.states import Cancelled
from pydantic import BaseModel, ConfigDict, Field

from omniflash_prefect.errors import NotFoundError, UsageError, VideoExpiredError
from omniflash_prefect.video.claims import current_record_storage, record_store
from omniflash_prefect.video.credentials import load_client
from omniflash_prefect.video.observability import emit_video_event, table_section
from omniflash_prefect.video.setup import LoadedSetup, VideoSetup, load_storage
from omniflash_prefect.video.spend_limits import record_settlement
from omniflash_prefect.video.steps import archive_once, archive_record_key, read_archived
from omniflash_prefect.video.submissions import SubmissionRecord, read_submission, write_submission

#: What a sweep did with one paid task, or found of one submission of unknown outcome.
Outcome = Literal[
    "archived", "already_archived", "in_run", "generating", "failed", "expired", "unknown", "error"
]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
#: A submission in flight for less than this is being sent right now, not of unknown outcome.
IN_FLIGHT_GRACE_SECONDS: Final = 120.0
#: Records read (and videos archived) at once.
SWEEP_CONCURRENCY: Final = 16
_SUFFIX: Final = "-intent"
_PREFIX: Final = "omniflash-submit-"


class SweptVideo(BaseModel):
    """What a sweep found of one submission, and did."""

    model_config = ConfigDict(frozen=True)

    key: str = Field(description="The submission key.")
    outcome: Outcome
    task_id: str | None = None
    location: str | None = Field(default=None, description="Where its video is archived.")
    cost: float | None = None
    flow_run_id: str | None = Field(default=None, description="The run that paid for it.")
    age_seconds: float = Field(description="Since its record last changed.")
    fingerprint: str
    note: str = Field(default="", description="Why, or what to do.")


class SweepReport(BaseModel):
    """Every paid, unarchived submission a sweep saw, by outcome; archived ones are counted."""

    model_config = ConfigDict(frozen=True)

    records: int = Field(description="Submission records read.")
    videos: tuple[SweptVideo, ...]
    counts: dict[str, int]

    @property
    def lost_cost(self) -> float:
        """What the expired videos cost (those whose cost is known)."""
        return round(sum(v.cost or 0.0 for v in self.videos if v.outcome == "expired"), 6)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing of unknown outcome, nothing the sweep could not read (the next
        sweep tries those again)."""
        return not any(self.counts.get(outcome) for outcome in ("expired", "unknown", "error"))

    def of(self, outcome: Outcome) -> list[SweptVideo]:
        return [video for video in self.videos if video.outcome == outcome]

    def headline(self) -> str:
        parts = [
            f"{count} {name.replace('_', ' ')}" for name, count in self.counts.items() if count
        ]
        lost = f"; lost {self.lost_cost:g}" if self.counts.get("expired") else ""
        return f"{self.records} records: " + (", ".join(parts) or "nothing to salvage") + lost


async def submission_keys(storage: WritableFileSystem) -> list[str]:
    """Every submission key recorded in ``storage``: a local directory, or an S3 bucket."""
    if isinstance(storage, LocalFileSystem):
        names = await asyncio.to_thread(_local_names, storage.basepath)
    elif callable(getattr(storage, "alist_objects", None)):
        objects = await storage.alist_objects(delimiter="/")  # type: ignore[attr-defined]
        names = [str(item["Key"]).rpartition("/")[2] for item in objects]
    else:
        raise UsageError(
            f"a sweep lists records in a local directory or an S3 bucket, not in a "
            f"{type(storage).__name__} block"
        )
    return sorted(name.removesuffix(_SUFFIX) for name in names if name.endswith(_SUFFIX))


def _local_names(basepath: str | None) -> list[str]:
    base = Path(basepath).expanduser() if basepath else Path.cwd()
    return [path.name for path in base.glob(f"{_PREFIX}*")]


async def sweep(
    records: WritableFileSystem,
    defaults: VideoSetup,
    *,
    flow_run_id: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SweepReport:
    """Salvage every paid, unarchived video recorded in ``records`` (only those paid by
    ``flow_run_id``, when given); ``defaults`` says where to archive a video whose run did not
    say (the ``submit_video`` task)."""
    keys = await submission_keys(records)
    gate = asyncio.Semaphore(SWEEP_CONCURRENCY)
    live = _LiveRuns()

    async def one(key: str) -> SweptVideo | None:
        async with gate:
            try:
                return await _sweep_one(key, records, defaults, flow_run_id, live, now())
            except Exception as exc:  # one record's trouble must not stop the sweep
                get_run_logger().warning("Could not sweep %s: %s", key, exc)
                return SweptVideo(
                    key=key, outcome="error", age_seconds=0.0, fingerprint="", note=str(exc)
                )

    found = [video for video in await asyncio.gather(*map(one, keys)) if video is not None]
    tally = Counter(video.outcome for video in found)
    return SweepReport(
        records=len(keys),
        videos=tuple(found),
        counts={outcome: tally.get(outcome, 0) for outcome in OUTCOMES},
    )


async def _sweep_one(
    key: str,
    records: WritableFileSystem,
    defaults: VideoSetup,
    flow_run_id: str | None,
    live: _LiveRuns,
    now: datetime,
) -> SweptVideo | None:
    store = record_store(records)
    record = await read_submission(store, key)
    if record is None or (flow_run_id is not None and record.flow_run_id != flow_run_id):
        return None
    age = (now - record.at).total_seconds()

    def seen(outcome: Outcome, note: str = "", **fields: object) -> SweptVideo:
        return SweptVideo.model_validate(
            {
                "key": key,
                "outcome": outcome,
                "task_id": record.task_id,
                "cost": record.cost,
                "flow_run_id": record.flow_run_id,
                "age_seconds": round(age, 1),
                "fingerprint": record.fingerprint,
                "note": note,
                **fields,
            }
        )

    if record.state == "in-flight" and age >= IN_FLIGHT_GRACE_SECONDS:
        return seen("unknown", _UNKNOWN_ADVICE.format(key=key))
    if record.state != "submitted" or record.task_id is None:
        return None
    if record.flow_run_id != flow_run_id and await live.running(record.flow_run_id):
        return seen("in_run", "its run is still going")
    setup = await _destination(record, defaults).load()
    archived = await read_archived(
        store, archive_record_key(record.task_id, setup.storage, setup.archive_prefix)
    )
    if archived is not None:
        await write_submission(store, key, _archived(record, archived.location, archived.cost))
        return seen("already_archived", location=archived.location, cost=archived.cost)
    return await _salvage(key, record, setup, seen)


async def _salvage(
    key: str, record: SubmissionRecord, setup: LoadedSetup, seen: Callable[..., SweptVideo]
) -> SweptVideo:
    """Read the task once (a fresh URL) and archive it where its run would have."""
    assert record.task_id is not None
    store = record_store(setup.records)
    try:
        async with await load_client(setup.credentials_block) as client:
            task = await client.get_task(record.task_id)
    except NotFoundError as exc:
        await write_submission(store, key, record.moved("expired"))
        return seen("expired", f"the provider no longer knows the task: {exc}")
    if task.status in ("failed", "cancelled"):
        await write_submission(store, key, record.moved("failed"))
        return seen("failed", f"{task.status} at the provider: not charged")
    if task.status != "completed":
        return seen("generating", f"{task.status} ({task.progress or 0}%)")
    try:
        archived, downloaded = await archive_once(
            task,
            setup.records,
            storage=setup.storage,
            prefix=setup.archive_prefix,
            request=record.request,
            credentials_block=setup.credentials_block,
        )
    except VideoExpiredError as exc:
        await write_submission(store, key, record.moved("expired", cost=task.cost))
        get_run_logger().error(
            "PAID VIDEO LOST: task %s (cost %s) expired before it was archived: %s",
            task.id,
            task.cost,
            exc,
        )
        emit_video_event("expired", task.id, payload={"cost": task.cost, "key": key})
        return seen("expired", str(exc), cost=task.cost)
    await write_submission(store, key, _archived(record, archived.location, archived.cost))
    if not downloaded:  # another sweep, or the run resumed, got there first
        return seen("already_archived", location=archived.location, cost=archived.cost)
    emit_video_event(
        "salvaged",
        task.id,
        prompt=archived.prompt,
        payload={"location": archived.location, "flow_run_id": record.flow_run_id},
    )
    await _settle(record, archived.cost)
    return seen("archived", location=archived.location, cost=archived.cost)


_UNKNOWN_ADVICE: Final = (
    "its sender died while the request was in flight: check the provider's task list, then "
    "`omniflash release {key} --task-id <task id>` if it made a task, else "
    "`omniflash release {key}`"
)


def _destination(record: SubmissionRecord, defaults: VideoSetup) -> VideoSetup:
    """Where the record's run would have archived its video; the sweep's ``defaults`` for what
    the record does not say."""
    said = record.setup
    if said is None:
        return defaults
    if said.storage_block or said.archive_dir:
        return said.model_copy(update={"result_storage_block": defaults.result_storage_block})
    return defaults.model_copy(
        update={"credentials_block": said.credentials_block or defaults.credentials_block}
    )


def _archived(record: SubmissionRecord, location: str, cost: float | None) -> SubmissionRecord:
    return record.moved("archived", location=location, cost=cost)


async def _settle(record: SubmissionRecord, cost: float | None) -> None:
    """Count a salvaged video on its run's spend limit (once per task, whoever counts it)."""
    if record.spend_limit is None or record.task_id is None:
        return
    try:
        await record_settlement(record.spend_limit, record.task_id, cost)
    except Exception as exc:  # the video is archived: that is the sweep's outcome
        get_run_logger().warning(
            "Task %s is archived, but its cost could not be counted on spend limit %r: %s",
            record.task_id,
            record.spend_limit,
            exc,
        )


class _LiveRuns:
    """Whether a flow run is still going, read once per run per sweep."""

    def __init__(self) -> None:
        self._known: dict[str, asyncio.Future[bool]] = {}

    async def running(self, flow_run_id: str | None) -> bool:
        if flow_run_id is None:
            return False
        if flow_run_id not in self._known:
            self._known[flow_run_id] = asyncio.ensure_future(_is_running(flow_run_id))
        return await asyncio.shield(self._known[flow_run_id])


async def _is_running(flow_run_id: str) -> bool:
    async with get_client() as client:
        try:
            run = await client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
        except ObjectNotFound:
            return False
    return run.state is not None and not run.state.is_final()


async def paid_and_unarchived(
    records: WritableFileSystem, flow_run_id: str
) -> list[tuple[SubmissionRecord, VideoSetup]]:
    """The tasks ``flow_run_id`` paid for that no archive record covers, each with where a sweep
    will archive it: what the run's end hands over. Reads records only, never the provider."""
    store = record_store(records)
    found = []
    for key in await submission_keys(records):
        record = await read_submission(store, key)
        if record is None or record.flow_run_id != flow_run_id or record.task_id is None:
            continue
        if record.state != "submitted":
            continue
        destination = _destination(record, VideoSetup())
        setup = await destination.load()
        record_key = archive_record_key(record.task_id, setup.storage, setup.archive_prefix)
        if await read_archived(store, record_key) is None:
            found.append((record, destination))
    return found


def hand_over_message(paid: list[tuple[SubmissionRecord, VideoSetup]], flow_run_id: str) -> str:
    """What a run that ended without its videos says of them: each task, where a sweep will
    archive it, and how a sweep runs."""
    where = "; ".join(
        f"task {record.task_id} -> {setup.storage_block or setup.archive_dir or 'the default'}"
        + (f"/{setup.archive_prefix}" if setup.archive_prefix else "")
        for record, setup in paid
    )
    return (
        f"Paid for and not archived, handed over to a sweep: {where}. The sweep-paid-videos "
        f"deployment archives them (its Automation starts it when a run ends like this one), or "
        f"`omniflash sweep --flow-run-id {flow_run_id}`."
    )


async def hand_over_paid_videos(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """The hook of a run that ended Cancelled, Crashed or Failed: name in its log and its final
    state's message each task it paid for and did not archive, and how a sweep archives it.
    Never raises: a hook's failure must not hide the run's own outcome."""
    logger = flow_run_logger(flow_run, flow)
    try:
        named = flow_run.parameters.get("result_storage_block")
        results = await load_storage(named) if isinstance(named, str) and named else None
        paid = await paid_and_unarchived(await current_record_storage(results), str(flow_run.id))
        if not paid:
            return
        message = hand_over_message(paid, str(flow_run.id))
        logger.warning("Flow run %s: %s", flow_run.name, message)
        said = f"{state.message or ''} {message}".strip()
        # A runner calls the hook while the run is Cancelling, then proposes Cancelled: the run
        # ends Cancelled here, with what it handed over (a final state is not proposed over).
        ended = (
            Cancelled(message=said)
            if state.is_cancelling()
            else State(type=state.type, name=state.name, message=said)
        )
        async with get_client() as client:
            await client.set_flow_run_state(flow_run.id, ended, force=True)
    except Exception as exc:
        logger.warning("Could not hand over flow run %s's paid videos: %s", flow_run.id, exc)


def sweep_markdown(report: SweepReport, run_page: Callable[[str], str | None]) -> str:
    """The sweep's summary: what it saved (each linked to the run that paid for it), what was
    lost and what it cost, what needs a person, and what is still on its way."""

    def run(video: SweptVideo) -> str:
        url = run_page(video.flow_run_id) if video.flow_run_id is not None else None
        return f"[{video.flow_run_id}]({url})" if url else video.flow_run_id or ""

    sections: list[tuple[str, Outcome, list[str], Callable[[SweptVideo], list[str]]]] = [
        (
            "Archived now",
            "archived",
            ["Task", "Location", "Run"],
            lambda v: [f"`{v.task_id}`", v.location or "", run(v)],
        ),
        (
            "LOST: expired before anyone archived them",
            "expired",
            ["Task", "Cost", "Run", "Why"],
            lambda v: [
                f"`{v.task_id}`",
                f"{v.cost:g}" if v.cost is not None else "unknown",
                run(v),
                v.note,
            ],
        ),
        (
            "Outcome unknown: a person must decide",
            "unknown",
            ["Key", "Age (s)", "Request", "What to do"],
            lambda v: [f"`{v.key}`", f"{v.age_seconds:.0f}", v.fingerprint[:16], v.note],
        ),
        (
            "Still generating (the next sweep looks again)",
            "generating",
            ["Task", "Status", "Run"],
            lambda v: [f"`{v.task_id}`", v.note, run(v)],
        ),
        (
            "Failed at the provider (not charged)",
            "failed",
            ["Task", "Status", "Run"],
            lambda v: [f"`{v.task_id}`", v.note, run(v)],
        ),
    ]
    lines = ["# Paid videos swept", "", report.headline() + "."]
    for title, outcome, header, row in sections:
        rows = [[cell.replace("|", "\\|") for cell in row(v)] for v in report.of(outcome)]
        lines += table_section(title, header, rows)
    return "\n".join(lines) + "\n"


async def note_on_their_runs(report: SweepReport) -> None:
    """Say on each run whose videos a sweep archived (in its final state's message: a runner
    that cancels a run sets that message after the run's own hooks) where they are now."""
    archived: dict[str, list[SweptVideo]] = {}
    for video in report.of("archived"):
        if video.flow_run_id is not None:
            archived.setdefault(video.flow_run_id, []).append(video)
    async with get_client() as client:
        for run_id, videos in archived.items():
            try:
                run = await client.read_flow_run(UUID(run_id))
                if run.state is None or not run.state.is_final():
                    continue
                said = "; ".join(f"task {v.task_id} -> {v.location}" for v in videos)
                message = f"{run.state.message or ''} Archived by a sweep: {said}.".strip()
                ended = State(type=run.state.type, name=run.state.name, message=message)
                await client.set_flow_run_state(run.id, ended, force=True)
            except Exception as exc:  # a note is not worth failing a sweep for
                get_run_logger().warning("Could not note the sweep on run %s: %s", run_id, exc)
