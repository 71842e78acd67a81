"""EC2's request-rate token buckets of one simulated account, one per action (and region).

The sizes and refill rates are zonal's own table of the documented defaults
(:mod:`provisioner.aws.rates`), times the account's ``scale`` (refill rates) and ``burst_scale``
(sizes): an account with raised limits is a scaled default. A *neighbour* is another tool of the
account that spends a steady number of calls per second of an action's bucket, first: it takes tokens
as soon as they exist and catches up on what it could not get, like a client that retries until its
calls go through. The token arithmetic is zonal's one :class:`~provisioner.tokenbucket.TokenBucket`.
The client under test is never told these figures. This module only counts tokens; it must not build
responses or sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from provisioner.aws.rates import UNFILTERED_CAPABLE, RateSpec, documented
from provisioner.ports.clock import Clock
from provisioner.tokenbucket import TokenBucket

# Parameters every request carries; any other one is a filter, an id or a page marker.
_ENVELOPE = frozenset({"Action", "Version", "DryRun"})

UNFILTERED_SUFFIX = ":unfiltered"


def bucket_for(action: str, params: Mapping[str, str]) -> tuple[str, RateSpec]:
    """The bucket a request draws from: its key and its documented spec."""
    unfiltered = action in UNFILTERED_CAPABLE and not (params.keys() - _ENVELOPE)
    return action + (UNFILTERED_SUFFIX if unfiltered else ""), documented(action, unfiltered)


class _Shared:
    """One bucket of the account and the neighbour spending from it."""

    __slots__ = ("bucket", "neighbour", "owed", "spent")

    def __init__(self, bucket: TokenBucket, neighbour: float) -> None:
        self.bucket = bucket
        self.neighbour = neighbour  # calls per second the neighbour wants
        self.owed = 0.0  # calls it wanted and found no token for yet
        self.spent = 0.0  # tokens it has taken

    def settle(self, now: float) -> None:
        """Refill to ``now`` with the neighbour served first: it takes what it wants of the tokens in
        hand and the refill, and only what is left may pile up (to the bucket's size)."""
        bucket = self.bucket
        elapsed = now - bucket.stamp
        if elapsed <= 0:
            return
        inflow = bucket.rate * elapsed
        wanted = self.owed + self.neighbour * elapsed
        taken = min(max(0.0, bucket.issued - bucket.granted) + inflow, wanted)
        self.owed = wanted - taken
        self.spent += taken
        bucket.refill(now, inflow - taken)


class Buckets:
    """All buckets of one account, created on first use. Thread-safe."""

    def __init__(
        self,
        clock: Clock,
        scale: float = 1.0,
        enabled: bool = True,
        burst_scale: float = 1.0,
        neighbours: Mapping[str, float] | None = None,
    ) -> None:
        self._clock = clock
        self._scale = scale
        self._burst_scale = burst_scale
        self._enabled = enabled
        self._neighbours = dict(neighbours or {})
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Shared] = {}
        # Every bucket exists (full) from here on, its neighbour spending; from a change on, for a
        # bucket first used after a neighbour was set.
        self._opened: dict[str, float] = {}
        self._since = clock.monotonic()

    def spec(self, action: str, params: Mapping[str, str] | None = None) -> RateSpec:
        """The effective (scaled) spec for ``action``, so benchmarks can compute their floor."""
        return self._scaled(bucket_for(action, {"_": "filtered"} if params is None else params)[1])

    def _scaled(self, spec: RateSpec) -> RateSpec:
        return RateSpec(spec.burst * self._burst_scale, spec.rate * self._scale)

    def set_neighbour(self, action: str, rate: float) -> None:
        """From now on a neighbour spends ``rate`` calls per second of ``action``'s buckets (0: none)."""
        with self._lock:
            now = self._clock.monotonic()
            self._neighbours[action] = rate
            self._opened[action] = now
            for (_, key), shared in self._buckets.items():
                if key.split(":")[0] == action:
                    shared.settle(now)
                    shared.neighbour = rate

    def neighbour_spent(self, action: str) -> float:
        """Tokens the neighbours of ``action`` have taken so far (every region)."""
        with self._lock:
            now = self._clock.monotonic()
            total = 0.0
            for (_, key), shared in self._buckets.items():
                if key.split(":")[0] == action:
                    shared.settle(now)
                    total += shared.spent
            return total

    def take(self, region: str, action: str, params: Mapping[str, str]) -> bool:
        """Whether the request may proceed (always, when throttling is off)."""
        if not self._enabled:
            return True
        key, documented_spec = bucket_for(action, params)
        with self._lock:
            now = self._clock.monotonic()
            shared = self._buckets.get((region, key))
            if shared is None:
                spec = self._scaled(documented_spec)
                bucket = TokenBucket(spec.burst, spec.rate, self._opened.get(action, self._since))
                shared = self._buckets[(region, key)] = _Shared(bucket, self._neighbours.get(action, 0.0))
            shared.settle(now)
            return shared.bucket.try_take(now)
