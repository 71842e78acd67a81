"""When a wait checks again: today's fixed backoff, or a schedule learned from how long EC2 took.

Why: the wait for ``available`` after CreateVolume polled 1.0 s after the call, then ×1.6 (2.6 s, 5.2 s
…), so a volume EC2 makes in 2 s was seen at 2.6 s, and with 100 calls in flight those 0.6 s (plus a
poll that always missed) bound how fast 1000 volumes can be made on an account that lets them through
quickly. EC2's creating time is steady for one kind of volume (type, size range, blank or restored), so
the waits learn it, per kind, from what their checks see, and put a check right there.

What is learned: for each kind, the point ``T`` (seconds after CreateVolume answered) by which a share
``quantile`` of the volumes are seen available. Each wait's check at its ``T`` answers exactly "was it
available by ``T``?", which is what a stochastic quantile estimator needs: yes → ``T`` shrinks by a
step of ``step × (1 − quantile)`` (in log), no → it grows by ``step × quantile``; the steps balance
where the answer is yes a ``quantile`` share of the time. A step moves ``T`` from the value the wait
started with (not from the current one), so a hundred waits that began together and all missed move it
one step, not a hundred. A kind's first few moves take larger steps, to find it quickly.

The schedule around ``T`` (elapsed seconds, all derived from the fixed backoff's settings: initial
``i``, factor ``f``, cap ``m``):

* before ``T``: checks at ``T / f²``, ``T / f⁴`` … down to ``i`` (every other point of a ×f grid), no
  two more than ``m`` apart, so a volume much quicker than its kind is still seen within f² of its time
  or ``m`` seconds, whichever is less (the fixed backoff: within f or ``m``), while a kind that takes
  up to ``i × f²`` is checked once;
* at ``T``;
* after ``T`` (the volume is late): gaps from ``T × (f − 1) / 4`` (at least ``i / 4``), growing ×f,
  at most ``m`` and at most ``f − 1`` times the time waited — so a slow outlier is seen within f of
  its time or ``m`` seconds, like the fixed backoff;

and no wait ever polls faster than every ``i / 4`` seconds.

``T`` starts at ``i`` (the fixed backoff's first check) and stays within ``i / 4`` .. ``limit`` seconds.

The pacing knows nothing of EC2 (the caller names the kind; :func:`creation_kind` is the kind of a new
volume's wait) and never reads a clock: times come in as seconds elapsed since the wait began.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from provisioner.model import Volume


class Pace(Protocol):
    """One wait's schedule. :class:`~.waiter.Waiter` asks for the pause before each check and says
    what each check found."""

    def pause(self, elapsed: float) -> float:
        """Seconds to sleep before the next check, ``elapsed`` seconds after the wait began."""
        ...

    def checked(self, done: bool) -> None:
        """The check just made found the state reached (``done``) or not yet."""
        ...


class Backoff:
    """The fixed schedule: ``initial``, then each pause ``factor`` times the last, at most ``cap``."""

    __slots__ = ("_delay", "cap", "factor")

    def __init__(self, initial: float, factor: float, cap: float) -> None:
        self._delay = initial
        self.factor = factor
        self.cap = cap

    def pause(self, elapsed: float) -> float:
        delay = self._delay
        self._delay = min(delay * self.factor, self.cap)
        return delay

    def checked(self, done: bool) -> None:
        return None


@dataclass(frozen=True)
class Learning:
    """How :class:`LearnedPaces` learns (see the module docstring)."""

    # Share of a kind's volumes the check at T should find available. Higher: fewer polls after it, a
    # later check for most volumes. For a gp3-like spread (lognormal, median 2.5 s, σ 0.6) 0.8 sees a
    # volume 1.1 s after it is available with 2.2 polls (0.7: 0.95 s, 2.5 polls; the fixed backoff:
    # 1.3 s, 2.5 polls); for a steady 2 s, 0.17 s with 1.2 polls (the fixed backoff: 0.6 s, 2 polls).
    quantile: float = 0.8
    # Log-step of T per wait: 0.2 moves T by ×1.15 after a miss and ×0.94 after a hit.
    step: float = 0.2
    # A kind's first `warmup` moves take steps of `warmup_step` (×1.42 / ×0.86), so a kind is found in
    # a few waits and then held steadily (a step that shrinks with experience, as stochastic
    # approximation wants).
    warmup: int = 6
    warmup_step: float = 0.5
    # T never beyond this many seconds.
    limit: float = 300.0


def schedule(learned: float, initial: float, factor: float, cap: float) -> tuple[list[float], float, float]:
    """The schedule around a learned point ``learned``: (the checks up to and including it, in order;
    the first gap after it; the least gap)."""
    least = initial / 4
    early: list[float] = []
    point = max(learned / (factor * factor), learned - cap)
    while point >= initial:
        early.append(point)
        point = max(point / (factor * factor), point - cap)
    first_gap = min(cap, max(least, learned * (factor - 1) / 4))
    return [*reversed(early), learned], first_gap, least


class LearnedPace:
    """One wait on the schedule around its kind's learned point (see the module docstring)."""

    __slots__ = ("_checks", "_gap", "_least", "_owner", "_taught", "cap", "factor", "kind", "learned")

    def __init__(self, owner: LearnedPaces, kind: Hashable, learned: float) -> None:
        self._owner = owner
        self.kind = kind
        self.learned = learned
        self.factor = owner.factor
        self.cap = owner.cap
        self._checks, self._gap, self._least = schedule(learned, owner.initial, owner.factor, owner.cap)
        self._taught = False  # a wait teaches its kind once, from the first check that can tell

    def pause(self, elapsed: float) -> float:
        while self._checks:
            point = self._checks.pop(0)
            if point - elapsed >= self._least or not self._checks:  # skip an early check run past
                return max(self._least, point - elapsed)
        gap = min(self._gap, max(self._least, (self.factor - 1) * elapsed))  # within ×f of its time
        self._gap = min(self.cap, gap * self.factor)
        return gap

    def checked(self, done: bool) -> None:
        # An early check that found it done: done by T. The check at T (the schedule's last point, or
        # a later one) answers for T either way. A wait teaches its kind once.
        if not self._taught and (done or not self._checks):
            self._taught = True
            self._owner.learn(self.kind, self.learned, done)


