"""Archive throughput and memory: one large video archived locally and to S3, against a plain copy.

Starts the emulator (in this process) serving valid MP4s of exactly ``--size-mib`` MiB, makes one
task and waits until it completes; starts ``moto_server`` (S3, server mode) and a Prefect server,
each as a separate process, so their memory is not counted; then runs each contender in its own
subprocess (``archive_helpers.py``), so ``ru_maxrss`` is that contender's own peak RSS:

1. ``plain_copy``: an httpx streaming GET of the video URL to a file in 1 MiB chunks (baseline);
2. ``library_local``: ``OmniFlashClient.download`` to the staging file, ``check_is_mp4``,
   ``store_video`` into a ``LocalFileSystem`` (an atomic rename), without Prefect;
3. ``archive_local``: the real ``archive_video`` Prefect task into a ``LocalFileSystem``;
4. ``plain_copy_s3``: the same URL streamed into a boto3 multipart upload in the same moto
   bucket, 8 MiB parts sent as they fill, 4 at a time, no hashing, no checks (the S3 baseline);
5. ``archive_s3``: the real ``archive_video`` task into an ``S3Bucket`` block on moto
   (download to a scratch file, checks, then boto3's managed multipart upload).

Every archived copy is checked afterwards (not timed): size, SHA-256 against the emulator's
``state.video_sha256`` (the file re-read from disk; for S3 a HEAD and, unless
``--no-s3-readback``, the object streamed back and hashed). Also measured: SHA-256 of the same
number of bytes in memory (the integrity check's cost) and ``check_is_mp4``. Prints one JSON
object.

    uv run --frozen python benchmarks/archive_throughput.py --size-mib 16     # smoke, < 1 min
    uv run --frozen python benchmarks/archive_throughput.py --size-mib 1024 --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from archive_helpers import (
    CHUNK_BYTES,
    CONTENDERS,
    MIB,
    PREFECT_CONTENDERS,
    S3_CONTENDERS,
    Spec,
    s3_client,
)
from benchlib import (
    BENCHMARKS,
    BIN,
    Background,
    clean_env,
    cpu_seconds,
    free_port,
    group_cpu_seconds,
    prefect_server,
    run_child,
)

from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.core.models import VideoTask
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer

MOTO_START_SECONDS = 60.0
GOAL_RSS_ABOVE_IDLE_MIB = 200.0
GOAL_THROUGHPUT_RATIO = 0.8
PROMPT = "A slow pan across a harbour at dawn, fishing boats, soft fog"


# -- setup ------------------------------------------------------------------------------------


async def make_task(emulator: EmulatorServer) -> VideoTask:
    """Submit one video to the emulator and wait until it has completed."""
    async with OmniFlashClient(emulator.api_key, base_url=emulator.base_url) as client:
        task_id = await client.submit(VideoRequest(prompt=PROMPT))
        return await client.wait(task_id, first_poll_delay=0.3, max_wait_seconds=60.0)


async def read_task(emulator: EmulatorServer, task_id: str) -> VideoTask:
    """The task as the API answers it now (a fresh signed URL)."""
    async with OmniFlashClient(emulator.api_key, base_url=emulator.base_url) as client:
        return await client.get_task(task_id)


def sha256_in_memory(size_bytes: int) -> float:
    """Seconds to SHA-256 ``size_bytes`` fed in the client's 1 MiB chunks (no I/O)."""
    chunk = os.urandom(CHUNK_BYTES)
    full, rest = divmod(size_bytes, CHUNK_BYTES)
    started = time.perf_counter()
    digest = hashlib.sha256()
    for _ in range(full):
        digest.update(chunk)
    digest.update(chunk[:rest])
    digest.hexdigest()
    return time.perf_counter() - started


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def moto_server(root: Path, env: dict[str, str]) -> Iterator[tuple[str, Background]]:
    """``moto_server`` on a free loopback port, in its own process group; yields its URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = Background(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        cwd=root,
        env=env,
        log=root / "moto.log",
    )
    try:
        started = time.monotonic()
        while True:
            if process.process.poll() is not None:
                raise RuntimeError(f"moto_server exited:\n{process.output()}")
            try:
                with urllib.request.urlopen(f"{endpoint}/", timeout=2):  # noqa: S310 - loopback
                    break
            except urllib.error.HTTPError:
                break  # it answered
            except OSError:
                pass
            if time.monotonic() - started > MOTO_START_SECONDS:
                raise RuntimeError(f"moto_server did not start:\n{process.output()}")
            time.sleep(0.2)
        yield endpoint, process
    finally:
        process.stop()


# -- one contender ----------------------------------------------------------------------------


class Context:
    """What every contender run shares: the emulator, the task, the servers, the environment."""

    def __init__(
        self,
        args: argparse.Namespace,
        root: Path,
        emulator: EmulatorServer,
        task_id: str,
        expected_sha256: str,
        env: dict[str, str],
    ) -> None:
        self.args = args
        self.root = root
        self.emulator = emulator
        self.task_id = task_id
        self.expected_sha256 = expected_sha256
        self.env = env
        self.size_bytes: int = args.size_mib * MIB
        self.s3_endpoint: str | None = None
        self.moto: Background | None = None
        self.bucket: str | None = None
        self.prefect_server_pgid: int | None = None


def run_contender(ctx: Context, contender: str, run: int) -> dict[str, Any]:
    """One contender in its own subprocess, then its output checked and deleted."""
    workdir = ctx.root / f"run{run}-{contender}"
    workdir.mkdir()
    # Read the task again right before each contender: its URL is fresh (24 h TTL).
    task = asyncio.run(read_task(ctx.emulator, ctx.task_id))
    if task.video_url is None:
        raise RuntimeError(f"task {task.id} has no video URL")
    folder = f"renders-run{run}"
    spec = Spec(
        contender=contender,
        task_id=task.id,
        video_url=task.video_url,
        size_bytes=ctx.size_bytes,
        workdir=str(workdir),
        prefix=f"bench/run{run}",
        s3_endpoint=ctx.s3_endpoint,
        bucket=ctx.bucket,
        bucket_folder=folder,
    )
    spec_path = ctx.root / f"run{run}-{contender}.json"
    spec.dump(spec_path)
    log = ctx.root / f"run{run}-{contender}.log"
    load_before = os.getloadavg()
    emulator_cpu = cpu_seconds()
    moto_cpu = group_cpu_seconds(ctx.moto.process.pid) if ctx.moto else 0.0
    prefect_pgid = ctx.prefect_server_pgid
    prefect_cpu = group_cpu_seconds(prefect_pgid) if prefect_pgid else 0.0
    result = run_child(
        [sys.executable, str(BENCHMARKS / "archive_helpers.py"), str(spec_path)], ctx.env, log
    )
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["emulator_cpu_seconds"] = round(cpu_seconds() - emulator_cpu, 2)
    if ctx.moto is not None and contender in S3_CONTENDERS:
        result["moto_cpu_seconds"] = round(group_cpu_seconds(ctx.moto.process.pid) - moto_cpu, 2)
    if prefect_pgid and contender in PREFECT_CONTENDERS:
        result["prefect_server_cpu_seconds"] = round(
            group_cpu_seconds(prefect_pgid) - prefect_cpu, 2
        )
    result.update(verify(ctx, contender, result, folder))
    shutil.rmtree(workdir, ignore_errors=True)
    os.sync()  # the next contender does not pay for this one's dirty pages
    print(f"{contender} (run {run}): {json.dumps(result)}", file=sys.stderr)
    return result


def verify(ctx: Context, contender: str, result: dict[str, Any], folder: str) -> dict[str, Any]:
    """Size and SHA-256 of what was archived, against the emulator's own digest (not timed)."""
    checks: dict[str, Any] = {}
    if result.get("sha256") is not None:
        checks["sha256_reported_ok"] = result["sha256"] == ctx.expected_sha256
    checks["size_reported_ok"] = result["size_bytes"] == ctx.size_bytes
    if contender not in S3_CONTENDERS:
        path = Path(result["location"])
        checks["size_on_disk_ok"] = path.stat().st_size == ctx.size_bytes
        checks["sha256_on_disk_ok"] = sha256_of_file(path) == ctx.expected_sha256
        leftovers = [p.name for p in path.parent.iterdir() if p.suffix in (".part", ".staging")]
        checks["no_leftovers"] = not leftovers
    else:
        s3 = s3_client(str(ctx.s3_endpoint))
        key = f"{folder}/{result['storage_key']}"
        head = s3.head_object(Bucket=ctx.bucket, Key=key)
        checks["s3_size_ok"] = head["ContentLength"] == ctx.size_bytes
        checks["s3_multipart"] = "-" in head["ETag"]
        if not ctx.args.no_s3_readback:
            started = time.perf_counter()
            digest = hashlib.sha256()
            body = s3.get_object(Bucket=ctx.bucket, Key=key)["Body"]
            for block in body.iter_chunks(CHUNK_BYTES):
                digest.update(block)
            checks["s3_sha256_ok"] = digest.hexdigest() == ctx.expected_sha256
            checks["s3_readback_seconds"] = round(time.perf_counter() - started, 2)
        uploads = s3.list_multipart_uploads(Bucket=ctx.bucket).get("Uploads", [])
        checks["s3_no_pending_multipart"] = not uploads
        listed = s3.list_objects_v2(Bucket=ctx.bucket, Prefix=f"{folder}/")
        for item in listed.get("Contents", []):  # free moto's copy (memory / its temp files)
            s3.delete_object(Bucket=ctx.bucket, Key=item["Key"])
    checks["verified"] = all(v for k, v in checks.items() if isinstance(v, bool))
    return checks


