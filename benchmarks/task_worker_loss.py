"""What becomes of a task run whose task worker dies: the measurement behind scaling out with
slices of a deployment (which have heartbeats) rather than Prefect's task workers.

Starts ``prefect server start`` on loopback, a task worker (``Task.serve()`` in a child process)
serving one slow task, submits it with ``.delay()``, SIGKILLs the worker while the task runs,
starts a second task worker, and watches the task run's state for ``--watch`` seconds. Prints one
JSON object: the state after the kill, whether anything moved it, and whether the second worker
ran it again.

    uv run --frozen python benchmarks/task_worker_loss.py --watch 120
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import Background, clean_env, prefect_server

SERVE = """
import sys, time
from prefect import task

@task(name="slow-video")
def slow_video(seconds: float) -> str:
    print("STARTED", flush=True)
    time.sleep(seconds)
    return "done"

if __name__ == "__main__":
    slow_video.serve()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", type=float, default=120.0, help="seconds to watch after")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="omniflash-taskworker-"))
    script = root / "serve_slow.py"
    script.write_text(SERVE)
    out: dict[str, Any] = {"watch_seconds": args.watch}
    with prefect_server(root / "home") as server:
        env = clean_env(server.home, PREFECT_API_URL=server.api_url)
        os.environ.update({"PREFECT_API_URL": server.api_url, "PREFECT_HOME": str(server.home)})
        sys.path.insert(0, str(root))
        from prefect.client.orchestration import get_client
        from serve_slow import slow_video  # type: ignore[import-not-found]

        future = slow_video.delay(600)  # queued on the server until a worker subscribes
        argv = [sys.executable, str(script)]
        first = Background(argv, cwd=root, env=env, log=root / "first.log")
        while "STARTED" not in first.output():
            time.sleep(0.2)
        os.killpg(first.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        second = Background(argv, cwd=root, env=env, log=root / "second.log")
        states: list[tuple[float, str]] = []
        with get_client(sync_client=True) as client:
            while time.monotonic() - killed < args.watch:
                state = client.read_task_run(future.task_run_id).state
                name = state.name if state and state.name else "none"
                if not states or states[-1][1] != name:
                    states.append((round(time.monotonic() - killed, 1), name))
                time.sleep(1)
        out["states_after_kill"] = states
        out["second_worker_ran_it"] = "STARTED" in second.output()
        second.stop()
        first.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
