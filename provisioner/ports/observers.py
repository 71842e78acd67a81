"""What the cores report as they work, for the metrics module (:class:`provisioner.metrics.Metrics`
implements every protocol here) — so cores count without importing ``prometheus_client``.

Protocols only; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class InFlightObserver(Protocol):
    """Told how many operations an in-flight guard holds each time the number changes."""

    def inflight_changed(self, kind: str, count: int) -> None: ...


class LoopObserver(Protocol):
    """What the provisioner loop reports: its queues' depths (read when scraped) and each claim's time."""

    def watch_queue_depth(self, queue: str, depth: Callable[[], int]) -> None: ...

    def observe_claim(self, result: str, seconds: float) -> None: ...
