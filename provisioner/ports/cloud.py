"""The EC2 port: what the controller core needs from the cloud, and the errors each call raises.

Implemented by :class:`provisioner.aws.ec2.Ec2Cloud` (boto3) and by the stateful ``FakeCloud`` in the
tests. Calls do not wait for state changes; the controller core polls with its injected clock.
Every method may also raise :class:`~provisioner.errors.Unavailable` (throttled or 5xx after
retries) and :class:`~provisioner.errors.PermissionDenied`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from provisioner.model import Instance, Page, Snapshot, Volume, VolumeSpec, Zone


@dataclass(frozen=True)
class VolumeModification:
    """EC2 ``VolumeModification``: the state of the latest ModifyVolume of a volume."""

    volume_id: str
    state: str  # modifying | optimizing | completed | failed
    target_size_gib: int
    target_type: str = ""
    target_iops: int | None = None
    target_throughput: int | None = None
    start_time: float = 0.0  # epoch seconds


@dataclass(frozen=True)
class SnapshotLock:
    """EC2 ``LockSnapshot`` settings: a mode and exactly one of a duration or an expiry."""

    mode: str  # governance | compliance
    duration_days: int | None = None
    expires_at: float | None = None  # epoch seconds
    cool_off_hours: int | None = None  # compliance only


class Cloud(Protocol):
    region: str

    def check_access(self) -> None:
        """Prove credentials and reachability (a DryRun call).

        Raises FailedPrecondition (with EC2's reason) when the cloud cannot be used.
        """
        ...

    def availability_zones(self) -> Sequence[Zone]:
        """The region's zones (cached after the first call)."""
        ...

    def create_volume(self, spec: VolumeSpec, zone: str, client_token: str) -> Volume:
        """Start creating a volume in ``zone``; returns it as EC2 reports it (usually ``creating``), its
        tags ``spec.tags`` and ``CSIVolumeName=spec.name``. A ``client_token`` seen before with the same
        spec answers that request's volume (whatever the zone, deleted or not).

        Raises AlreadyExists (IdempotentParameterMismatch), InvalidArgument (bad parameters or zone),
        ResourceExhausted (VolumeLimitExceeded / insufficient capacity), NotFound (snapshot missing).
        """
        ...

    def get_volume(self, volume_id: str) -> Volume:
        """Raises NotFound for an unknown or malformed id."""
        ...

    def describe_volumes(self, volume_ids: Iterable[str]) -> Mapping[str, Volume]:
        """The volumes among ``volume_ids`` that exist, by id; unknown or malformed ids are just absent
        (one call for many volumes, for cluster-wide checks)."""
        ...

    def find_volume_by_name(self, name: str) -> Volume | None:
        """The non-deleted volume tagged ``CSIVolumeName=name``, if any (oldest first if several)."""
        ...

    def delete_volume(self, volume_id: str) -> None:
        """Raises NotFound (unknown or malformed id), FailedPrecondition (VolumeInUse)."""
        ...

    def list_volumes(self, tag_filters: Mapping[str, str], max_results: int, next_token: str) -> Page[Volume]:
        """Volumes carrying every tag in ``tag_filters``. Raises InvalidArgument for a bad token."""
        ...

    def get_instance(self, instance_id: str) -> Instance:
        """Raises NotFound for an unknown or malformed instance id."""
        ...

    def describe_instances(self, instance_ids: Iterable[str]) -> Mapping[str, Instance]:
        """The instances among ``instance_ids`` that exist, by id; unknown or malformed ids are absent."""
        ...

    def attach_volume(self, volume_id: str, instance_id: str, device: str) -> None:
        """Start an attachment. Raises NotFound, FailedPrecondition (other zone, in use, device taken),
        ResourceExhausted (AttachmentLimitExceeded)."""
        ...

    def detach_volume(self, volume_id: str, instance_id: str) -> None:
        """Start a detachment. Raises NotFound; detaching something not attached raises NotFound too."""
        ...

    def copy_volume(self, source_volume_id: str, spec: VolumeSpec, client_token: str) -> Volume:
        """EC2 CopyVolumes: a point-in-time copy of ``source_volume_id`` in its zone (usually ``creating``).

        Raises Unimplemented when the endpoint does not offer CopyVolumes (the caller then falls back
        to snapshot-then-restore), NotFound (source), AlreadyExists (token reused with other
        parameters), InvalidArgument, ResourceExhausted.
        """
        ...

    # Snapshots and modification (used by the snapshot/expand/modify RPCs).

    def create_snapshot(
        self, volume_id: str, tags: Mapping[str, str], description: str, outpost_arn: str = ""
    ) -> Snapshot:
        """Raises NotFound (source volume), ResourceExhausted (SnapshotLimitExceeded); ``outpost_arn``
        keeps the snapshot on that Outpost."""
        ...

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        """Raises NotFound for an unknown or malformed id."""
        ...

    def find_snapshot_by_name(self, name: str) -> Snapshot | None:
        """The snapshot tagged ``CSIVolumeSnapshotName=name``, if any."""
        ...

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Raises NotFound (unknown/malformed), FailedPrecondition (in use)."""
        ...

    def list_snapshots(
        self,
        tag_filters: Mapping[str, str],
        source_volume_id: str,
        max_results: int,
        next_token: str,
    ) -> Page[Snapshot]:
        """This driver's snapshots (``tag_filters``), optionally of one source volume."""
        ...

    def modify_volume(
        self,
        volume_id: str,
        size_gib: int | None = None,
        volume_type: str | None = None,
        iops: int | None = None,
        throughput: int | None = None,
    ) -> VolumeModification:
        """Raises NotFound, ModificationRateLimited (IncorrectModificationState / rate), InvalidArgument."""
        ...

    def get_volume_modification(self, volume_id: str) -> VolumeModification | None:
        """The latest modification of the volume, or None if it was never modified."""
        ...

    def create_tags(self, resource_id: str, tags: Mapping[str, str]) -> None: ...

    def delete_tags(self, resource_id: str, keys: Sequence[str]) -> None: ...

    # Fast snapshot restores, snapshot locks, volume initialization (VolumeSnapshotClass and
    # StorageClass keys of aws-ebs-csi-driver).

    def enable_fast_snapshot_restores(self, snapshot_id: str, zones: Sequence[str]) -> None:
        """EnableFastSnapshotRestores in every one of ``zones``. Raises the first zone's failure as EC2
        classifies it (InvalidArgument, ResourceExhausted…), NotFound for an unknown snapshot."""
        ...

    def fast_snapshot_restore_zones(self, snapshot_id: str) -> frozenset[str]:
        """The zones where fast snapshot restore of the snapshot is enabling, optimizing or enabled."""
        ...

    def lock_snapshot(self, snapshot_id: str, lock: SnapshotLock) -> None:
        """LockSnapshot. Raises InvalidArgument (EC2 refuses the settings), NotFound."""
        ...

    def snapshot_lock_state(self, snapshot_id: str) -> str:
        """EC2's lock state (governance, compliance, compliance-cooloff); "" when not locked or expired."""
        ...

    def volume_initialized(self, volume_id: str) -> bool:
        """False while DescribeVolumeStatus reports the volume's initialization-state ``initializing``
        (a volume restored from a snapshot still loading its blocks). Raises NotFound."""
        ...
