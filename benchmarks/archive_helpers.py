"""The contenders of ``archive_throughput.py``, each run in its own subprocess.

    python benchmarks/archive_helpers.py SPEC.json

``SPEC.json`` is a :class:`Spec` written by the driver. The child sets up (imports, clients,
storage, a warm-up Prefect task run where Prefect is involved), records its idle RSS, runs the
transfer once, and prints one ``BENCH-RESULT {json}`` line: wall seconds of the transfer, idle
RSS (``VmRSS`` after setup), peak RSS (``ru_maxrss`` at the end), CPU seconds, and per-phase
timings where the contender has phases. The driver checks the bytes afterwards (not timed).

Contenders:

* ``plain_copy``: one ``httpx.AsyncClient`` streaming GET of the video URL to a file, read with
  ``aiter_raw()`` chunks as they arrive (as the client reads), no hashing, no checks (the
  baseline);
* ``library_local``: the library path of ``archive_video`` for a local directory, without
  Prefect: ``OmniFlashClient.download`` to ``staging_path(...)``, ``check_is_mp4``,
  ``store_video`` (an atomic rename);
* ``archive_local``: the real ``archive_video`` Prefect task (a task run against the Prefect
  server, result persisted, sidecar written) into a ``LocalFileSystem``;
* ``plain_copy_s3``: the hand-written baseline for S3: one streaming GET whose chunks fill 8 MiB
  parts of a boto3 multipart upload into the same moto bucket, each part sent (4 at a time) as
  soon as it is full; no hashing, no checks;
* ``archive_s3``: the real ``archive_video`` task into an ``S3Bucket`` block pointing at a moto
  server (download to a scratch file, checks, then boto3's managed multipart upload).

Only standard-library modules and :mod:`benchlib` are imported at module level, so the plain
copy's process stays as light as a hand-written script would be.
"""

from __future__ import annotations

import asyncio
import functools
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, ParamSpec, TypeVar

from benchlib import cpu_seconds, emit, peak_rss_kib

#: Block size for hashing and writing test data (both contenders stream chunks as they arrive).
CHUNK_BYTES = 1024 * 1024
MIB = 1024 * 1024
CONTENDERS = ("plain_copy", "library_local", "archive_local", "plain_copy_s3", "archive_s3")
#: Contenders that write into the moto bucket.
S3_CONTENDERS = frozenset({"plain_copy_s3", "archive_s3"})
#: Part size and parts in flight of the plain S3 copy (the library's defaults).
S3_PART_BYTES = 8 * 1024 * 1024
S3_CONCURRENCY = 4
#: Contenders that run a Prefect task (they need a Prefect server).
PREFECT_CONTENDERS = frozenset({"archive_local", "archive_s3"})

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Spec:
    """What one contender process does: written as JSON by the driver."""

    contender: str
    task_id: str
    #: The task's video URL, read from the emulator just before the child starts (plain copy).
    video_url: str
    size_bytes: int
    #: This contender's own directory (destination, scratch); the driver deletes it afterwards.
    workdir: str
    #: The archive prefix: unique per run, so ``archive_video``'s cache never answers.
    prefix: str
    s3_endpoint: str | None = None
    bucket: str | None = None
    bucket_folder: str = "renders"

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Spec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/self/status")


def current_rss_kib() -> int:
    """This process' resident set size now (``VmRSS``), in KiB."""
    return _status_kib("VmRSS")


def own_peak_rss_kib() -> int:
    """This process' own peak RSS (``VmHWM``), in KiB.

    Not ``ru_maxrss``: Linux carries the high-water mark of the memory image an ``execve``
    replaces into the new program's ``ru_maxrss``, and Python spawns children with ``vfork``, so a
    child's ``ru_maxrss`` starts at its parent's peak RSS (here the driver's, ~110 MiB).
    """
    return _status_kib("VmHWM")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (``clear_refs`` 5, Linux >= 4.0); False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Phases:
    """Seconds spent in each instrumented step, and the peak RSS right after each."""

    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_kib_after: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, started: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        self.peak_rss_kib_after[name] = own_peak_rss_kib()

    def timed_async(
        self, name: str, function: Callable[P, Awaitable[R]]
    ) -> Callable[P, Awaitable[R]]:
        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                self.add(name, started)

        return wrapper

    def timed(self, name: str, function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, started)

        return wrapper

    def report(self) -> dict[str, Any]:
        return {
            "phase_seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "peak_rss_mib_after_phase": {
                k: round(v / 1024, 1) for k, v in self.peak_rss_kib_after.items()
            },
        }


