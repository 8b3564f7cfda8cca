"""What claiming a submission key costs, against what orchestrating a video costs.

Contenders, each doing N submissions with fresh keys into a local result storage directory, the
provider answered in memory (``httpx.MockTransport``, so no network time hides anything):

* ``records``: the bookkeeping without a claim, as before claims existed: is an intent recorded,
  record it in flight, send, record the task id;
* ``claimed``: ``submit_once``, the same bookkeeping under the key's claim (a Prefect transaction
  with ``SERIALIZABLE`` isolation over the ``flock`` lock manager).

They alternate A B A B over rounds; the claim's cost is the difference of the medians. Then the
same across processes (``--processes`` children at once on the same directory, first on keys of
their own, then all on the same keys), 16 coroutines racing for one key, and, as the yardstick,
the wall time of one ``generate_video`` run on a real ``prefect server start`` against the
emulator with an instant job (``--videos`` of them, one after another): the Prefect work a video
costs whatever the provider does.

``uv run --frozen python benchmarks/claim_cost.py`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import httpx
from benchlib import REPO, clean_env, emit, parse_result, prefect_server
from prefect.filesystems import LocalFileSystem

from omniflash_prefect import OmniFlashClient, VideoRequest
from omniflash_prefect.video.claims import record_store
from omniflash_prefect.video.submissions import (
    SubmissionRecord,
    read_submission,
    submit_once,
    write_submission,
)

REQUEST = VideoRequest(prompt="A benchmark of claims", duration=4)
_TASK_NUMBERS = count()


def in_memory_provider() -> OmniFlashClient:
    """A real client whose submit is answered in memory, instantly."""

    def answer(request: httpx.Request) -> httpx.Response:
        task_id = f"task_{next(_TASK_NUMBERS):026d}"
        return httpx.Response(
            200, json={"code": 200, "data": [{"status": "submitted", "task_id": task_id}]}
        )

    return OmniFlashClient("benchmark-key", transport=httpx.MockTransport(answer))


async def connect() -> OmniFlashClient:
    return in_memory_provider()


async def records_only(storage: LocalFileSystem, key: str) -> str:
    """The bookkeeping of a submission without a claim (check, mark, send, record)."""
    store = record_store(storage)
    found = await read_submission(store, key)
    if found is not None and found.task_id is not None:
        return found.task_id
    in_flight = SubmissionRecord(
        state="in-flight", at=datetime.now(UTC), fingerprint=REQUEST.fingerprint()
    )
    async with await connect() as client:
        await write_submission(store, key, in_flight)
        task_id = await client.submit(REQUEST)
    await write_submission(store, key, in_flight.moved("submitted", task_id=task_id))
    return task_id


async def claimed(storage: LocalFileSystem, key: str) -> str:
    return (await submit_once(REQUEST, key, storage, connect)).task_id


Contender = Callable[[LocalFileSystem, str], Awaitable[str]]
CONTENDERS: dict[str, Contender] = {"records": records_only, "claimed": claimed}


def fresh_key() -> str:
    return f"omniflash-submit-{uuid.uuid4().hex}{uuid.uuid4().hex}"


async def per_submission_ms(
    contender: Contender, storage: LocalFileSystem, keys: list[str]
) -> float:
    started = time.perf_counter()
    for key in keys:
        await contender(storage, key)
    return 1000 * (time.perf_counter() - started) / len(keys)


async def alternate(storage: LocalFileSystem, submissions: int, rounds: int) -> dict[str, Any]:
    """records, claimed, records, claimed...: the median ms per submission of each."""
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(rounds):
        for name, contender in CONTENDERS.items():
            keys = [fresh_key() for _ in range(submissions)]
            times[name].append(await per_submission_ms(contender, storage, keys))
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    return {
        "ms_per_submission": medians,
        "claim_ms": round(medians["claimed"] - medians["records"], 3),
        "rounds": {name: [round(v, 3) for v in values] for name, values in times.items()},
    }


async def racing(storage: LocalFileSystem, callers: int, rounds: int) -> dict[str, Any]:
    """``callers`` coroutines on one key: one sends, the others wait and read its task id."""
    walls = []
    for _ in range(rounds):
        key = fresh_key()
        started = time.perf_counter()
        got = await asyncio.gather(*(claimed(storage, key) for _ in range(callers)))
        walls.append(1000 * (time.perf_counter() - started))
        assert len(set(got)) == 1
    return {"callers": callers, "ms_for_all_median": round(statistics.median(walls), 3)}


def child(directory: Path, submissions: int, keys_file: Path | None) -> None:
    """One process of the cross-process runs: claimed submissions, timed."""
    storage = LocalFileSystem(basepath=str(directory))
    keys = (
        json.loads(keys_file.read_text())
        if keys_file is not None
        else [fresh_key() for _ in range(submissions)]
    )
    emit({"ms_per_submission": round(asyncio.run(per_submission_ms(claimed, storage, keys)), 3)})


def across_processes(directory: Path, processes: int, submissions: int) -> dict[str, Any]:
    def run(keys_file: Path | None) -> list[float]:
        argv = [sys.executable, __file__, "--child", str(directory), "--submissions"]
        argv.append(str(submissions))
        if keys_file is not None:
            argv += ["--keys", str(keys_file)]
        children = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: S603
            for _ in range(processes)
        ]
        outputs = [process.communicate()[0] for process in children]
        return [parse_result(output)["ms_per_submission"] for output in outputs]

    directory.mkdir(parents=True, exist_ok=True)
    shared = directory / "shared-keys.json"
    shared.write_text(json.dumps([fresh_key() for _ in range(submissions)]))
    return {
        "processes": processes,
        "own_keys_ms_per_submission": run(None),
        "same_keys_ms_per_submission": run(shared),
    }


YARDSTICK = """
import json, sys, time
from omniflash_prefect import OmniFlashCredentials, generate_video
OmniFlashCredentials(api_key=sys.argv[1], base_url=sys.argv[2]).save("bench", overwrite=True)
generate_video(prompt="A warm-up video", duration=4, credentials_block="bench")
walls = []
for number in range(int(sys.argv[3])):
    started = time.perf_counter()
    generate_video(prompt=f"Video {number}", duration=4, credentials_block="bench")
    walls.append(1000 * (time.perf_counter() - started))