# -- summary ----------------------------------------------------------------------------------


def summarise(out: dict[str, Any], runs: list[dict[str, dict[str, Any]]]) -> None:
    """Medians per contender, ratios to the plain copy, the integrity check's share, goals."""
    summary: dict[str, Any] = {}
    for contender in out["contenders"]:
        results = [run[contender] for run in runs if contender in run]
        if not results:
            continue
        walls = [r["wall_seconds"] for r in results]
        wall = statistics.median(walls)
        entry: dict[str, Any] = {
            "wall_seconds_median": round(wall, 3),
            "wall_seconds_all": walls,
            "mib_per_s_median": round(out["size_mib"] / wall, 1),
            "peak_minus_idle_mib_max": max(r["peak_minus_idle_mib"] for r in results),
            "idle_rss_mib": results[0]["idle_rss_mib"],
            "peak_rss_mib_max": max(r["peak_rss_mib"] for r in results),
            "all_verified": all(r["verified"] for r in results),
        }
        phases: dict[str, list[float]] = {}
        for r in results:
            for name, seconds in r.get("phase_seconds", {}).items():
                phases.setdefault(name, []).append(seconds)
        if phases:
            entry["phase_seconds_median"] = {
                k: round(statistics.median(v), 4) for k, v in phases.items()
            }
        summary[contender] = entry
    out["summary"] = summary

    ratios: dict[str, Any] = {}
    if "plain_copy" in summary:
        for contender in summary:
            if contender == "plain_copy":
                continue
            per_run = [
                round(run["plain_copy"]["wall_seconds"] / run[contender]["wall_seconds"], 3)
                for run in runs
                if contender in run and "plain_copy" in run
            ]
            ratios[f"{contender}_over_plain"] = {
                "median": round(statistics.median(per_run), 3),
                "per_run": per_run,
            }
    if "plain_copy_s3" in summary and "archive_s3" in summary:
        per_run = [
            round(run["plain_copy_s3"]["wall_seconds"] / run["archive_s3"]["wall_seconds"], 3)
            for run in runs
            if "archive_s3" in run and "plain_copy_s3" in run
        ]
        ratios["archive_s3_over_plain_copy_s3"] = {
            "median": round(statistics.median(per_run), 3),
            "per_run": per_run,
        }
    out["throughput_ratios"] = ratios

    integrity = out["integrity_check"]
    hash_seconds = integrity["sha256_in_memory_seconds"]
    for contender in ("library_local", "archive_local", "archive_s3"):
        if contender in summary:
            share = hash_seconds / summary[contender]["wall_seconds_median"]
            integrity[f"sha256_share_of_{contender}"] = round(share, 3)
    checks = summary.get("library_local", summary.get("archive_local", {}))
    mp4 = checks.get("phase_seconds_median", {}).get("check_is_mp4")
    if mp4 is not None:
        integrity["check_is_mp4_seconds"] = mp4
    if "plain_copy" in summary and "library_local" in summary:
        download = summary["library_local"].get("phase_seconds_median", {}).get("download")
        if download is not None:
            extra = download - summary["plain_copy"]["wall_seconds_median"]
            integrity["client_download_minus_plain_copy_seconds"] = round(extra, 3)

    goals: dict[str, Any] = {}
    for contender in ("library_local", "archive_local", "archive_s3"):
        if contender in summary:
            peak = summary[contender]["peak_minus_idle_mib_max"]
            goals[f"{contender}_rss_under_{GOAL_RSS_ABOVE_IDLE_MIB:g}_mib_above_idle"] = (
                peak < GOAL_RSS_ABOVE_IDLE_MIB
            )
        ratio = ratios.get(f"{contender}_over_plain")
        if ratio is not None:
            goals[f"{contender}_throughput_at_least_{GOAL_THROUGHPUT_RATIO:g}x_plain"] = (
                ratio["median"] >= GOAL_THROUGHPUT_RATIO
            )
    ratio = ratios.get("archive_s3_over_plain_copy_s3")
    if ratio is not None:
        goals[f"archive_s3_throughput_at_least_{GOAL_THROUGHPUT_RATIO:g}x_plain_copy_s3"] = (
            ratio["median"] >= GOAL_THROUGHPUT_RATIO
        )
    goals["all_verified"] = all(entry["all_verified"] for entry in summary.values())
    out["goals"] = goals


