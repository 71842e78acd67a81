"""The FakeCloud's fast snapshot restores, snapshot locks and volume initialization (a mixin).

Stateful like the rest of the fake: :attr:`fast_restores` maps a snapshot to the zones enabled,
:attr:`locks` a snapshot to its :class:`~provisioner.ports.cloud.SnapshotLock`, and a volume restored
from a snapshot reports ``initializing`` for its first ``init_polls`` reads of
:meth:`volume_initialized` unless fast snapshot restore was enabled for that snapshot in the volume's
zone (EC2 then creates it initialized). EC2's own checks are kept: a zone the region lacks fails
EnableFastSnapshotRestores for that zone, a lock needs exactly one of duration/expiry and a cool-off
only in compliance mode, and a locked snapshot cannot be deleted (see :meth:`check_unlocked`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from provisioner import errors
from provisioner.ports.cloud import SnapshotLock

if TYPE_CHECKING:
    from tests.fakes.cloud import FakeCloud


class FakeCloudExtras:
    def __init__(self) -> None:
        self.fast_restores: dict[str, set[str]] = {}
        self.locks: dict[str, SnapshotLock] = {}
        self.init_polls = 0  # reads of volume_initialized that answer False for a restored volume
        self._init_seen: dict[str, int] = {}
        self._extras_lock = threading.Lock()

    def _me(self) -> FakeCloud:
        return self  # type: ignore[return-value]

    def enable_fast_snapshot_restores(self, snapshot_id: str, zones: Sequence[str]) -> None:
        fake = self._me()
        fake._enter("enable_fast_snapshot_restores")
        if snapshot_id not in fake.snapshots:
            raise errors.NotFound(f"InvalidSnapshot.NotFound: snapshot {snapshot_id}")
        known = {z.name for z in fake.zones}
        for zone in zones:
            if zone not in known:
                raise errors.InvalidArgument(f"InvalidAvailabilityZone: {zone} for snapshot {snapshot_id}")
        with self._extras_lock:
            self.fast_restores.setdefault(snapshot_id, set()).update(zones)

    def fast_snapshot_restore_zones(self, snapshot_id: str) -> frozenset[str]:
        self._me()._enter("fast_snapshot_restore_zones")
        with self._extras_lock:
            return frozenset(self.fast_restores.get(snapshot_id, ()))

    def lock_snapshot(self, snapshot_id: str, lock: SnapshotLock) -> None:
        fake = self._me()
        fake._enter("lock_snapshot")
        if snapshot_id not in fake.snapshots:
            raise errors.NotFound(f"InvalidSnapshot.NotFound: snapshot {snapshot_id}")
        if (lock.duration_days is None) == (lock.expires_at is None):
            raise errors.InvalidArgument("InvalidParameterCombination: LockDuration or ExpirationDate")
        if lock.cool_off_hours is not None and lock.mode != "compliance":
            raise errors.InvalidArgument("InvalidParameterCombination: CoolOffPeriod needs compliance mode")
        with self._extras_lock:
            self.locks[snapshot_id] = lock

    def snapshot_lock_state(self, snapshot_id: str) -> str:
        self._me()._enter("snapshot_lock_state")
        with self._extras_lock:
            lock = self.locks.get(snapshot_id)
        if lock is None:
            return ""
        return "compliance-cooloff" if lock.mode == "compliance" and lock.cool_off_hours else lock.mode

    def check_unlocked(self, snapshot_id: str) -> None:
        """DeleteSnapshot's check: a locked snapshot cannot be deleted."""
        with self._extras_lock:
            if snapshot_id in self.locks:
                raise errors.FailedPrecondition(f"IncorrectState: snapshot {snapshot_id} is locked")

    def volume_initialized(self, volume_id: str) -> bool:
        fake = self._me()
        fake._enter("volume_initialized")
        volume = fake._volume(volume_id).volume
        if not volume.snapshot_id:
            return True
        with self._extras_lock:
            if volume.zone in self.fast_restores.get(volume.snapshot_id, ()):
                return True
            seen = self._init_seen[volume_id] = self._init_seen.get(volume_id, 0) + 1
        return seen > self.init_polls