class Meter:
    """Idle RSS and clocks at the start of the measured transfer; the result at its end."""

    def __init__(self) -> None:
        self.setup_peak_kib = own_peak_rss_kib()
        # From here VmHWM is the peak of the transfer alone (when the kernel lets us reset it).
        self.peak_was_reset = reset_peak_rss()
        self.idle_rss_kib = current_rss_kib()
        self.cpu = cpu_seconds()
        self.system = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        self.started = time.perf_counter()

    def result(self, total_bytes: int, /, **extra: Any) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        cpu = cpu_seconds() - self.cpu
        peak = own_peak_rss_kib()
        return {
            "wall_seconds": round(wall, 3),
            "mib_per_s": round(total_bytes / MIB / wall, 1),
            "cpu_seconds": round(cpu, 2),
            "system_cpu_seconds": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_stime - self.system, 2
            ),
            "idle_rss_mib": round(self.idle_rss_kib / 1024, 1),
            "setup_peak_rss_mib": round(self.setup_peak_kib / 1024, 1),
            "peak_was_reset_at_idle": self.peak_was_reset,
            "peak_rss_mib": round(peak / 1024, 1),
            "peak_minus_idle_mib": round((peak - self.idle_rss_kib) / 1024, 1),
            "end_rss_mib": round(current_rss_kib() / 1024, 1),
            # For reference only: includes the driver's peak at spawn time (see own_peak_rss_kib).
            "ru_maxrss_mib": round(peak_rss_kib() / 1024, 1),
            **extra,
        }


async def plain_copy(spec: Spec) -> dict[str, Any]:
    """The baseline: stream the URL to a file, nothing else."""
    import httpx

    destination = Path(spec.workdir) / "plain.mp4"
    timeout = httpx.Timeout(30.0, connect=10.0)
    headers = {"Accept-Encoding": "identity"}
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        # Setup, like the other contenders' task read: connect and finish httpx's lazy imports.
        (await http.head(spec.video_url, headers=headers)).raise_for_status()
        meter = Meter()
        written = 0
        async with http.stream("GET", spec.video_url, headers=headers) as response:
            response.raise_for_status()
            with destination.open("wb") as sink:
                async for chunk in response.aiter_raw():
                    written += len(chunk)
                    sink.write(chunk)
                sink.flush()
        return meter.result(
            spec.size_bytes, location=str(destination), size_bytes=written, sha256=None
        )


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
    )


async def plain_copy_s3(spec: Spec) -> dict[str, Any]:
    """The S3 baseline: stream the URL into a multipart upload, each part sent once full."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    if spec.s3_endpoint is None or spec.bucket is None:
        raise RuntimeError("plain_copy_s3 needs s3_endpoint and bucket")
    s3 = s3_client(spec.s3_endpoint)
    storage_key = f"plain/{spec.task_id}.mp4"
    key = f"{spec.bucket_folder}/{storage_key}"
    timeout = httpx.Timeout(30.0, connect=10.0)
    headers = {"Accept-Encoding": "identity"}
    executor = ThreadPoolExecutor(S3_CONCURRENCY)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        # Setup, like the other contenders': connect to both ends.
        (await http.head(spec.video_url, headers=headers)).raise_for_status()
        s3.head_bucket(Bucket=spec.bucket)
        meter = Meter()
        upload_id = s3.create_multipart_upload(Bucket=spec.bucket, Key=key)["UploadId"]
        etags: dict[int, str] = {}
        in_flight: set[asyncio.Future[None]] = set()

        def send(number: int, body: bytes) -> None:
            answer = s3.upload_part(
                Bucket=spec.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
            etags[number] = answer["ETag"]

        numbers = iter(range(1, 10_001))

        async def launch(body: bytes) -> None:
            while len(in_flight) >= S3_CONCURRENCY:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    in_flight.discard(future)
                    future.result()
            in_flight.add(loop.run_in_executor(executor, send, next(numbers), body))

        written = 0
        buffer = bytearray()
        async with http.stream("GET", spec.video_url, headers=headers) as response:
            response.raise_for_status()
            async for chunk in response.aiter_raw():
                written += len(chunk)
                buffer += chunk
                if len(buffer) >= S3_PART_BYTES:
                    await launch(bytes(buffer[:S3_PART_BYTES]))
                    del buffer[:S3_PART_BYTES]
        if buffer or not written:
            await launch(bytes(buffer))
        for future in asyncio.as_completed(in_flight):
            await future
        parts = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        s3.complete_multipart_upload(
            Bucket=spec.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        executor.shutdown()
        return meter.result(
            spec.size_bytes,
            location=f"s3://{spec.bucket}/{key}",
            storage_key=storage_key,
            size_bytes=written,
            sha256=None,
        )


async def library_local(spec: Spec) -> dict[str, Any]:
    """``archive_video``'s steps for a local directory, called directly (no Prefect run)."""
    from prefect.filesystems import LocalFileSystem

    from omniflash_prefect.client import OmniFlashClient
    from omniflash_prefect.video.archive import check_is_mp4, staging_path, store_video, video_key

    storage = LocalFileSystem(basepath=str(Path(spec.workdir) / "archive"))
    phases = Phases()
    async with OmniFlashClient.from_settings() as client:
        task = await client.get_task(spec.task_id)  # setup: what poll_video would hand over
        if task.video_url is None:
            raise RuntimeError(f"task {task.id} has no video URL")
        key = video_key(spec.prefix, task)
        meter = Meter()
        with TemporaryDirectory(prefix="omniflash-", dir=spec.workdir) as scratch:
            staged = staging_path(storage, key, Path(scratch))
            started = time.perf_counter()
            downloaded = await client.download(task.video_url, staged)
            phases.add("download", started)
            started = time.perf_counter()
            check_is_mp4(staged)
            phases.add("check_is_mp4", started)
            started = time.perf_counter()
            location = await store_video(storage, staged, key)
            phases.add("store_video", started)
        return meter.result(
            spec.size_bytes,
            location=location,
            size_bytes=downloaded.size_bytes,
            sha256=downloaded.sha256,
            **phases.report(),
        )