# -- driver -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="video size (default 1024)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every contender")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated subset of {','.join(CONTENDERS)}; odd runs go in this order, "
        "even runs in reverse",
    )
    parser.add_argument("--no-s3-readback", action="store_true", help="HEAD only for S3")
    parser.add_argument("--tmp-dir", default=None, help="where the temp dir goes (default: TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, specs)")
    args = parser.parse_args()
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders: {sorted(unknown)}")
    contenders = sorted(set(contenders), key=CONTENDERS.index)
    size_bytes = args.size_mib * MIB

    root = Path(tempfile.mkdtemp(prefix="omniflash-archive-bench-", dir=args.tmp_dir))
    out: dict[str, Any] = {
        "benchmark": "archive_throughput",
        "size_mib": args.size_mib,
        "size_bytes": size_bytes,
        "repeat": args.repeat,
        "contenders": contenders,
        "chunk_bytes": CHUNK_BYTES,
        "machine": {
            "nproc": os.cpu_count(),
            "mem_total_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1
            ),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            **{p: version(p) for p in ("prefect", "prefect-aws", "httpx", "boto3", "moto")},
        },
    }
    runs: list[dict[str, dict[str, Any]]] = []
    try:
        with ExitStack() as stack:
            config = EmulatorConfig(
                video_size_bytes=size_bytes, job_seconds=0.1, unlimited_balance=True
            )
            emulator = stack.enter_context(EmulatorServer(config))
            task = asyncio.run(make_task(emulator))
            started = time.perf_counter()
            expected = emulator.state.video_sha256(task.id)
            out["task_id"] = task.id
            out["expected_sha256"] = expected
            out["expected_sha256_seconds_emulator_bytes"] = round(time.perf_counter() - started, 2)
            hash_seconds = sha256_in_memory(size_bytes)
            out["integrity_check"] = {
                "sha256_in_memory_seconds": round(hash_seconds, 3),
                "sha256_mib_per_s": round(args.size_mib / hash_seconds, 1),
            }
            home = root / "prefect-home"
            extra_env = {
                "OMNIFLASH_API_KEY": emulator.api_key,
                "OMNIFLASH_BASE_URL": emulator.base_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(root / "aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(root / "aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
                "NO_PROXY": "127.0.0.1,localhost",
                "PREFECT_LOCAL_STORAGE_PATH": str(root / "results"),
                "PREFECT_LOGGING_LEVEL": "WARNING",
            }
            (root / "tmp").mkdir()
            env = clean_env(home, TMPDIR=str(root / "tmp"), **extra_env)
            ctx = Context(args, root, emulator, task.id, expected, env)
            if S3_CONTENDERS & set(contenders):
                started = time.perf_counter()
                endpoint, moto = stack.enter_context(moto_server(root, clean_env(home)))
                ctx.s3_endpoint, ctx.moto = endpoint, moto
                ctx.bucket = f"videos-{uuid.uuid4().hex[:8]}"
                s3_client(endpoint).create_bucket(Bucket=ctx.bucket)
                out["moto_start_seconds"] = round(time.perf_counter() - started, 2)
            if PREFECT_CONTENDERS & set(contenders):
                server = stack.enter_context(prefect_server(home))
                out["prefect_server_startup_seconds"] = round(server.startup_seconds, 1)
                ctx.env = {**env, "PREFECT_API_URL": server.api_url}
                ctx.prefect_server_pgid = server.process.process.pid
            for run in range(1, args.repeat + 1):
                # ABBA order: drift in the machine's load hits both ends of a pair alike.
                order = contenders if run % 2 else contenders[::-1]
                runs.append({c: run_contender(ctx, c, run) for c in order})
    finally:
        out["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep:
            out["temp_dir"] = str(root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    out["runs"] = runs
    summarise(out, runs)
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
