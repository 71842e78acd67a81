"""Settings of one simulated EC2 account: delays, rates, faults and the zones it offers.

Frozen values only, so a test reads the whole behaviour of its simulator in one constructor call. This
module must not import moto or start anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Delays:
    """Seconds each asynchronous EC2 transition takes (on the simulator's clock).

    The defaults follow AWS's own figures for gp3 (a volume is ``available`` after about 1.5 s at the
    median); set them to 0 for a simulator that answers at once.
    """

    volume_create: float = 1.5
    attach: float = 1.0
    detach: float = 1.0
    snapshot: float = 5.0
    modify_modifying: float = 2.0  # modifying → optimizing (the new size is usable from here)
    modify_optimizing: float = 5.0  # optimizing → completed
    modify_cooldown: float = 6 * 3600.0  # EC2: wait at least six hours between modifications of a volume

    @classmethod
    def instant(cls) -> Delays:
        """Every transition done at once (the cooldown too), for tests that only check shapes."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Faults:
    """Failures drawn from the simulator's seeded RNG, per request, after the token bucket let it in."""

    throttle_rate: float = 0.0  # fraction answered RequestLimitExceeded (503) although tokens were left
    server_error_rate: float = 0.0  # fraction answered InternalError (500)
    volume_error_rate: float = 0.0  # fraction of created volumes that end in state ``error``


@dataclass(frozen=True)
class SimConfig:
    """One account in one region.

    ``scale`` multiplies every token-bucket refill rate and ``burst_scale`` every bucket size, so
    ``scale=10`` runs a throttling scenario ten times faster and ``scale=2, burst_scale=2`` is an account
    whose limits AWS doubled. ``neighbours`` maps an action to the calls per second another tool of the
    account spends of its bucket, first (see buckets.py). ``throttling=False`` turns the buckets off.
    ``latency`` gives seconds per action, ``default_latency`` the rest; ``latency_jitter`` adds a
    seeded uniform fraction on top (0.2 → up to +20%). ``zones`` must be a subset of the zones moto
    knows for ``region``: they are the only ones the simulator accepts and lists.
    ``account_id`` of ``None`` picks a fresh one per simulator so simulators in one process never share
    moto's state.
    """

    region: str = DEFAULT_REGION
    zones: tuple[str, ...] = ()  # empty: the first three zones moto knows for ``region``
    account_id: str | None = None
    scale: float = 1.0
    burst_scale: float = 1.0
    neighbours: Mapping[str, float] = field(default_factory=dict)
    throttling: bool = True
    delays: Delays = field(default_factory=Delays)
    faults: Faults = field(default_factory=Faults)
    latency: Mapping[str, float] = field(default_factory=dict)
    default_latency: float = 0.0
    latency_jitter: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale <= 0 or self.burst_scale <= 0:
            raise ValueError(f"scales must be positive, not {self.scale} and {self.burst_scale}")
        for name in ("throttle_rate", "server_error_rate", "volume_error_rate"):
            rate = getattr(self.faults, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {rate}")
