"""What a sweep costs over many submission records, and that it reads the provider only for the
videos that need it.

A local record directory holds ``--records`` submission records of paid tasks: ``--unarchived``
of them are real tasks on the emulator (completed, never archived: the sweep archives them), the
rest have an archive record beside them, as the videos their runs archived do. The
``sweep_paid_videos`` flow then runs twice in this process on ``prefect server start``: the first
sweep archives the unarchived videos and marks every other record ``archived``; the second reads
only the records. Printed per sweep: wall time, provider calls (status reads and downloads, as the
emulator counted them) and Prefect API calls by endpoint.

``uv run --frozen python benchmarks/sweep_records.py`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import emit, prefect_server
from prefect.filesystems import LocalFileSystem
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)

from omniflash_prefect import (
    OmniFlashClient,
    OmniFlashCredentials,
    VideoRequest,
    asweep_paid_videos,
)
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.claims import record_store
from omniflash_prefect.video.salvage import SweepReport
from omniflash_prefect.video.setup import VideoSetup
from omniflash_prefect.video.steps import archive_record_key
from omniflash_prefect.video.submissions import SubmissionRecord, submission_key, write_submission
from tests.support.api_calls import PrefectApiCalls


async def fill(
    records: Path, archive: Path, emulator: EmulatorServer, block: str, total: int, open_: int
) -> None:
    """``total`` records of paid tasks: ``open_`` real and unarchived, the rest archived."""
    store = record_store(LocalFileSystem(basepath=str(records)))
    storage = LocalFileSystem(basepath=str(archive))
    setup = VideoSetup(credentials_block=block, archive_dir=str(archive))
    async with OmniFlashClient(emulator.api_key, base_url=emulator.base_url) as client:
        for number in range(total):
            request = VideoRequest(prompt=f"Record {number}", duration=4)
            if number < open_:
                task_id = await client.submit(request)
            else:
                task_id = f"task_{number:026d}"
                archived = ArchivedVideo(
                    task_id=task_id,
                    location=str(archive / f"{task_id}.mp4"),
                    storage_key=f"{task_id}.mp4",
                    sidecar_location=str(archive / f"{task_id}.json"),
                    sha256="0" * 64,
                    size_bytes=1,
                    download_seconds=0.0,
                )
                key = archive_record_key(task_id, storage, "omniflash")
                await store.awrite(archived, key=f"{key}-archived")
            record = SubmissionRecord(
                state="submitted",
                at=datetime.now(UTC),
                fingerprint=request.fingerprint(),
                task_id=task_id,
                request=request,
                setup=setup,
            )
            await write_submission(store, submission_key(request, f"bench-{number}"), record)


async def one_sweep(emulator: EmulatorServer) -> dict[str, Any]:
    before = emulator.state.snapshot()
    calls = PrefectApiCalls()
    started = time.monotonic()
    with calls.counting():
        state = await asweep_paid_videos(return_state=True)
    seconds = time.monotonic() - started
    report = await state.aresult(raise_on_failure=False)
    assert isinstance(report, SweepReport)
    after = emulator.state.snapshot()
    return {
        "seconds": round(seconds, 2),
        "records": report.records,
        "counts": {k: v for k, v in report.counts.items() if v},
        "provider_status_reads": sum(t["polls"] for t in after["tasks"].values())
        - sum(t["polls"] for t in before["tasks"].values()),
        "provider_downloads": sum(t["downloads"] for t in after["tasks"].values())
        - sum(t["downloads"] for t in before["tasks"].values()),
        "prefect_api_calls": calls.summary(report.records),
    }


async def main(total: int, open_: int, workdir: Path) -> dict[str, Any]:
    records, archive = workdir / "records", workdir / "videos"
    records.mkdir()
    with EmulatorServer(EmulatorConfig(job_seconds=0.0)) as emulator:
        block = "sweep-bench"
        await OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).asave(
            block, overwrite=True
        )
        filled = time.monotonic()
        await fill(records, archive, emulator, block, total, open_)
        fill_seconds = time.monotonic() - filled
        first = await one_sweep(emulator)
        second = await one_sweep(emulator)
    return {
        "records": total,
        "unarchived": open_,
        "fill_seconds": round(fill_seconds, 2),
        "first_sweep": first,
        "second_sweep": second,
    }


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--unarchived", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omniflash-sweep-") as scratch:
        workdir = Path(scratch)
        with (
            prefect_server(workdir / "prefect-home") as server,
            temporary_settings(
                {
                    PREFECT_API_URL: server.api_url,
                    PREFECT_LOCAL_STORAGE_PATH: workdir / "records",
                    PREFECT_SERVER_ANALYTICS_ENABLED: False,
                }
            ),
        ):
            emit(asyncio.run(main(args.records, args.unarchived, workdir)))


if __name__ == "__main__":
    run()
