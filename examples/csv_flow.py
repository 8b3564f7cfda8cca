"""A sync flow that makes one video per row of a CSV file.

The CSV has a header row; `prompt` is required, `duration`, `resolution` and `aspect_ratio` are
optional (the defaults below):

    prompt,duration,resolution,aspect_ratio
    A red sneaker turning on a plinth,4,720p,16:9
    A blue backpack on a trail,6,1080p,9:16

Run it with `python examples/csv_flow.py products.csv` once a credentials block named
`omniflash` exists (see the getting started page). Each row is one `generate-video` task run of
the flow run, all of them in flight at once on Prefect's task runner.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from prefect import flow, tags, unmapped

from omniflash_prefect import ArchivedVideo, generate_video_task


def read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows, with the columns `generate_video_task` takes."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            {
                "prompt": row["prompt"],
                "duration": row.get("duration") or "4",
                "resolution": row.get("resolution") or "720p",
                "aspect_ratio": row.get("aspect_ratio") or "16:9",
            }
            for row in csv.DictReader(handle)
        ]


@flow(name="csv-videos")
def csv_videos(csv_path: str, credentials_block: str = "omniflash") -> list[ArchivedVideo]:
    rows = read_rows(Path(csv_path))
    with tags("omniflash", "csv"):
        videos = generate_video_task.map(
            prompt=[row["prompt"] for row in rows],
            duration=[int(row["duration"]) for row in rows],
            resolution=[row["resolution"] for row in rows],
            aspect_ratio=[row["aspect_ratio"] for row in rows],
            credentials_block=unmapped(credentials_block),
            archive_prefix=unmapped("csv"),
        )
    return [video.result() for video in videos]


if __name__ == "__main__":
    for video in csv_videos(sys.argv[1]):
        print(video.location, video.sha256)
