"""The relocation lease: only one process drives a relocation at a time.

Why it exists: ``--resume`` and ``--rollback`` read the journal and act on it. Two of them at once (two
operators, or a resume while the original run is in fact still going on another laptop) would both take
the same step: a second, orphaned snapshot; the journal's last writer winning; a rollback deleting what
a resume is using. So the process that drives a relocation holds a lease, the annotation
:data:`~.journal.ANN_LEASE` on the PV that carries the journal: who holds it (host, pid, a random id)
and when it was last renewed.

It is taken and renewed only with optimistic concurrency: replace with the resourceVersion the PV was
read with; on a conflict the PV is read again and the decision made again, so an unrelated update of the
PV (the PV controller writing its status) is retried, not fatal. Every journal write goes through
:meth:`LeaseKeeper.write`, which renews the lease and refuses to write when it is someone else's; long
waits renew it by a heartbeat. A lease not renewed for :data:`LEASE_TTL` seconds is dead (its process
was killed) and may be taken; ``--take-over`` takes a live one at once. A finished or rolled-back
relocation releases it; so does a process that stops on an error or Ctrl-C.

What it must not do: decide any step of the relocation, print, sleep, or import an adapter. Time is the
injected Clock's wall time (``Clock.time``), since leases are compared across machines.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

from provisioner.errors import FailedPrecondition, Unavailable
from provisioner.ports.clock import Clock
from provisioner.ports.kube import Kind, KubeApi, KubeConflict, Obj
from provisioner.relocate.journal import ANN_LEASE

# Seconds without a renewal after which a holder counts as gone (killed -9, its laptop closed). A live
# holder renews at every journal write and at least every HEARTBEAT seconds while it waits.
LEASE_TTL = 60.0
HEARTBEAT = LEASE_TTL / 3
# Conflicts in a row (someone else updating the PV between our read and our write) before giving up.
MAX_CONFLICTS = 20


@dataclass(frozen=True)
class Holder:
    """Who drives a relocation: ``host``, ``pid`` and a random ``id`` (pids repeat across hosts)."""

    host: str
    pid: int
    id: str

    @classmethod
    def mine(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(4))

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid} (lease id {self.id})"


@dataclass(frozen=True)
class Lease:
    holder: Holder
    renewed: float  # Clock.time() of the last renewal
    ttl: float = LEASE_TTL

    def age(self, now: float) -> float:
        return max(0.0, now - self.renewed)

    def live(self, now: float) -> bool:
        return self.age(now) < self.ttl

    def encode(self) -> str:
        h = self.holder
        doc = {"host": h.host, "pid": h.pid, "id": h.id, "renewed": self.renewed, "ttl": self.ttl}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, text: str) -> Lease | None:
        """The lease in ``text``, or None when it is not one (hand-edited: it counts as no lease)."""
        try:
            d = json.loads(text)
            return cls(
                Holder(str(d["host"]), int(d["pid"]), str(d["id"])), float(d["renewed"]), float(d["ttl"])
            )
        except (ValueError, TypeError, KeyError):
            return None


def lease_of(pv: Obj) -> Lease | None:
    text = (pv.get("metadata", {}).get("annotations") or {}).get(ANN_LEASE, "")
    return Lease.decode(text) if text else None


class LeaseHeld(FailedPrecondition):
    """Another process's lease is live: this one refuses to drive the relocation."""


class LeaseLost(FailedPrecondition):
    """This process's lease was taken over: it stops without another step."""


def describe(lease: Lease, now: float) -> str:
    return f"{lease.holder}, last renewed {lease.age(now):.0f} s ago"


