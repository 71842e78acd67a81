"""A rate-limited work queue, as client-go's: each key at most once in the queue and never processed by
two workers at once, per-key exponential backoff (``retry_interval_start`` doubling up to
``retry_interval_max``), delayed adds, and N worker threads.

Why it exists: the loop must retry failed claims without hammering the driver or the API server, and a
claim that changes while being processed must be processed again afterwards. It knows nothing about
Kubernetes or CSI; handlers decide what a key means.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable

from provisioner.ports.clock import Clock, SystemClock

log = logging.getLogger(__name__)


class Backoff:
    """Per-key exponential backoff: ``start * 2**failures``, capped at ``maximum``."""

    def __init__(self, start: float, maximum: float) -> None:
        self.start = start
        self.maximum = maximum
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def when(self, key: str) -> float:
        with self._lock:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
        if n > 62:
            return self.maximum
        return float(min(self.start * (2**n), self.maximum))

    def forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        with self._lock:
            return self._failures.get(key, 0)


class WorkQueue:
    def __init__(self, backoff: Backoff, clock: Clock | None = None) -> None:
        self.backoff = backoff
        self.clock = clock or SystemClock()
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._shutdown = False

    def add(self, key: str) -> None:
        with self._cond:
            if self._shutdown or key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            heapq.heappush(self._delayed, (self.clock.monotonic() + delay, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: str) -> float:
        delay = self.backoff.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self.backoff.forget(key)

    def _promote_due(self) -> float | None:
        """Move due delayed keys into the queue; the seconds until the next one, if any."""
        now = self.clock.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key not in self._dirty:
                self._dirty.add(key)
                if key not in self._processing:
                    self._queue.append(key)
        return self._delayed[0][0] - now if self._delayed else None

    def get(self) -> str | None:
        """The next key to process (blocks); ``None`` once shut down."""
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                wait = self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                self._cond.wait(timeout=wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def shut_down(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def pending(self) -> int:
        """Queued, delayed and in-process keys together (0 = idle)."""
        with self._cond:
            return len(self._queue) + len(self._delayed) + len(self._processing)


def start_workers(
    queue: WorkQueue, handler: Callable[[str], None], count: int, name: str
) -> list[threading.Thread]:
    """``count`` daemon threads that process keys until the queue shuts down."""

    def work() -> None:
        while (key := queue.get()) is not None:
            try:
                handler(key)
            except Exception:  # a bug in one key must not kill the worker
                log.exception("%s: processing %s failed", name, key)
                queue.add_rate_limited(key)
            finally:
                queue.done(key)

    threads = [threading.Thread(target=work, name=f"{name}-{i}", daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    return threads
