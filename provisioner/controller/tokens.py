"""ClientTokens: which EC2 ClientToken a name's next CreateVolume carries, and when it may change.

CreateVolume's idempotency rests on EC2's ClientToken (as aws-ebs-csi-driver's has since its PR #982):
the token is sha256 of the CSI name, so a retried call — after a timeout, a restart, a lost answer —
gets the volume the first call made instead of a second one. A token is replaced only when keeping it
cannot work: EC2 answers it with a volume that has since been deleted (the name is being reused), or
the volume it made ended in ``error``, or EC2 has held it with other parameters for longer than the
grace (see :meth:`ClientTokens.mismatch_outlived_grace`). Generations live in memory: after a restart
the first token is tried again and EC2's answer leads back to the current one.

This module must not know about EC2 or gRPC; it only counts.
"""

from __future__ import annotations

import hashlib
import threading

from provisioner.ports.clock import Clock


def client_token(name: str, generation: int = 0) -> str:
    """EC2 ClientToken for the ``generation``-th attempt at creating ``name`` (hex sha256, 64 chars)."""
    base = name if generation == 0 else f"{name}-{generation + 1}"
    return hashlib.sha256(base.encode("utf-8")).hexdigest()


class ClientTokens:
    """Per-name token generations and the time of the first unexplained IdempotentParameterMismatch."""

    def __init__(self, clock: Clock, mismatch_grace: float) -> None:
        self._clock = clock
        self._grace = mismatch_grace
        self._lock = threading.Lock()
        self._generation: dict[str, int] = {}
        self._mismatch_since: dict[str, float] = {}

    def current(self, name: str) -> str:
        with self._lock:
            return client_token(name, self._generation.get(name, 0))

    def rotate(self, name: str) -> None:
        """The current token is spent (its volume is gone): the next request uses a fresh one."""
        with self._lock:
            self._generation[name] = self._generation.get(name, 0) + 1
            self._mismatch_since.pop(name, None)

    def mismatch_outlived_grace(self, name: str) -> bool:
        """EC2 answered IdempotentParameterMismatch and no volume of ``name`` is visible.

        Replacing the token at once could create a second volume while the first is still invisible to
        Describe (eventual consistency), so this answers True only once ``mismatch_grace`` seconds have
        passed since the first such answer for ``name``; the caller then rotates."""
        now = self._clock.monotonic()
        with self._lock:
            since = self._mismatch_since.setdefault(name, now)
        return now - since >= self._grace
