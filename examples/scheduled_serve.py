"""A flow served on a schedule: one teaser video every morning at 06:00 UTC.

`python examples/scheduled_serve.py` creates the `daily-teaser/morning` deployment on the
Prefect server (`PREFECT_API_URL`) and keeps running, starting a run at each scheduled time in
this process; stop it with Ctrl-C. No work pool or worker is needed. Use `interval=3600` instead
of `cron=...` for a run every hour.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow

from omniflash_prefect import ArchivedVideo, generate_video_task

#: How the flow is served: the deployment's name, its schedule and its parameters.
SERVE: dict[str, Any] = {
    "name": "morning",
    "cron": "0 6 * * *",
    "parameters": {"theme": "a lighthouse at dawn", "credentials_block": "omniflash"},
    "tags": ["omniflash"],
}


@flow(name="daily-teaser")
def daily_teaser(theme: str, credentials_block: str = "omniflash") -> str:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    video: ArchivedVideo = generate_video_task(
        prompt=f"A 4-second teaser: {theme}, slow aerial shot",
        duration=4,
        credentials_block=credentials_block,
        archive_prefix="teasers",
        # One video per day: a second run on the same day archives the same video again,
        # without paying for another.
        idempotency_key=f"daily-teaser-{today}",
    )
    return video.location


if __name__ == "__main__":
    daily_teaser.serve(**SERVE)
