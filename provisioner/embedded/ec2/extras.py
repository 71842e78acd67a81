"""EC2 actions moto lacks that aws-ebs-csi-driver's classes need: fast snapshot restores, snapshot locks
and volume initialization status, answered in EC2's own XML so boto3 parses them as from EC2.

* EnableFastSnapshotRestores / DisableFastSnapshotRestores / DescribeFastSnapshotRestores: per
  (snapshot, zone) ``enabling`` → ``optimizing`` → ``enabled`` on the simulator's clock
  (:attr:`fsr_enabling`, :attr:`fsr_optimizing` seconds). A zone the simulator does not offer or a
  snapshot it does not know fails that zone in ``Unsuccessful``, as EC2 reports per-zone failures.
* LockSnapshot / DescribeLockedSnapshots: governance or compliance, a duration (1–36500 days) or an
  expiry in the future, a cool-off (1–72 hours) in compliance mode only; the state follows the clock
  (``compliance-cooloff`` → ``compliance`` → ``expired``). DeleteSnapshot of a locked snapshot is
  refused (``IncorrectState``; EC2 documents no code of its own for it).
* DescribeVolumeStatus: a volume restored from a snapshot is ``initializing`` until
  ``size × 1024 / VolumeInitializationRate`` seconds after its creation, or :attr:`default_init`
  seconds without a rate; a volume created while fast snapshot restore was ``enabled`` for its
  snapshot in its zone is initialized at once, as is a blank volume.
* :meth:`refuse_next` makes the next call of an action fail with a given EC2 code (per zone, for
  EnableFastSnapshotRestores), for tests of what the driver does when EC2 says no.

The simulator calls :meth:`answer` for these actions instead of moto, :meth:`refusal` before moto for
DeleteSnapshot, and :meth:`observe` after moto answered (to learn volume creation times and rates),
always under its lock. This module must not throttle, sleep or open sockets.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from provisioner.embedded.ec2 import wire
from provisioner.ports.clock import Clock

ACTIONS = frozenset(
    {
        "EnableFastSnapshotRestores",
        "DisableFastSnapshotRestores",
        "DescribeFastSnapshotRestores",
        "LockSnapshot",
        "DescribeLockedSnapshots",
        "DescribeVolumeStatus",
    }
)
# Actions moto answers but this module may refuse first (:meth:`Extras.refusal`) or learns from after
# (:meth:`Extras.observe`); the simulator consults it for these and ACTIONS only, so every other call
# takes its lock once (for moto), not three times.
REFUSED = frozenset({"DeleteSnapshot"})
OBSERVED = frozenset({"CreateVolume", "DeleteSnapshot"})
_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
_VOLUME_ID = re.compile(rb"<volumeId>(vol-[0-9a-f]+)</volumeId>")
Answer = tuple[str, list[tuple[str, str]], bytes]


@dataclass
class _Restore:
    enabling_at: float  # epoch seconds on the simulator's clock
    disabled: bool = False


@dataclass
class _Lock:
    mode: str
    created: float
    expires: float
    cool_off_until: float | None


@dataclass
class _Created:
    at: float
    snapshot_id: str
    zone: str
    size_gib: int
    rate: int | None


def _items(params: Mapping[str, str], name: str) -> list[str]:
    return [v for k, v in sorted(params.items(), key=lambda kv: kv[0]) if re.fullmatch(rf"{name}\.\d+", k)]


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _error(code: str, message: str) -> Answer:
    return "400 Bad Request", list(wire.XML_HEADERS), wire.error_body(code, message)


def _ok(action: str, body: str) -> Answer:
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{_NS}">'
        f"<requestId>{uuid.uuid4()}</requestId>{body}</{action}Response>"
    )
    return "200 OK", list(wire.XML_HEADERS), xml.encode()


class Extras:
    """The state of these actions for one simulated account (its FSR, locks, volume creations)."""

    def __init__(self, clock: Clock, zones: tuple[str, ...], snapshot_delay: float) -> None:
        self.clock = clock
        self.zones = zones
        self.fsr_enabling = snapshot_delay  # enabling → optimizing
        self.fsr_optimizing = snapshot_delay  # optimizing → enabled
        self.default_init = snapshot_delay  # initialization of a restored volume without a rate
        self._restores: dict[tuple[str, str], _Restore] = {}
        self._locks: dict[str, _Lock] = {}
        self._created: dict[str, _Created] = {}
        self._refusals: dict[str, tuple[str, str]] = {}

    def refuse_next(self, action: str, code: str, message: str = "refused by the simulator") -> None:
        self._refusals[action] = (code, message)

    # --- the request path -------------------------------------------------------------------------

    def refusal(self, action: str, params: Mapping[str, str]) -> Answer | None:
        """An answer that replaces moto's for a call moto would accept (DeleteSnapshot of a locked one)."""
        if action == "DeleteSnapshot":
            snapshot_id = params.get("SnapshotId", "")
            if self._lock_state(snapshot_id) not in ("", "expired"):
                return _error(
                    "IncorrectState", f"The snapshot '{snapshot_id}' is locked and cannot be deleted."
                )
        return None

    def observe(self, action: str, params: Mapping[str, str], out: bytes, backend: Any) -> None:
        """Learn from an answered call: when a volume was created, from what, at which rate."""
        if action == "CreateVolume":
            match = _VOLUME_ID.search(out)
            if match is None:
                return
            volume_id = match.group(1).decode()
            if volume_id in self._created:
                return  # a ClientToken replay: the volume is the first call's
            rate = params.get("VolumeInitializationRate")
            self._created[volume_id] = _Created(
                self.clock.time(),
                params.get("SnapshotId", ""),
                params.get("AvailabilityZone", ""),
                int(params.get("Size", "0") or 0),
                int(rate) if rate and rate.isdigit() else None,
            )
        elif action == "DeleteSnapshot":
            snapshot_id = params.get("SnapshotId", "")
            self._locks.pop(snapshot_id, None)
            for key in [k for k in self._restores if k[0] == snapshot_id]:
                del self._restores[key]

    def answer(self, action: str, params: Mapping[str, str], backend: Any) -> Answer:
        refused = self._refusals.pop(action, None)
        if refused is not None and action != "EnableFastSnapshotRestores":
            return _error(*refused)
        if action == "EnableFastSnapshotRestores":
            return self._enable(params, backend, refused)
        if action == "DisableFastSnapshotRestores":
            return self._disable(params)
        if action == "DescribeFastSnapshotRestores":
            return self._describe_restores(params, backend)
        if action == "LockSnapshot":
            return self._lock(params, backend)
        if action == "DescribeLockedSnapshots":
            return self._describe_locks(params, backend)
        return self._volume_status(params, backend)

    # --- fast snapshot restores ------------------------------------------------------------------

    def _fsr_state(self, restore: _Restore) -> str:
        if restore.disabled:
            return "disabled"
        elapsed = self.clock.time() - restore.enabling_at
        if elapsed < self.fsr_enabling:
            return "enabling"
        return "optimizing" if elapsed < self.fsr_enabling + self.fsr_optimizing else "enabled"

    def _fsr_item(self, snapshot_id: str, zone: str, state: str, owner: str) -> str:
        return (
            f"<item><snapshotId>{snapshot_id}</snapshotId><availabilityZone>{zone}</availabilityZone>"
            f"<state>{state}</state><ownerId>{owner}</ownerId></item>"
        )

    def _enable(self, params: Mapping[str, str], backend: Any, refused: tuple[str, str] | None) -> Answer:
        zones, snapshots = _items(params, "AvailabilityZone"), _items(params, "SourceSnapshotId")
        if not zones or not snapshots:
            return _error("MissingParameter", "AvailabilityZones and SourceSnapshotIds are required")
        good, bad = [], []
        for snapshot_id in snapshots:
            errors = []
            for zone in zones:
                if refused is not None:
                    errors.append((zone, *refused))
                elif snapshot_id not in backend.snapshots:
                    errors.append(
                        (zone, "InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
                    )
                elif zone not in self.zones:
                    errors.append((zone, "InvalidAvailabilityZone", f"The zone '{zone}' is not available."))
                else:
                    restore = self._restores.get((snapshot_id, zone))
                    if restore is None or restore.disabled:
                        restore = self._restores[(snapshot_id, zone)] = _Restore(self.clock.time())
                    good.append(
                        self._fsr_item(snapshot_id, zone, self._fsr_state(restore), backend.account_id)
                    )
            if errors:
                failures = "".join(
                    f"<item><availabilityZone>{z}</availabilityZone><error><code>{c}</code>"
                    f"<message>{escape(m)}</message></error></item>"
                    for z, c, m in errors
                )
                bad.append(
                    f"<item><snapshotId>{snapshot_id}</snapshotId>"
                    f"<fastSnapshotRestoreStateErrorSet>{failures}</fastSnapshotRestoreStateErrorSet></item>"
                )
        return _ok(
            "EnableFastSnapshotRestores",
            f"<successful>{''.join(good)}</successful><unsuccessful>{''.join(bad)}</unsuccessful>",
        )

    def _disable(self, params: Mapping[str, str]) -> Answer:
        for snapshot_id in _items(params, "SourceSnapshotId"):
            for zone in _items(params, "AvailabilityZone"):
                restore = self._restores.get((snapshot_id, zone))
                if restore is not None:
                    restore.disabled = True
        return _ok("DisableFastSnapshotRestores", "<successful/><unsuccessful/>")

    def _describe_restores(self, params: Mapping[str, str], backend: Any) -> Answer:
        wanted: dict[str, set[str]] = {}
        for key, name in params.items():
            match = re.fullmatch(r"Filter\.(\d+)\.Name", key)
            if match:
                values = _items(params, f"Filter\\.{match.group(1)}\\.Value")
                wanted.setdefault(name, set()).update(values)
        items = []
        for (snapshot_id, zone), restore in sorted(self._restores.items()):
            state = self._fsr_state(restore)
            row = {"snapshot-id": snapshot_id, "availability-zone": zone, "state": state}
            if all(row.get(name) in values for name, values in wanted.items()):
                items.append(self._fsr_item(snapshot_id, zone, state, backend.account_id))
        return _ok(
            "DescribeFastSnapshotRestores",
            f"<fastSnapshotRestoreSet>{''.join(items)}</fastSnapshotRestoreSet>",
        )

    # --- snapshot locks --------------------------------------------------------------------------

    def _lock_state(self, snapshot_id: str) -> str:
        lock = self._locks.get(snapshot_id)
        if lock is None:
            return ""
        now = self.clock.time()
        if now >= lock.expires:
            return "expired"
        if lock.mode == "compliance" and lock.cool_off_until is not None and now < lock.cool_off_until:
            return "compliance-cooloff"
        return lock.mode

    def _lock(self, params: Mapping[str, str], backend: Any) -> Answer:
        snapshot_id, mode = params.get("SnapshotId", ""), params.get("LockMode", "")
        if snapshot_id not in backend.snapshots:
            return _error("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
        if mode not in ("governance", "compliance"):
            return _error("InvalidParameterValue", f"Invalid LockMode '{mode}'")
        duration, expiry, cool_off = (
            params.get("LockDuration"),
            params.get("ExpirationDate"),
            params.get("CoolOffPeriod"),
        )
        if (duration is None) == (expiry is None):
            return _error("InvalidParameterCombination", "Specify either LockDuration or ExpirationDate.")
        if cool_off is not None and (mode != "compliance" or not 1 <= int(cool_off) <= 72):
            return _error(
                "InvalidParameterCombination", "CoolOffPeriod is 1-72 hours, in compliance mode only."
            )
        now = self.clock.time()
        if duration is not None:
            if not 1 <= int(duration) <= 36_500:
                return _error("InvalidParameterValue", f"LockDuration {duration} is outside 1-36500 days.")
            expires = now + int(duration) * 86_400.0
        else:
            expires = datetime.datetime.fromisoformat(str(expiry).replace("Z", "+00:00")).timestamp()
            if expires <= now:
                return _error("InvalidParameterValue", "ExpirationDate must be in the future.")
        cool_until = now + int(cool_off) * 3600.0 if cool_off is not None else None
        self._locks[snapshot_id] = _Lock(mode, now, expires, cool_until)
        body = (
            f"<snapshotId>{snapshot_id}</snapshotId><lockState>{self._lock_state(snapshot_id)}</lockState>"
            f"<lockCreatedOn>{_iso(now)}</lockCreatedOn><lockExpiresOn>{_iso(expires)}</lockExpiresOn>"
        )
        return _ok("LockSnapshot", body)

    def _describe_locks(self, params: Mapping[str, str], backend: Any) -> Answer:
        ids = _items(params, "SnapshotId") or sorted(self._locks)
        items = []
        for snapshot_id in ids:
            lock = self._locks.get(snapshot_id)
            if lock is None:
                continue
            items.append(
                f"<item><ownerId>{backend.account_id}</ownerId><snapshotId>{snapshot_id}</snapshotId>"
                f"<lockState>{self._lock_state(snapshot_id)}</lockState>"
                f"<lockCreatedOn>{_iso(lock.created)}</lockCreatedOn>"
                f"<lockExpiresOn>{_iso(lock.expires)}</lockExpiresOn></item>"
            )
        return _ok("DescribeLockedSnapshots", f"<snapshotSet>{''.join(items)}</snapshotSet>")

    # --- volume initialization -------------------------------------------------------------------

    def initializing(self, volume_id: str) -> tuple[bool, int, str]:
        """(still initializing, progress %, initialization type) of a volume the simulator created."""
        created = self._created.get(volume_id)
        if created is None or not created.snapshot_id:
            return False, 100, "default"
        restore = self._restores.get((created.snapshot_id, created.zone))
        if restore is not None and not restore.disabled:
            enabled_at = restore.enabling_at + self.fsr_enabling + self.fsr_optimizing
            if enabled_at <= created.at:
                return False, 100, "default"  # EC2: created from an enabled FSR, fully initialized
        if created.rate:
            span, kind = created.size_gib * 1024.0 / created.rate, "provisioned-rate"
        else:
            span, kind = self.default_init, "default"
        elapsed = self.clock.time() - created.at
        if span <= 0 or elapsed >= span:
            return False, 100, kind
        return True, int(100 * elapsed / span), kind

    def _volume_status(self, params: Mapping[str, str], backend: Any) -> Answer:
        ids = _items(params, "VolumeId")
        for volume_id in ids:
            if volume_id not in backend.volumes:
                return _error("InvalidVolume.NotFound", f"The volume '{volume_id}' does not exist.")
        items = []
        for volume_id in ids or sorted(backend.volumes):
            volume = backend.volumes[volume_id]
            busy, progress, kind = self.initializing(volume_id)
            state = "initializing" if busy else "completed"
            details = (
                "<details><item><name>io-enabled</name><status>passed</status></item>"
                f"<item><name>initialization-state</name><status>{state}</status></item></details>"
            )
            init = (
                f"<initializationStatusDetails><initializationType>{kind}</initializationType>"
                f"<progress>{progress}</progress></initializationStatusDetails>"
            )
            zone = volume.zone.name if volume.zone is not None else ""
            items.append(
                f"<item><volumeId>{volume_id}</volumeId><availabilityZone>{zone}</availabilityZone>"
                f"<volumeStatus><status>ok</status>{details}</volumeStatus>{init}</item>"
            )
        return _ok("DescribeVolumeStatus", f"<volumeStatusSet>{''.join(items)}</volumeStatusSet>")
