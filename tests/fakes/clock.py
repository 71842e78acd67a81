"""A clock whose time moves only when the test (or a sleeping caller) moves it."""

from __future__ import annotations

import threading


class FakeClock:
    """Implements :class:`provisioner.ports.clock.Clock`. ``sleep`` advances time instantly and
    records each requested delay in :attr:`sleeps`, so backoff sequences can be asserted."""

    def __init__(self, start: float = 1000.0, epoch: float = 1_700_000_000.0) -> None:
        self._now = start
        self._epoch_offset = epoch - start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        with self._lock:
            return self._now + self._epoch_offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