async def archive_task(spec: Spec) -> dict[str, Any]:
    """The real ``archive_video`` task, called outside a flow (a task run on the server)."""
    from prefect import task as prefect_task
    from prefect.filesystems import LocalFileSystem, WritableFileSystem
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

    from omniflash_prefect.client import OmniFlashClient
    from omniflash_prefect.video import steps as omni_steps
    from omniflash_prefect.video import tasks as omni_tasks

    async with OmniFlashClient.from_settings() as client:
        task = await client.get_task(spec.task_id)  # setup: what poll_video would hand over
    storage: WritableFileSystem
    if spec.contender == "archive_s3":
        if spec.s3_endpoint is None or spec.bucket is None:
            raise RuntimeError("archive_s3 needs s3_endpoint and bucket")
        bucket = S3Bucket(
            bucket_name=spec.bucket,
            bucket_folder=spec.bucket_folder,
            credentials=AwsCredentials(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
                region_name="us-east-1",
                aws_client_parameters=AwsClientParameters(endpoint_url=spec.s3_endpoint),
            ),
        )
        # The S3 client is cached per credentials: build it (and reach moto) during setup.
        bucket.credentials.get_s3_client().head_bucket(Bucket=spec.bucket)
        storage = bucket
    else:
        storage = LocalFileSystem(basepath=str(Path(spec.workdir) / "archive"))

    # Instrumentation only: time the steps archive_video takes, where its step looks them up.
    phases = Phases()
    original_download = OmniFlashClient.download
    setattr(OmniFlashClient, "download", phases.timed_async("download", original_download))  # noqa: B010
    for name, wrap in (
        ("check_is_mp4", phases.timed),
        ("inspect_video", phases.timed),
        ("store_video", phases.timed_async),
    ):
        setattr(omni_steps, name, wrap(name, getattr(omni_steps, name)))

    @prefect_task(name="warm-up", persist_result=False)
    async def warm_up() -> int:
        return 1

    # Setup, not timed: the first task run starts Prefect's API client and event workers.
    await warm_up()
    meter = Meter()
    archived = await omni_tasks.archive_video(task, storage=storage, prefix=spec.prefix)
    return meter.result(
        spec.size_bytes,
        location=archived.location,
        storage_key=archived.storage_key,
        size_bytes=archived.size_bytes,
        sha256=archived.sha256,
        task_download_seconds=archived.download_seconds,
        **phases.report(),
    )


CHILDREN: dict[str, Callable[[Spec], Coroutine[Any, Any, dict[str, Any]]]] = {
    "plain_copy": plain_copy,
    "library_local": library_local,
    "archive_local": archive_task,
    "plain_copy_s3": plain_copy_s3,
    "archive_s3": archive_task,
}


def main() -> None:
    spec = Spec.load(Path(sys.argv[1]))
    started = time.perf_counter()
    result = asyncio.run(CHILDREN[spec.contender](spec))
    result["contender"] = spec.contender
    result["child_seconds"] = round(time.perf_counter() - started, 2)
    emit(result)


if __name__ == "__main__":
    main()
