"""Time as a port, so waiters and backoff are tested without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (deadlines are on this clock)."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (timestamps shown to users)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class Deadline:
    """An absolute point on a :class:`Clock`'s monotonic scale, or none at all."""

    __slots__ = ("at", "clock")

    def __init__(self, clock: Clock, timeout: float | None) -> None:
        self.clock = clock
        self.at = None if timeout is None else clock.monotonic() + max(0.0, timeout)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - self.clock.monotonic()

    def expired(self) -> bool:
        r = self.remaining()
        return r is not None and r <= 0

    def bounded(self, seconds: float) -> float:
        """``seconds`` shortened so that it does not pass the deadline (never negative)."""
        r = self.remaining()
        return max(0.0, seconds if r is None else min(seconds, r))
