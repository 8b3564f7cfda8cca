"""What the spend limit tests share: a price, unique names, rows, and the emulator's charges."""

from __future__ import annotations

import uuid
from typing import Any

from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.emulator.validation import price_of

#: A 10 s 720p video costs 0.4 on the emulator: a limit of 2.0 holds five.
PRICE = price_of(10, "720p")


def limit_name() -> str:
    return f"limit-{uuid.uuid4().hex[:10]}"


def rows(count: int, prefix: str = "v") -> list[dict[str, Any]]:
    """``count`` distinct 10 s 720p rows, ids ``<prefix>00``, ``<prefix>01``, ..."""
    return [
        {"id": f"{prefix}{i:02d}", "prompt": f"Shot {i}: rain on a tin roof", "duration": 10}
        for i in range(count)
    ]


def emulator_cost(emulator: EmulatorServer) -> float:
    """What the emulator charged in all (failed tasks refunded)."""
    tasks = emulator.state.snapshot()["tasks"].values()
    return round(sum(float(task["cost"]) for task in tasks), 6)


def settled_request(duration: int) -> VideoRequest:
    """A request of the given duration, for settling a cost of its price class."""
    return VideoRequest(prompt="A settled video", duration=duration)
