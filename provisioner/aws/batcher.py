"""Merge concurrent single-object lookups into one EC2 Describe call with an id (or tag) filter.

Why: a hundred CreateVolume/ControllerPublish calls each polling their own volume would make a
hundred DescribeVolumes a second, against a bucket that refills 20 a second. A :class:`Batcher`
collects the keys asked for during a short window (``window``) and, under load, keeps consecutive
calls of one kind apart, then makes one call for all of them and hands each caller its own answer. A
full batch (``max_batch`` keys) goes at once.

The spacing under load is ``min_interval``, or, given a ``target_batch``, whatever makes a call carry
about that many keys at the rate keys arrive (within ``min_interval`` .. ``max_interval``): volumes
created at 25 a second are polled every ~0.4 s, at 2.5 a second every ~6 s, so DescribeVolumes stays
near one call per ``target_batch`` polls whatever rate EC2 lets volumes be created at. A batch that
already holds ``target_batch`` keys goes without waiting out the spacing (but never sooner than
``min_interval`` after the previous call): a wave of lookups due together is not held for a spacing
learned while fewer arrived. A lone caller is never delayed (the previous call is long past). No caller
is held past its deadline (:func:`~provisioner.ports.clock.current_deadline`): the batch goes at least
``DEADLINE_MARGIN`` seconds before the earliest deadline among its callers, so the answer can still
reach that caller in time.

How each caller's answer is chosen:

* the key is in the answer → that value;
* the key is absent (a filter never fails on an unknown id; it just leaves it out) → ``missing(key)``,
  which raises NotFound or returns a default — for that caller only;
* the batch call failed with :class:`~provisioner.errors.Unavailable` (throttled, 5xx, network) →
  every caller gets that error: one call per key would fare no better and multiply the load;
* the batch call failed otherwise (EC2 refused something about one of the keys) → each caller falls
  back to its own single-key call (``single``), in its own thread, so one bad key never fails the
  others.

The leader (the caller that opened the batch) makes the call in its own thread; nothing runs in the
background. The window is real time (tens of milliseconds, not a wait on EC2 state), so this module
reads ``time.monotonic`` rather than an injected clock. It must not know about boto3: the fetch
functions come from :class:`~provisioner.aws.ec2.Ec2Cloud`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from provisioner.errors import Unavailable, ZonalError
from provisioner.ports.clock import current_deadline

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEADLINE_MARGIN = 0.5  # seconds a batch starts before its earliest caller's deadline, for the call itself


@dataclass(frozen=True)
class BatchSettings:
    """How :class:`~provisioner.aws.ec2.Ec2Cloud` batches its lookups."""

    # How long the first caller waits for others to join (seconds, real time).
    window: float = 0.03
    # Under load, consecutive calls of one kind start at least this far apart; callers arriving
    # meanwhile join the next call. A lone caller is not delayed (the previous call is long past).
    min_interval: float = 0.25
    # DescribeVolumes (waits, lookups by name) space themselves to carry about `target_batch` keys a
    # call, up to `max_interval` apart: under a steady stream of creations a poll waits up to that long
    # for its slot. The learned waits poll a volume about 1.3–1.5 times while it is created, so 24 keys
    # a call keep the waits for `available` near one DescribeVolumes per 17 volumes at whatever rate
    # CreateVolume runs (30 did when the fixed backoff polled twice).
    target_batch: int = 24
    max_interval: float = 8.0
    # DescribeInstances keeps a fixed spacing: an attach waits for its lookup before it picks a device
    # name, so its slot is at most this far off (no lock is held across it: controller/attach.py).
    instance_interval: float = 2.0
    max_volumes: int = 500  # the adapter splits these into filters of ec2.ID_BATCH values
    max_instances: int = 50
    batch_names: bool = True  # CreateVolume's lookup by name (a tag filter) too


class _Batch(Generic[K, V]):
    __slots__ = ("done", "error", "full", "keys", "latest", "results")

    def __init__(self) -> None:
        self.keys: dict[K, None] = {}
        self.full = False
        self.latest = math.inf  # when the earliest caller's deadline wants the call to start
        self.done = threading.Event()
        self.results: Mapping[K, V] = {}
        self.error: ZonalError | None = None


class Batcher(Generic[K, V]):
    """``get(key)`` blocks until the batch holding ``key`` is answered. Thread-safe."""

    def __init__(
        self,
        fetch: Callable[[list[K]], Mapping[K, V]],
        single: Callable[[K], V],
        missing: Callable[[K], V],
        window: float,
        min_interval: float = 0.0,
        max_batch: int = 500,
        monotonic: Callable[[], float] = time.monotonic,
        target_batch: int = 0,
        max_interval: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._fetch = fetch
        self._single = single
        self._missing = missing
        self._window = max(0.0, window)
        self._min_interval = max(0.0, min_interval)
        self._max_interval = max(self._min_interval, max_interval)
        self._target = max(0, target_batch)
        self.spacing = self._min_interval  # between calls under load, adapted to ``target_batch``
        self._max = max_batch
        self._now = monotonic
        self._cond = threading.Condition()
        self._open: _Batch[K, V] | None = None
        self._last_call = float("-inf")
        self.calls = 0  # batch calls made (fallbacks not included), for tests and benchmarks

    @classmethod
    def lookups(
        cls,
        fetch: Callable[[list[K]], Mapping[K, V]],
        single: Callable[[K], V],
        missing: Callable[[K], V],
        settings: BatchSettings,
        instances: bool = False,
    ) -> Batcher[K, V]:
        """Volume lookups (spacing adapted to ``target_batch``) or instance lookups (a fixed spacing),
        as ``settings`` say."""
        s = settings
        if instances:
            return cls(fetch, single, missing, s.window, s.instance_interval, s.max_instances)
        return cls(
            fetch,
            single,
            missing,
            s.window,
            s.min_interval,
            s.max_volumes,
            target_batch=s.target_batch,
            max_interval=s.max_interval,
        )

    def get(self, key: K) -> V:
        latest = self._latest_start()
        with self._cond:
            batch = self._open
            leader = batch is None
            if batch is None:
                batch = self._open = _Batch()
            batch.keys[key] = None
            if latest < batch.latest:
                batch.latest = latest
                self._cond.notify_all()
            if len(batch.keys) >= self._max:
                batch.full = True
                self._open = None
                self._cond.notify_all()
            elif len(batch.keys) == self._target:
                self._cond.notify_all()
        if leader:
            self._lead(batch)
        else:
            batch.done.wait()
        return self._answer(batch, key)

    def _latest_start(self) -> float:
        """When this caller's deadline wants its batch to start at the latest (``inf``: no deadline)."""
        deadline = current_deadline()
        remaining = None if deadline is None else deadline.remaining()
        if remaining is None:
            return math.inf
        return self._now() + max(0.0, remaining - DEADLINE_MARGIN)

    def _lead(self, batch: _Batch[K, V]) -> None:
        with self._cond:
            opened = self._now()
            start_at = max(opened + self._window, self._last_call + self.spacing)
            # A batch holding the target goes once the window and the minimum interval have passed.
            soonest = max(opened + self._window, self._last_call + self._min_interval)
            loaded = start_at > opened + self._window  # this call waits for the previous one's spacing
            while not batch.full:
                go = soonest if self._target and len(batch.keys) >= self._target else start_at
                remaining = min(go, batch.latest) - self._now()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._open is batch:
                self._open = None
            keys = list(batch.keys)
            now = self._now()
            self._adapt(len(keys), now - self._last_call, loaded)
            self._last_call = now
            self.calls += 1
        try:
            batch.results = self._fetch(keys)
        except ZonalError as e:
            batch.error = e
        finally:
            batch.done.set()

    def _adapt(self, keys: int, since_last: float, loaded: bool) -> None:
        if self._target:
            self.spacing = next_spacing(
                self.spacing, keys, since_last, loaded, self._target, self._min_interval, self._max_interval
            )

    def _answer(self, batch: _Batch[K, V], key: K) -> V:
        error = batch.error
        if error is not None:
            if isinstance(error, Unavailable) or len(batch.keys) == 1:
                # A fresh exception per caller: one instance raised in many threads would share a traceback.
                raise type(error)(error.message) from error
            return self._single(key)
        if key in batch.results:
            return batch.results[key]
        return self._missing(key)


def next_spacing(
    spacing: float, keys: int, since_last: float, loaded: bool, target: int, low: float, high: float
) -> float:
    """The spacing after a call of ``keys`` keys made ``since_last`` seconds after the previous one:
    half way (in ratio) towards the one that gives ``target`` keys a call at that arrival rate, within
    ``low`` .. ``high``; back to ``low`` once calls stop queueing behind each other (not ``loaded``)."""
    if not loaded or since_last <= 0 or keys <= 0:
        return low
    ideal = target * since_last / keys
    return min(high, max(low, math.sqrt(spacing * ideal)))