class LeaseKeeper:
    """Takes, renews and releases the lease of one process, on whichever PV carries the journal."""

    def __init__(self, kube: KubeApi, clock: Clock, holder: Holder | None = None) -> None:
        self.kube = kube
        self.clock = clock
        self.holder = holder or Holder.mine()
        self.renewed_at = float("-inf")  # Clock.monotonic() of our last renewal, for the heartbeat

    def mine(self, pv: Obj) -> bool:
        lease = lease_of(pv)
        return lease is not None and lease.holder == self.holder

    def acquire(self, pv_name: str, what: str, take_over: bool = False) -> Obj:
        """Take the lease on PV ``pv_name`` and return the PV as written (its journal is the one to go on
        from). Refuses with :class:`LeaseHeld` while another holder's lease is live, unless ``take_over``."""
        for _ in range(MAX_CONFLICTS):
            pv = self.kube.get(Kind.PV, pv_name)
            lease, now = lease_of(pv), self.clock.time()
            if lease is not None and lease.holder != self.holder and lease.live(now) and not take_over:
                left = lease.ttl - lease.age(now)
                raise LeaseHeld(
                    f"{what} is being driven by {describe(lease, now)}: wait for it to finish; if that "
                    f"process is surely gone, its lease expires in {left:.0f} s (TTL {lease.ttl:.0f} s), "
                    "or pass --take-over to take it now"
                )
            try:
                return self._put(pv, self.stamp)
            except KubeConflict:
                continue  # someone updated the PV in between: read it again and decide again
        raise Unavailable(f"PV {pv_name} keeps changing under the lease; try again")

    def write(self, pv_name: str, change: Callable[[Obj], None], release: bool = False) -> Obj:
        """Apply ``change`` to PV ``pv_name`` and renew the lease in the same update (``release``: drop it
        instead). Raises :class:`LeaseLost`, writing nothing, when the lease is no longer ours."""
        for _ in range(MAX_CONFLICTS):
            pv = self.kube.get(Kind.PV, pv_name)
            self.check(pv, pv_name)

            def changed(obj: Obj) -> None:
                change(obj)
                (self._released if release else self.stamp)(obj)

            try:
                return self._put(pv, changed)
            except KubeConflict:
                continue  # e.g. the PV controller wrote the status: read again, check the lease again
        raise Unavailable(f"PV {pv_name} keeps changing under the journal; nothing is lost: --resume")

    def check(self, pv: Obj, pv_name: str) -> None:
        if self.mine(pv):
            return
        lease, now = lease_of(pv), self.clock.time()
        by = f"by {describe(lease, now)}" if lease is not None else "(released by another process)"
        raise LeaseLost(
            f"this process no longer holds the lease on PV {pv_name}: it was taken over {by}; "
            "stopped without another step"
        )

    def release(self, pv_name: str) -> None:
        """Drop the lease if it is still ours (a stopped process lets the next one in at once)."""
        for _ in range(MAX_CONFLICTS):
            pv = self.kube.get(Kind.PV, pv_name)
            if not self.mine(pv):
                return
            try:
                self._put(pv, self._released)
                return
            except KubeConflict:
                continue

    def heartbeat_due(self) -> bool:
        return self.clock.monotonic() - self.renewed_at >= HEARTBEAT

    def _put(self, pv: Obj, change: Callable[[Obj], None]) -> Obj:
        change(pv)
        # pv carries the resourceVersion it was read with: a replace is refused (409) if it changed since.
        written = self.kube.replace(Kind.PV, pv)
        if self.mine(written):
            self.renewed_at = self.clock.monotonic()
        return written

    def stamp(self, pv: Obj) -> None:
        """Put a fresh lease of ours on ``pv`` (the caller writes it with its resourceVersion)."""
        lease = Lease(self.holder, self.clock.time()).encode()
        pv["metadata"]["annotations"] = {**(pv["metadata"].get("annotations") or {}), ANN_LEASE: lease}

    def _released(self, pv: Obj) -> None:
        annotations = dict(pv["metadata"].get("annotations") or {})
        annotations.pop(ANN_LEASE, None)
        pv["metadata"]["annotations"] = annotations
