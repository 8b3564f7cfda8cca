"""Writes the records in this folder: run from a checkout of 0.1 to make records at 0.1's paths.

    git worktree add /tmp/omniflash-0.1 <a 0.1 commit>
    PYTHONPATH=/tmp/omniflash-0.1 .venv/bin/python tests/data/records_0_1/make_records.py

It imports only names the package root exports in every release, so the same script runs on
any layout; which module paths the records name depends on the checkout it runs from. One
``generate_video`` run and one two-row ``generate_video_batch`` run on the emulator keep their
records (submission, poll cache, archive record) in ``records/`` and their own results (an
``ArchivedVideo``, a ``BatchReport``) in ``flow-results/``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The archive's location is part of an archive record's key, so tests reuse this exact path.
ARCHIVE_DIR = "/tmp/omniflash-records-0.1/videos"
PROMPT = "a lighthouse at dusk, slow dolly in"
IDEMPOTENCY_KEY = "records-0.1"
BATCH_ID = "records-0.1"


def main() -> None:
    for folder in ("records", "flow-results"):
        shutil.rmtree(HERE / folder, ignore_errors=True)
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(HERE / "flow-results")
    from prefect.filesystems import LocalFileSystem
    from prefect.testing.utilities import prefect_test_harness

    import omniflash_prefect
    from omniflash_prefect import OmniFlashCredentials, generate_video, generate_video_batch
    from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer

    print("writing records with", Path(omniflash_prefect.__file__).parent, file=sys.stderr)
    config = EmulatorConfig(job_seconds=0.2, seed=1)
    with prefect_test_harness(), EmulatorServer(config) as emulator:
        OmniFlashCredentials(api_key=emulator.api_key, base_url=emulator.base_url).save(
            "records", overwrite=True
        )
        LocalFileSystem(basepath=str(HERE / "records")).save("records", overwrite=True)
        LocalFileSystem(basepath=ARCHIVE_DIR).save("archive", overwrite=True)
        blocks = {
            "credentials_block": "records",
            "storage_block": "local-file-system/archive",
            "result_storage_block": "local-file-system/records",
        }
        generate_video(prompt=PROMPT, idempotency_key=IDEMPOTENCY_KEY, **blocks)
        rows = [{"id": "a", "prompt": "a red kite"}, {"id": "b", "prompt": "a blue kite"}]
        generate_video_batch(requests=rows, batch_id=BATCH_ID, **blocks)


if __name__ == "__main__":
    main()
