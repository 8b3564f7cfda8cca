"""The lock managers under real contention: threads and processes on files (``flock``), and
machines sharing a bucket (moto's S3 server on loopback), including holders killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.locking.protocol import LockManager

from omniflash_prefect.video.locks import FileLockManager, S3LockManager, lease_expired
from tests.support.s3 import moto_server

REPO = Path(__file__).resolve().parents[2]
CYCLES = 20


def holder() -> str:
    return uuid.uuid4().hex


def test_lease_runs_out_on_the_buckets_clock() -> None:
    """Expired exactly when the bucket's now reaches the write time plus the lease."""
    written = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert not lease_expired(written, 60, written + dt.timedelta(seconds=59))
    assert lease_expired(written, 60, written + dt.timedelta(seconds=60))


def hammer(manager: LockManager, ledger: list[str]) -> None:
    """Acquire, note entry and exit, release: CYCLES times."""
    for _ in range(CYCLES):
        me = holder()
        assert manager.acquire_lock("key", me, acquire_timeout=60)
        ledger.append(f"in {me}")
        ledger.append(f"out {me}")
        manager.release_lock("key", me)


def hammer_in_threads(managers: list[LockManager]) -> list[str]:
    """One thread hammering per manager, all at once; their shared ledger."""
    ledger: list[str] = []
    threads = [threading.Thread(target=hammer, args=(manager, ledger)) for manager in managers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ledger


def assert_never_two_inside(ledger: list[str]) -> None:
    """Every entry is followed by the same holder's exit before any other entry."""
    assert len(ledger) % 2 == 0
    for entry, leave in zip(ledger[::2], ledger[1::2], strict=True):
        assert entry.startswith("in ")
        assert leave == "out " + entry.removeprefix("in ")


def test_file_locks_exclude_threads_of_separate_managers(tmp_path: Path) -> None:
    """Four threads, each with its own manager (as separate processes would have), take one key
    in turn; removing the lock file on release never lets two in."""
    ledger = hammer_in_threads([FileLockManager(tmp_path) for _ in range(4)])
    assert len(ledger) == 4 * 2 * CYCLES
    assert_never_two_inside(ledger)
    assert not (tmp_path / "key.lock").exists()


PROCESS_HAMMER = """
import sys, uuid
from pathlib import Path
from omniflash_prefect.video.locks import FileLockManager
manager = FileLockManager(Path(sys.argv[1]))
with open(sys.argv[2], "a", buffering=1) as ledger:
    for _ in range(int(sys.argv[3])):
        me = uuid.uuid4().hex
        assert manager.acquire_lock("key", me, acquire_timeout=60)
        ledger.write(f"in {me}\\n")
        ledger.write(f"out {me}\\n")
        manager.release_lock("key", me)
"""


def test_file_locks_exclude_processes(tmp_path: Path) -> None:
    """Four processes append to one ledger while holding the key: no two entries overlap."""
    ledger = tmp_path / "ledger.txt"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                PROCESS_HAMMER,
                str(tmp_path / "locks"),
                str(ledger),
                str(CYCLES),
            ],
            cwd=REPO,
        )
        for _ in range(4)
    ]
    assert [process.wait(120) for process in processes] == [0] * 4
    lines = ledger.read_text().splitlines()
    assert len(lines) == 4 * 2 * CYCLES
    assert_never_two_inside(lines)


