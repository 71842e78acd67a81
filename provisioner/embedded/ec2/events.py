"""What happened in the simulated EC2 that the embedded cloud's hooks act on (a volume attached, a
snapshot taken…): values the graft (:mod:`.state`) records during a request and the app hands to the
hooks after a successful answer. Values only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attached:
    volume_id: str
    instance_id: str
    device: str
    size_gib: int


@dataclass(frozen=True)
class Detached:
    volume_id: str
    instance_id: str


@dataclass(frozen=True)
class Deleted:
    volume_id: str


@dataclass(frozen=True)
class Resized:
    volume_id: str
    size_gib: int


@dataclass(frozen=True)
class SnapshotCreated:
    snapshot_id: str
    volume_id: str


@dataclass(frozen=True)
class VolumeRestored:
    volume_id: str
    snapshot_id: str
    size_gib: int


@dataclass(frozen=True)
class SnapshotDeleted:
    snapshot_id: str


HookEvent = Attached | Detached | Deleted | Resized | SnapshotCreated | VolumeRestored | SnapshotDeleted