class LearnedPaces:
    """Per kind of wait, the point a ``quantile`` share of them is done by; hands out paces. Thread-safe.

    ``initial``, ``factor`` and ``cap`` are the fixed backoff's (ControllerConfig.wait_*); a kind's point
    starts at ``initial``."""

    def __init__(self, initial: float, factor: float, cap: float, learning: Learning | None = None) -> None:
        if initial <= 0 or factor <= 1 or cap < initial:
            raise ValueError(f"a backoff of {initial}, ×{factor}, at most {cap}, cannot be paced")
        self.initial = initial
        self.factor = factor
        self.cap = cap
        self.learning = learning or Learning()
        q = self.learning.quantile
        if not 0 < q < 1 or self.learning.step <= 0:
            raise ValueError(f"quantile {q} must be between 0 and 1 and step positive")
        self._lowest = initial / 4
        self._lock = threading.Lock()
        self._points: dict[Hashable, float] = {}
        self._moves: dict[Hashable, int] = {}  # moves each kind's point made (lessons that moved it)

    def pace(self, kind: Hashable) -> LearnedPace:
        """A pace for one wait of ``kind``."""
        with self._lock:
            learned = self._points.get(kind, self.initial)
        return LearnedPace(self, kind, learned)

    def point(self, kind: Hashable) -> float | None:
        """The learned point of ``kind`` (None before any wait of it taught one)."""
        with self._lock:
            return self._points.get(kind)

    def learn(self, kind: Hashable, used: float, by_used: bool) -> None:
        """A wait of ``kind`` that used the point ``used`` found its state reached by then or not. The
        step is taken from ``used``, so waits that began together move the point once, not once each."""
        learning = self.learning
        with self._lock:
            current = self._points.get(kind, self.initial)
            moves = self._moves.get(kind, 0)
            step = learning.warmup_step if moves < learning.warmup else learning.step
            if by_used:
                moved = min(current, used * math.exp(-step * (1 - learning.quantile)))
            else:
                moved = max(current, used * math.exp(step * learning.quantile))
            moved = min(learning.limit, max(self._lowest, moved))
            self._points[kind] = moved
            if moved != current:
                self._moves[kind] = moves + 1


def creation_kind(volume: Volume, copied: bool = False) -> tuple[str, str, int]:
    """The kind of a new volume's wait for ``available``: its type, how it was made (blank, restored
    from a snapshot, copied from a volume) and its size's order of magnitude in GiB (1–9, 10–99 …)."""
    origin = "copy" if copied else "snapshot" if volume.snapshot_id else "blank"
    return volume.volume_type, origin, len(str(max(1, volume.size_gib)))
