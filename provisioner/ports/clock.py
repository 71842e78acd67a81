"""Time as a port, so waiters and backoff are tested without sleeping."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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


# The deadline of the RPC this thread serves: computed once per call by the CSI layer (the caller's
# deadline less a small headroom, see provisioner.csi.interceptors) and read by everything that waits —
# the controller core (its servicer passes it on), the EC2 adapter's retries and rate-limit waits, the
# node's commands.
_CURRENT_DEADLINE: ContextVar[Deadline | None] = ContextVar("zonal_current_deadline", default=None)


def current_deadline() -> Deadline | None:
    """The deadline set by the innermost :func:`deadline_scope` of this thread, if any."""
    return _CURRENT_DEADLINE.get()


@contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[None]:
    """Make ``deadline`` the :func:`current_deadline` inside the block (restored afterwards)."""
    token = _CURRENT_DEADLINE.set(deadline)
    try:
        yield
    finally:
        _CURRENT_DEADLINE.reset(token)
