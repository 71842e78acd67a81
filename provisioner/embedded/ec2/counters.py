"""Per-action call counts that tests and benchmarks read (in process or as JSON over HTTP).

``calls`` counts every request that named an action; ``throttled`` the RequestLimitExceeded answers
(bucket or injected); ``errors`` every other error answer, with its code in ``codes``. This module
must not decide anything: the application reports what it answered.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ActionCounts:
    calls: int = 0
    throttled: int = 0
    errors: int = 0
    codes: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "throttled": self.throttled,
            "errors": self.errors,
            "codes": dict(self.codes),
        }


class Counters:
    """Thread-safe; :meth:`snapshot` returns copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_action: dict[str, ActionCounts] = {}

    def _get(self, action: str) -> ActionCounts:
        counts = self._by_action.get(action)
        if counts is None:
            counts = self._by_action[action] = ActionCounts()
        return counts

    def call(self, action: str) -> None:
        with self._lock:
            self._get(action).calls += 1

    def throttled(self, action: str) -> None:
        with self._lock:
            counts = self._get(action)
            counts.throttled += 1
            counts.codes["RequestLimitExceeded"] += 1

    def error(self, action: str, code: str) -> None:
        with self._lock:
            counts = self._get(action)
            counts.errors += 1
            counts.codes[code] += 1

    def snapshot(self) -> dict[str, ActionCounts]:
        with self._lock:
            return {
                action: ActionCounts(c.calls, c.throttled, c.errors, Counter(c.codes))
                for action, c in self._by_action.items()
            }

    def as_json(self) -> dict[str, object]:
        return {action: counts.as_json() for action, counts in sorted(self.snapshot().items())}

    def reset(self) -> None:
        with self._lock:
            self._by_action.clear()
