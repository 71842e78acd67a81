"""EC2's documented request-rate buckets: the one table zonal's limiter and the EC2 simulator share.

AWS documents ("Request throttling for the Amazon EC2 API") that EC2 throttles each API action from
its own token bucket per account and region: ``burst`` requests at once, refilled at ``rate`` per
second; a request finding the bucket empty is answered ``RequestLimitExceeded``. The figures below are
the defaults of an account nobody asked AWS to raise. Accounts with raised limits have larger buckets
and faster refills, and every tool of the account draws on the same buckets, so zonal's limiter uses
this table only as its starting point (:mod:`provisioner.aws.ratelimit`).

To add an action whose bucket differs from its category's, add one row to :data:`ACTIONS`; an action
not listed gets its category's bucket by name (``Describe*``/``Get*``/``List*`` are non-mutating,
everything else mutating). This module holds data only: no clock, no boto3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class RateSpec:
    """A bucket: ``burst`` requests at once, refilled at ``rate`` per second."""

    burst: float
    rate: float

    def scaled(self, factor: float) -> RateSpec:
        """The bucket of an account whose limits are ``factor`` times these (size and refill alike)."""
        return RateSpec(self.burst * factor, self.rate * factor)


# The categories.
NON_MUTATING = RateSpec(100, 20)
UNFILTERED_NON_MUTATING = RateSpec(50, 10)  # a Describe* with no filter, id or page asked for everything
MUTATING = RateSpec(50, 5)

# Actions whose bucket is not their category's.
_VOLUME_LIFECYCLE = RateSpec(100, 5)
ACTIONS: Mapping[str, RateSpec] = MappingProxyType(
    {
        "CreateVolume": _VOLUME_LIFECYCLE,
        "DeleteVolume": _VOLUME_LIFECYCLE,
        "CreateSnapshot": _VOLUME_LIFECYCLE,
        "DeleteSnapshot": _VOLUME_LIFECYCLE,
        "CreateTags": RateSpec(100, 10),
    }
)

# Non-mutating actions that have the smaller bucket when asked for everything at once.
UNFILTERED_CAPABLE = frozenset({"DescribeVolumes", "DescribeInstances", "DescribeSnapshots"})
_NON_MUTATING_PREFIXES = ("Describe", "Get", "List")


def is_mutating(action: str) -> bool:
    return not action.startswith(_NON_MUTATING_PREFIXES)


def documented(action: str, unfiltered: bool = False) -> RateSpec:
    """The default bucket of ``action``; ``unfiltered``: the request names no filter, id or page."""
    if action in ACTIONS:
        return ACTIONS[action]
    if is_mutating(action):
        return MUTATING
    if unfiltered and action in UNFILTERED_CAPABLE:
        return UNFILTERED_NON_MUTATING
    return NON_MUTATING
