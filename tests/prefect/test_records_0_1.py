"""Records written by 0.1, whose module layout was flat, still load after the move to subpackages.

Prefect's JSON serializer stores each saved object's class by its import path
(``omniflash_prefect.archive.ArchivedVideo``, ``omniflash_prefect.models.VideoTask``,
``omniflash_prefect.batch.BatchReport``); ``tests/data/records_0_1`` holds real records that
0.1's ``generate_video`` and ``generate_video_batch`` wrote (``make_records.py`` there says how).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer

from omniflash_prefect import ArchivedVideo, BatchReport, VideoTask, generate_video
from omniflash_prefect.emulator import EmulatorServer
from tests.data.records_0_1.make_records import ARCHIVE_DIR, IDEMPOTENCY_KEY, PROMPT

RECORDS_0_1 = Path(__file__).resolve().parents[1] / "data" / "records_0_1"
OLD_CLASS_PATHS = {
    "omniflash_prefect.archive.ArchivedVideo": ArchivedVideo,
    "omniflash_prefect.models.VideoTask": VideoTask,
    "omniflash_prefect.batch.BatchReport": BatchReport,
}

# Loading a 0.1 record imports its old module path, which warns that the path goes in 0.3.
pytestmark = pytest.mark.filterwarnings("ignore:omniflash_prefect.*moved to:DeprecationWarning")


@pytest.fixture
def records(tmp_path: Path) -> Path:
    """A copy of the 0.1 records, so a run may add to them."""
    copy = tmp_path / "records_0_1"
    shutil.copytree(RECORDS_0_1, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return copy


async def test_every_0_1_record_reads_back_as_todays_class(records: Path) -> None:
    loaded: dict[str, int] = dict.fromkeys(OLD_CLASS_PATHS, 0)
    for folder in ("records", "flow-results"):
        store = ResultStore(
            result_storage=LocalFileSystem(basepath=str(records / folder)),
            serializer=JSONSerializer(),
        )
        for path in sorted(p for p in (records / folder).iterdir() if p.is_file()):
            old_paths = [name for name in OLD_CLASS_PATHS if name in path.read_text()]
            result = (await store.aread(path.name)).result
            for old_path in old_paths:
                assert isinstance(result, OLD_CLASS_PATHS[old_path]), path.name
                loaded[old_path] += 1
    assert all(loaded.values()), loaded  # each old class path was in the records, and loaded


async def test_a_rerun_over_0_1_records_pays_nothing_and_downloads_nothing(
    records: Path, emulator: EmulatorServer, credentials_block: str
) -> None:
    """The same request and key, run again with 0.1's records: the submission record gives the
    task id, the poll cache its completed ``VideoTask``, the archive record its ``ArchivedVideo``.
    The emulator has never seen that task: a record that failed to load would ask it, and fail."""
    await LocalFileSystem(basepath=str(records / "records")).asave("records-0-1", overwrite=True)
    await LocalFileSystem(basepath=ARCHIVE_DIR).asave("archive-0-1", overwrite=True)
    archived = await generate_video(
        prompt=PROMPT,
        idempotency_key=IDEMPOTENCY_KEY,
        credentials_block=credentials_block,
        storage_block="local-file-system/archive-0-1",
        result_storage_block="local-file-system/records-0-1",
    )
    written_by_0_1 = [
        path.read_text()
        for path in (records / "flow-results").iterdir()
        if PROMPT in path.read_text()
    ]
    assert isinstance(archived, ArchivedVideo)
    assert len(written_by_0_1) == 1
    assert archived.task_id in written_by_0_1[0]
    assert archived.sha256 in written_by_0_1[0]
    assert emulator.state.submission_count == 0
    assert emulator.state.snapshot()["tasks"] == {}
