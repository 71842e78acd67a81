"""Seeded chance: injected throttles and server errors, per-action latency, doomed volumes.

Each concern draws from its own ``random.Random`` (derived from the one seed), so changing one rate
never reshuffles another's outcomes; with requests made one after another the same seed replays the
same run. Concurrent requests draw in arrival order, which the OS decides. This module must not
sleep, build responses or touch moto.
"""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Mapping

from provisioner.embedded.ec2.config import SimConfig


class Fault(enum.Enum):
    THROTTLE = "throttle"  # answered RequestLimitExceeded, HTTP 503
    SERVER_ERROR = "server_error"  # answered InternalError, HTTP 500


class Chance:
    """The seeded draws of one simulator. Thread-safe."""

    def __init__(self, config: SimConfig) -> None:
        self._faults = config.faults
        self._latency: Mapping[str, float] = dict(config.latency)
        self._default_latency = config.default_latency
        self._jitter = config.latency_jitter
        self._lock = threading.Lock()
        self._fault_rng = random.Random(config.seed)
        self._latency_rng = random.Random(config.seed + 1)
        self._volume_rng = random.Random(config.seed + 2)

    def fault(self) -> Fault | None:
        """The failure to inject into this request, if any."""
        throttle, server = self._faults.throttle_rate, self._faults.server_error_rate
        if throttle <= 0 and server <= 0:
            return None
        with self._lock:
            roll = self._fault_rng.random()
        if roll < throttle:
            return Fault.THROTTLE
        if roll < throttle + server:
            return Fault.SERVER_ERROR
        return None

    def latency(self, action: str) -> float:
        """Seconds the simulator takes to answer ``action``."""
        base = self._latency.get(action, self._default_latency)
        if base <= 0 or self._jitter <= 0:
            return max(0.0, base)
        with self._lock:
            return base * (1.0 + self._jitter * self._latency_rng.random())

    def volume_fails(self) -> bool:
        """Whether a new volume ends in state ``error`` instead of ``available``."""
        rate = self._faults.volume_error_rate
        if rate <= 0:
            return False
        with self._lock:
            return self._volume_rng.random() < rate
