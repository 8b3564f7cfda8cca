"""A process racing for one submission key: ``python -m tests.prefect.racers``.

It runs one async flow that calls ``asubmit_video`` ``--callers`` times at once with the same
request and key, after waiting for ``<dir>/go`` (so several processes start together), and
writes what every caller got to ``<dir>/<name>.json``: a task id, or an error's type and text.
The test that starts it gives it the Prefect server, result storage and credentials block.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow
from prefect_aws import S3Bucket

from omniflash_prefect import VideoRequest, asubmit_video


async def _wait_for(path: Path) -> None:
    while not path.exists():  # noqa: ASYNC110 - another process creates it
        await asyncio.sleep(0.01)


@flow(name="racers")
async def racers(
    folder: str, name: str, callers: int, key: str, credentials_block: str, bucket: str | None
) -> list[dict[str, Any]]:
    here = Path(folder)
    (here / f"{name}.ready").touch()
    await _wait_for(here / "go")
    submit = asubmit_video
    if bucket is not None:
        submit = asubmit_video.with_options(result_storage=await S3Bucket.aload(bucket))
    request = VideoRequest(prompt="A kite over a windy beach", duration=4)
    outcomes = await asyncio.gather(
        *(
            submit(request, credentials_block=credentials_block, idempotency_key=key)
            for _ in range(callers)
        ),
        return_exceptions=True,
    )
    return [
        {"task_id": outcome}
        if isinstance(outcome, str)
        else {"error": type(outcome).__name__, "message": str(outcome)}
        for outcome in outcomes
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("name")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--key", required=True)
    parser.add_argument("--credentials-block", required=True)
    parser.add_argument("--bucket", help="an S3Bucket block keeping the records")
    arguments = parser.parse_args()
    started = time.time()
    outcomes = asyncio.run(
        racers(
            arguments.folder,
            arguments.name,
            arguments.callers,
            arguments.key,
            arguments.credentials_block,
            arguments.bucket,
        )
    )
    report = {"started": started, "ended": time.time(), "outcomes": outcomes}
    (Path(arguments.folder) / f"{arguments.name}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
