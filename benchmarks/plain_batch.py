"""The baseline: a plain asyncio + httpx script that submits, polls and downloads N videos.

No Prefect and no ``omniflash_prefect`` import: what a careful hand-written script does. It uses
the same poll bounds as the package (``OMNIFLASH_FIRST_POLL_DELAY_SECONDS``, ``..._MIN_...``,
``..._MAX_...``) and the same pacing rule inside them (slow while the video is far from done,
quick when it should be about to finish), so both make about the same number of provider calls.

Run by ``batch_overhead.py``; prints one ``BENCH-RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
from benchlib import PollBounds, cpu_seconds, emit, peak_rss_kib

SUBMIT_PATH = "/v1/videos/generations"


def interval_after(task: dict[str, Any], elapsed: float, bounds: PollBounds) -> float:
    """Seconds to the next status read: the estimated remaining time, within [min, max]."""
    progress = task.get("progress")
    estimated = task.get("estimated_time")
    remaining: float | None = None
    if isinstance(progress, int | float) and 0 < progress < 100 and elapsed > 0:
        remaining = (100 - progress) / (progress / elapsed)
    elif isinstance(estimated, int | float):
        remaining = max(estimated - elapsed, 0.0)
    if remaining is None:
        return bounds.max_interval
    return min(max(remaining, bounds.min_interval), bounds.max_interval)


async def one_video(
    http: httpx.AsyncClient, auth: dict[str, str], index: int, bounds: PollBounds, out_dir: Path
) -> dict[str, Any]:
    body = {
        "model": "Omni-Flash-Ext",
        "prompt": f"Video {index}: a lighthouse at dusk",
        "duration": 4,
        "resolution": "720p",
        "aspect_ratio": "16:9",
    }
    answer = await http.post(SUBMIT_PATH, json=body, headers=auth)
    answer.raise_for_status()
    task_id: str = answer.json()["data"][0]["task_id"]
    started = time.monotonic()
    delay = bounds.first_delay
    while True:
        await asyncio.sleep(delay)
        task: dict[str, Any] | None = None
        try:
            status = await http.get(f"/v1/tasks/{task_id}", headers=auth)
            status.raise_for_status()
            task = status.json()["data"]
        except httpx.HTTPError:
            pass
        elapsed = time.monotonic() - started
        if task is not None:
            if task["status"] == "completed":
                break
            if task["status"] in {"failed", "cancelled"}:
                raise RuntimeError(f"task {task_id} ended {task['status']}")
        if elapsed > bounds.timeout:
            raise TimeoutError(task_id)
        delay = interval_after(task, elapsed, bounds) if task else bounds.min_interval
    url = task["result"]["videos"][0]["url"][0]
    target = out_dir / f"{task_id}.mp4"
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    size = 0
    # The key goes with API calls only, never to the (CDN-like) host of the video URL.
    async with http.stream("GET", url) as response:
        response.raise_for_status()
        with part.open("wb") as sink:
            async for chunk in response.aiter_raw(1024 * 1024):
                digest.update(chunk)
                sink.write(chunk)
                size += len(chunk)
    part.replace(target)
    return {"task_id": task_id, "bytes": size, "sha256": digest.hexdigest()}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    bounds = PollBounds.from_env()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any I/O
    slots = asyncio.Semaphore(args.concurrency)
    auth = {"Authorization": f"Bearer {args.api_key}"}

    async def bounded(index: int) -> dict[str, Any]:
        async with slots:
            return await one_video(http, auth, index, bounds, out_dir)

    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=args.base_url,
        timeout=httpx.Timeout(30.0, connect=10.0, pool=None),
        # httpx keeps only 20 idle connections by default: with hundreds of videos the rest
        # would be closed and reopened on every call. Keep the whole pool alive instead.
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        trust_env=False,
    ) as http:
        results = await asyncio.gather(
            *(bounded(i) for i in range(args.videos)), return_exceptions=True
        )
    wall = time.monotonic() - started
    done = [r for r in results if isinstance(r, dict)]
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {
        "contender": "plain",
        "videos": args.videos,
        "archived": len(done),
        "errors": errors[:5],
        "wall_seconds": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--videos", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    result["peak_rss_kib"] = peak_rss_kib()
    result["cpu_seconds"] = round(cpu_seconds(), 2)
    emit(result)


if __name__ == "__main__":
    main()