HOLD_FOREVER = """
import sys, time
from pathlib import Path
from omniflash_prefect.video.locks import {manager}
manager = {make}
assert manager.acquire_lock("key", "doomed", acquire_timeout=30)
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def doomed_holder() -> Iterator[Callable[[str, str], subprocess.Popen[str]]]:
    """Start a process that takes the lock and holds it until killed."""
    started: list[subprocess.Popen[str]] = []

    def start(manager: str, make: str) -> subprocess.Popen[str]:
        code = HOLD_FOREVER.format(manager=manager, make=make)
        process = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            process.communicate()  # reaps it and closes its pipe


def test_a_file_lock_dies_with_its_holder(
    tmp_path: Path, doomed_holder: Callable[[str, str], subprocess.Popen[str]]
) -> None:
    """While a process holds the key nobody else gets it; killed with SIGKILL, it lets go at
    once (no lease to wait out)."""
    process = doomed_holder("FileLockManager", f"FileLockManager(Path({str(tmp_path)!r}))")
    manager = FileLockManager(tmp_path)
    assert manager.is_locked("key")
    assert not manager.acquire_lock("key", "me", acquire_timeout=0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert manager.acquire_lock("key", "me", acquire_timeout=10)
    assert manager.is_lock_holder("key", "me")
    assert not manager.is_lock_holder("key", "someone else")


def test_releasing_a_lock_one_does_not_hold_changes_nothing(tmp_path: Path) -> None:
    """Another holder's release, and a second release, are no-ops (Prefect releases the locks
    of nested transactions twice)."""
    manager = FileLockManager(tmp_path)
    assert manager.acquire_lock("key", "me")
    manager.release_lock("key", "someone else")
    assert manager.is_lock_holder("key", "me")
    manager.release_lock("key", "me")
    manager.release_lock("key", "me")
    assert not manager.is_locked("key")


async def test_waiting_for_a_file_lock_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """Coroutines of one loop queue for a key one after another (Prefect's own file lock
    manager would sleep inside the loop and deadlock here)."""
    manager = FileLockManager(tmp_path)
    order: list[int] = []

    async def take(number: int) -> None:
        me = holder()
        assert await manager.aacquire_lock("key", me, acquire_timeout=30)
        order.append(number)
        await asyncio.sleep(0.01)  # hold it across a switch to the other coroutines
        order.append(number)
        manager.release_lock("key", me)

    await asyncio.gather(*(take(number) for number in range(8)))
    assert sorted(order[::2]) == list(range(8))
    assert order[::2] == order[1::2]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket_name(s3_endpoint: str) -> str:
    name = f"locks-{uuid.uuid4().hex[:8]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def s3_manager(endpoint: str, bucket: str, lease: float = 30.0) -> S3LockManager:
    return S3LockManager(
        lambda: s3_client(endpoint),
        bucket,
        "results/.omniflash-locks",
        lease_seconds=lease,
        recheck_seconds=0.05,
    )


def test_s3_locks_exclude_two_machines(s3_endpoint: str, bucket_name: str) -> None:
    """Two managers (two machines), two threads each, one key: never two holders, and no lock
    object is left behind."""
    managers = [s3_manager(s3_endpoint, bucket_name) for _ in range(2)]
    ledger = hammer_in_threads([manager for manager in managers for _ in range(2)])
    assert_never_two_inside(ledger)
    listed = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket_name)
    assert listed.get("KeyCount", 0) == 0


def test_an_s3_lock_is_renewed_while_its_holder_lives(s3_endpoint: str, bucket_name: str) -> None:
    """A live holder keeps its key past several leases (it renews); then it releases."""
    mine, theirs = s3_manager(s3_endpoint, bucket_name, 3), s3_manager(s3_endpoint, bucket_name, 3)
    assert mine.acquire_lock("key", "me")
    assert not theirs.acquire_lock("key", "them", acquire_timeout=8)  # more than two leases
    mine.release_lock("key", "me")
    assert theirs.acquire_lock("key", "them", acquire_timeout=5)
    theirs.release_lock("key", "them")


def test_an_s3_lock_of_a_killed_holder_is_taken_over_after_its_lease(
    s3_endpoint: str,
    bucket_name: str,
    doomed_holder: Callable[[str, str], subprocess.Popen[str]],
) -> None:
    """A machine holding the key dies (SIGKILL): its lock blocks the key until its lease runs
    out, then one waiter takes it over."""
    make = (
        "S3LockManager(lambda: __import__('boto3').client('s3', endpoint_url="
        f"{s3_endpoint!r}, region_name='us-east-1', aws_access_key_id='testing', "
        f"aws_secret_access_key='testing'), {bucket_name!r}, 'results/.omniflash-locks', "
        "lease_seconds=3)"
    )
    process = doomed_holder("S3LockManager", make)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    waiter = s3_manager(s3_endpoint, bucket_name, 3)
    assert waiter.is_locked("key")
    assert waiter.acquire_lock("key", "me", acquire_timeout=30)
    assert waiter.is_lock_holder("key", "me")
    waiter.release_lock("key", "me")
