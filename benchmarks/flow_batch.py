"""The contender: ``generate_video_batch`` run against a Prefect server (rows as task runs of
the batch run).

Saves an ``OmniFlashCredentials`` block pointing at the emulator (not timed), then times one call
of ``generate_video_batch(requests=[...], credentials_block=..., max_concurrency=...)``. Needs
``PREFECT_API_URL`` (a real server) and the ``OMNIFLASH_*`` poll bounds and archive dir in the
environment. With ``--cprofile FILE`` the flow call runs under cProfile (main thread only).

Run by ``batch_overhead.py``; prints one ``BENCH-RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import time
import uuid
from typing import Any

from benchlib import cpu_seconds, emit, peak_rss_kib
from prefect.settings import PREFECT_API_URL

from omniflash_prefect import OmniFlashCredentials
from omniflash_prefect.batches.flow import generate_video_batch
from omniflash_prefect.batches.options import BatchRunOptions, FanOut
from omniflash_prefect.batches.report import BatchReport
from tests.support.api_calls import PrefectApiCalls


def rows(count: int) -> list[dict[str, Any]]:
    """``count`` distinct 4-second 720p requests, the same bodies the plain script sends."""
    return [
        {"id": f"v{i:05d}", "prompt": f"Video {i}: a lighthouse at dusk", "duration": 4}
        for i in range(count)
    ]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if not PREFECT_API_URL.value():
        raise SystemExit("set PREFECT_API_URL to a running Prefect server")
    block = f"bench-{uuid.uuid4().hex[:12]}"
    await OmniFlashCredentials(api_key=args.api_key, base_url=args.base_url).asave(block)
    requests = rows(args.videos)
    calls = PrefectApiCalls()
    profiler = cProfile.Profile() if args.cprofile else None
    with calls.counting() if args.count_api_calls else contextlib.nullcontext():
        started = time.monotonic()
        if profiler is not None:
            profiler.enable()
        state = await generate_video_batch(
            requests=requests,
            credentials_block=block,
            options=BatchRunOptions(
                max_concurrency=args.concurrency,
                fan_out=FanOut(args.fan_out),
                batch_id=f"bench-{uuid.uuid4().hex[:8]}",
                **({"rows_per_run": args.rows_per_run} if args.rows_per_run else {}),
            ),
            return_state=True,
        )
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        wall = time.monotonic() - started
    report = await state.aresult(raise_on_failure=False)
    if not isinstance(report, BatchReport):
        raise TypeError(f"the batch returned {type(report).__name__}")
    errors = [f"{item.id}: {item.error}" for item in report.items if item.status != "archived"]
    return {
        "contender": "batch_flow",
        "fan_out": args.fan_out,
        "videos": args.videos,
        "archived": sum(item.status == "archived" for item in report.items),
        "errors": errors[:5],
        "wall_seconds": round(wall, 2),
        "state": state.type.value,
        "prefect_api_calls": calls.summary(args.videos) if args.count_api_calls else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--videos", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--fan-out", choices=[f.value for f in FanOut], default=FanOut.TASKS.value)
    parser.add_argument("--rows-per-run", type=int, default=None, help="fan_out=deployments")
    parser.add_argument("--cprofile", default=None, help="write cProfile stats of the flow here")
    parser.add_argument(
        "--count-api-calls", action="store_true", help="count Prefect API calls by endpoint"
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    result["peak_rss_kib"] = peak_rss_kib()
    result["cpu_seconds"] = round(cpu_seconds(), 2)
    result["archive_dir"] = os.environ.get("OMNIFLASH_ARCHIVE_DIR")
    emit(result)


if __name__ == "__main__":
    main()
