"""EC2's request-rate token buckets, one per action (per account and region), on an injected clock.

The sizes and refill rates are the ones AWS documents for the default account limits (see
"Request throttling for the Amazon EC2 API"): every API has its own bucket, so throttling CreateVolume
never slows AttachVolume. This module only counts tokens; it must not build responses or sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.ports.clock import Clock


@dataclass(frozen=True)
class BucketSpec:
    """A bucket's size (the burst) and its refill rate in tokens per second, before scaling."""

    capacity: float
    refill_per_second: float


# The volume and snapshot lifecycle calls have a larger bucket than other mutating calls.
RESOURCE_MUTATING = BucketSpec(100, 5)
CREATE_TAGS = BucketSpec(100, 10)
OTHER_MUTATING = BucketSpec(50, 5)
NON_MUTATING = BucketSpec(100, 20)
# DescribeVolumes/Instances/Snapshots asked for everything at once (no filter, no ids, no pages).
UNFILTERED_DESCRIBE = BucketSpec(50, 10)

_RESOURCE_MUTATING_ACTIONS = frozenset({"CreateVolume", "DeleteVolume", "CreateSnapshot", "DeleteSnapshot"})
_UNFILTERED_CAPABLE = frozenset({"DescribeVolumes", "DescribeInstances", "DescribeSnapshots"})
_NON_MUTATING_PREFIXES = ("Describe", "Get", "List")
# Parameters every request carries; any other one is a filter, an id or a page marker.
_ENVELOPE = frozenset({"Action", "Version", "DryRun"})

UNFILTERED_SUFFIX = ":unfiltered"


def is_mutating(action: str) -> bool:
    return not action.startswith(_NON_MUTATING_PREFIXES)


def bucket_for(action: str, params: Mapping[str, str]) -> tuple[str, BucketSpec]:
    """The bucket a request draws from: its key and its documented spec."""
    if action in _RESOURCE_MUTATING_ACTIONS:
        return action, RESOURCE_MUTATING
    if action == "CreateTags":
        return action, CREATE_TAGS
    if is_mutating(action):
        return action, OTHER_MUTATING
    if action in _UNFILTERED_CAPABLE and not (params.keys() - _ENVELOPE):
        return action + UNFILTERED_SUFFIX, UNFILTERED_DESCRIBE
    return action, NON_MUTATING


class TokenBucket:
    """Starts full; refills continuously at ``rate`` tokens per second up to ``capacity``."""

    __slots__ = ("_clock", "_stamp", "_tokens", "capacity", "rate")

    def __init__(self, capacity: float, rate: float, clock: Clock) -> None:
        self.capacity = capacity
        self.rate = rate
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        if now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)

    def take(self) -> bool:
        """Remove one token if there is one."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def tokens(self) -> float:
        self._refill()
        return self._tokens


class Buckets:
    """All buckets of one account, created on first use. Thread-safe."""

    def __init__(self, clock: Clock, scale: float = 1.0, enabled: bool = True) -> None:
        self._clock = clock
        self._scale = scale
        self._enabled = enabled
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def spec(self, action: str, params: Mapping[str, str] | None = None) -> BucketSpec:
        """The effective (scaled) spec for ``action``, so benchmarks can compute their floor."""
        _, spec = bucket_for(action, params or {"_": "filtered"})
        return BucketSpec(spec.capacity, spec.refill_per_second * self._scale)

    def take(self, region: str, action: str, params: Mapping[str, str]) -> bool:
        """Whether the request may proceed (always, when throttling is off)."""
        if not self._enabled:
            return True
        key, spec = bucket_for(action, params)
        with self._lock:
            bucket = self._buckets.get((region, key))
            if bucket is None:
                bucket = TokenBucket(spec.capacity, spec.refill_per_second * self._scale, self._clock)
                self._buckets[(region, key)] = bucket
            return bucket.take()
