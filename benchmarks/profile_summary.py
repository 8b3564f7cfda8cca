"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) as JSON.

Prints the functions with the most samples, inclusive (on the stack) and exclusive (at the top),
plus the share of samples under a few markers that matter for the batch overhead::

    uv run --frozen python benchmarks/profile_summary.py /tmp/flow.raw --top 25
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

#: Substrings of a frame ("function (file:line)") whose inclusive share is reported.
MARKERS = {
    "httpx_ssl_context": "create_ssl_context",
    "httpx_client_init": "__init__ (httpx/_client.py",
    "block_load": "aload (prefect/blocks/core.py",
    "prefect_api_request": "request (prefect/client/base.py",
    "logging_emit": "emit (logging/__init__.py",
    "api_log_handler": "prefect/logging/handlers.py",
    "artifacts": "prefect/artifacts.py",
    "events_emit": "emit_event (prefect/events/utilities.py",
    "result_store": "prefect/results.py",
    "pydantic": "pydantic/",
    "flow_engine": "prefect/flow_engine.py",
    "task_engine": "prefect/task_engine.py",
    "omniflash_client": "omniflash_prefect/client/",
    "event_loop_select": "select (selectors.py",
}
_FRAME_FILE = re.compile(r"\((?:.*?/(?:site-packages|lib/python3\.\d+)/)?(.*?)\)$")


def short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` as ``func (pkg/mod.py:12)``."""
    return _FRAME_FILE.sub(lambda m: f"({m.group(1)})", frame.strip())


def summarise(path: Path, top: int, thread: str | None) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(frame) for frame in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        thread_name = next(
            (part for part in stack.split(";") if part.startswith("thread ")), "thread ?"
        )
        threads[thread_name] += count
        if thread is not None and thread not in thread_name:
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            exclusive[frames[-1]] += count
        joined = ";".join(frames)
        for name, marker in MARKERS.items():
            if marker in joined:
                markers[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [
            (key, round(100 * value / max(total, 1), 1)) for key, value in counter.most_common(top)
        ]

    return {
        "samples": total,
        "threads": dict(threads.most_common()),
        "markers_percent": {k: round(100 * v / max(total, 1), 1) for k, v in markers.most_common()},
        "inclusive_percent": share(inclusive),
        "exclusive_percent": share(exclusive),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", default=None, help="only stacks of threads containing this")
    args = parser.parse_args()
    print(json.dumps(summarise(args.profile, args.top, args.thread), indent=1))


if __name__ == "__main__":
    main()
