"""A fake monotonic clock whose sleeps advance time instantly: poll loops run in microseconds."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """A monotonic clock and an async sleep that moves it: poll loops run in microseconds."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