print("BENCH-RESULT " + json.dumps({"ms_per_video": walls}))
"""


def orchestration_per_video(root: Path, videos: int) -> dict[str, Any]:
    """The wall time of one generate_video run, the provider answering at once."""
    from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer

    with (
        prefect_server(root / "prefect-home") as server,
        EmulatorServer(EmulatorConfig(job_seconds=0, unlimited_balance=True)) as emulator,
    ):
        env = clean_env(
            root / "prefect-home",
            PREFECT_API_URL=server.api_url,
            OMNIFLASH_ARCHIVE_DIR=str(root / "videos"),
            OMNIFLASH_FIRST_POLL_DELAY_SECONDS="0",
            OMNIFLASH_POLL_MIN_SECONDS="0.05",
            OMNIFLASH_POLL_MAX_SECONDS="0.05",
        )
        argv = [sys.executable, "-c", YARDSTICK, emulator.api_key, emulator.base_url, str(videos)]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        walls = parse_result(done.stdout + done.stderr)["ms_per_video"]
    return {"videos": videos, "ms_per_video_median": round(statistics.median(walls), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--videos", type=int, default=10)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.submissions, args.keys)
        return
    os.chdir(REPO)
    with tempfile.TemporaryDirectory(prefix="omniflash-claims-") as temporary:
        root = Path(temporary)
        storage = LocalFileSystem(basepath=str(root / "records"))
        one_process = asyncio.run(alternate(storage, args.submissions, args.rounds))
        race = asyncio.run(racing(storage, 16, args.rounds))
        processes = across_processes(root / "shared", args.processes, args.submissions)
        yardstick = orchestration_per_video(root, args.videos)
    claim_ms = one_process["claim_ms"]
    result = {
        "one_process": one_process,
        "sixteen_racing_for_one_key": race,
        "across_processes": processes,
        "generate_video": yardstick,
        "claim_share_of_a_video_percent": round(
            100 * claim_ms / yardstick["ms_per_video_median"], 3
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
