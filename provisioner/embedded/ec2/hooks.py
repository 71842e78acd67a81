"""Callbacks that let the embedded cloud give attached volumes real block devices.

The simulator reports what EC2 did (attached, detached, deleted, resized; snapshot taken, volume
restored from a snapshot, snapshot deleted) after it answered the call successfully;
:class:`BackerHooks` turns those into calls on the node engineer's
:class:`~provisioner.ports.node.BlockBacker` (loop devices, sparse files), so data written to a volume
reaches its snapshots and the volumes restored from them. This module must not create devices itself.
"""

from __future__ import annotations

import threading
from typing import Protocol

from provisioner.ports.node import BlockBacker

GIB = 1024**3


class VolumeHooks(Protocol):
    """Called outside the simulator's lock; an exception turns the answer into a 500 InternalError."""

    def attached(self, volume_id: str, instance_id: str, device: str, size_gib: int) -> None: ...

    def detached(self, volume_id: str, instance_id: str) -> None: ...

    def deleted(self, volume_id: str) -> None: ...

    def resized(self, volume_id: str, size_gib: int) -> None: ...


class SnapshotHooks(VolumeHooks, Protocol):
    """Optional: hooks that also carry data into snapshots. The simulator calls these methods only on
    a hooks object that has them, so a plain :class:`VolumeHooks` keeps working."""

    def snapshot_created(self, snapshot_id: str, volume_id: str) -> None:
        """CreateSnapshot answered: the snapshot holds the volume's data as it is NOW (EC2 snapshots
        are point in time at creation, however long they stay ``pending``)."""
        ...

    def volume_restored(self, volume_id: str, snapshot_id: str, size_gib: int) -> None:
        """CreateVolume with a SnapshotId answered: the new volume starts as the snapshot's data."""
        ...

    def snapshot_deleted(self, snapshot_id: str) -> None: ...


class BackerHooks:
    """Backs each attached volume with ``backer``: attach → ``back``, detach → ``detach`` (data kept),
    delete → ``release``, a size change of a volume backed before → ``resize``; CreateSnapshot →
    ``snapshot``, CreateVolume from a snapshot → ``restore`` (the volume is then backed),
    DeleteSnapshot → ``drop_snapshot``.

    :attr:`devices` maps the volumes attached now to the device path ``back`` returned."""

    def __init__(self, backer: BlockBacker) -> None:
        self._backer = backer
        self._lock = threading.Lock()
        self._backed: set[str] = set()  # volumes that have backing storage (attached at least once)
        self.devices: dict[str, str] = {}

    def attached(self, volume_id: str, instance_id: str, device: str, size_gib: int) -> None:
        path = self._backer.back(volume_id, size_gib * GIB)
        with self._lock:
            self._backed.add(volume_id)
            self.devices[volume_id] = path

    def detached(self, volume_id: str, instance_id: str) -> None:
        self._backer.detach(volume_id)
        with self._lock:
            self.devices.pop(volume_id, None)

    def deleted(self, volume_id: str) -> None:
        with self._lock:
            backed = volume_id in self._backed
            self._backed.discard(volume_id)
            self.devices.pop(volume_id, None)
        if backed:
            self._backer.release(volume_id)

    def resized(self, volume_id: str, size_gib: int) -> None:
        with self._lock:
            backed = volume_id in self._backed
        if backed:
            self._backer.resize(volume_id, size_gib * GIB)

    def snapshot_created(self, snapshot_id: str, volume_id: str) -> None:
        # A volume never attached is all zeros: the backer keeps no file for it or its snapshot.
        self._backer.snapshot(volume_id, snapshot_id)

    def volume_restored(self, volume_id: str, snapshot_id: str, size_gib: int) -> None:
        self._backer.restore(volume_id, snapshot_id, size_gib * GIB)
        with self._lock:
            self._backed.add(volume_id)

    def snapshot_deleted(self, snapshot_id: str) -> None:
        self._backer.drop_snapshot(snapshot_id)
