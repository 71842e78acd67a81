"""Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does it.

Why it exists: two replicas of the provisioner must never work on the same claim at once. A replica
leads while it renews the Lease; another takes over only after it has seen the Lease unchanged for a
whole lease duration (measured on its own monotonic clock, so clock skew between hosts does not
matter). Works over the KubeApi port; it never touches claims or volumes.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from typing import Any

from provisioner.ports.clock import Clock
from provisioner.ports.kube import (
    Kind,
    KubeAlreadyExists,
    KubeApi,
    KubeConflict,
    KubeError,
    KubeNotFound,
    Obj,
)

log = logging.getLogger(__name__)


def micro_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        clock: Clock,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 5.0,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.clock = clock
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.leading = threading.Event()
        self._observed: dict[str, Any] | None = None
        self._observed_at = 0.0

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = micro_time(self.clock.time())
        mine = previous is not None and previous.get("holderIdentity") == self.identity
        transitions = int((previous or {}).get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": (previous or {}).get("acquireTime") if mine else now,
            "renewTime": now,
            "leaseTransitions": transitions if mine or previous is None else transitions + 1,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        try:
            lease = self.api.get(Kind.LEASE, self.name, self.namespace)
        except KubeNotFound:
            body: Obj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                created = self.api.create(Kind.LEASE, body)
            except (KubeAlreadyExists, KubeError):
                return False
            self._observe(created.get("spec", {}))
            return True
        except KubeError as e:
            log.warning("leader election: reading lease failed: %s", e)
            return False
        spec = dict(lease.get("spec") or {})
        if spec != self._observed:
            self._observe(spec)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self.clock.monotonic() < self._observed_at + duration:
            return False
        lease["spec"] = self._spec(spec)
        try:
            updated = self.api.replace(Kind.LEASE, lease)
        except (KubeConflict, KubeError):
            return False
        self._observe(updated.get("spec", {}))
        return True

    def _observe(self, spec: dict[str, Any]) -> None:
        self._observed = dict(spec)
        self._observed_at = self.clock.monotonic()

    def release(self) -> None:
        """Give the Lease up so another replica need not wait for it to expire."""
        try:
            lease = self.api.get(Kind.LEASE, self.name, self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
            self.api.replace(Kind.LEASE, lease)
        except KubeError as e:
            log.info("leader election: release failed: %s", e)

    def run(
        self, stop: threading.Event, on_started: Callable[[], None], on_stopped: Callable[[], None]
    ) -> None:
        """Block: acquire, call ``on_started``, renew until ``stop`` or a missed renew deadline."""
        while not stop.is_set() and not self.try_acquire_or_renew():
            stop.wait(self.retry_period)
        if stop.is_set():
            return
        log.info("leader election: %s leads %s/%s", self.identity, self.namespace, self.name)
        self.leading.set()
        on_started()
        last_renew = self.clock.monotonic()
        try:
            while not stop.wait(self.retry_period):
                if self.try_acquire_or_renew():
                    last_renew = self.clock.monotonic()
                elif self.clock.monotonic() - last_renew > self.renew_deadline:
                    log.error("leader election: lost the lease %s/%s", self.namespace, self.name)
                    return
        finally:
            self.leading.clear()
            on_stopped()
            if stop.is_set():
                self.release()
