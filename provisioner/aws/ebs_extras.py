"""The EC2 calls behind aws-ebs-csi-driver's newer class keys: fast snapshot restores, snapshot locks
and volume initialization status.

A mixin of :class:`provisioner.aws.ec2.Ec2Cloud` (which keeps the volume, instance and snapshot
calls): one boto3 call per method inside :func:`~provisioner.aws.errors.translated`, so only domain
errors leave. EnableFastSnapshotRestores reports failures per zone in its answer rather than as an
error; the first one is raised, classified by the same table as every other EC2 error. Endpoints
without these actions (moto run in process raises NotImplementedError) answer Unimplemented. It must
not decide policy (deleting a snapshot whose post-steps failed belongs to the controller core).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from provisioner.aws.errors import classify, translated
from provisioner.errors import Unimplemented
from provisioner.ports.cloud import SnapshotLock

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

# DescribeFastSnapshotRestores states that mean "on, or on its way".
_FSR_ON = frozenset({"enabling", "optimizing", "enabled"})
_UNLOCKED = frozenset({"", "expired"})


@contextmanager
def _offered(action: str) -> Iterator[None]:
    try:
        yield
    except NotImplementedError as e:  # moto in process, for actions it lacks
        raise Unimplemented(f"this EC2 endpoint does not offer {action} ({e})") from e


class EbsExtras:
    """Fast snapshot restores, snapshot locks and volume initialization over ``self._ec2``."""

    _ec2: EC2Client

    def enable_fast_snapshot_restores(self, snapshot_id: str, zones: Sequence[str]) -> None:
        with _offered("EnableFastSnapshotRestores"), translated(f"snapshot {snapshot_id}"):
            answer = self._ec2.enable_fast_snapshot_restores(
                AvailabilityZones=list(zones), SourceSnapshotIds=[snapshot_id]
            )
        for item in answer.get("Unsuccessful", []):
            for failure in item.get("FastSnapshotRestoreStateErrors", []):
                error = failure.get("Error", {})
                code = str(error.get("Code", ""))
                raise classify(code)(
                    f"EnableFastSnapshotRestores of {snapshot_id} in {failure.get('AvailabilityZone', '?')}: "
                    f"EC2 {code or 'error'}: {error.get('Message') or 'no message'}"
                )

    def fast_snapshot_restore_zones(self, snapshot_id: str) -> frozenset[str]:
        zones: set[str] = set()
        request: dict[str, Any] = {"Filters": [{"Name": "snapshot-id", "Values": [snapshot_id]}]}
        while True:
            with _offered("DescribeFastSnapshotRestores"), translated(f"snapshot {snapshot_id}"):
                answer = self._ec2.describe_fast_snapshot_restores(**request)
            zones.update(
                str(r.get("AvailabilityZone", ""))
                for r in answer.get("FastSnapshotRestores", [])
                if r.get("SnapshotId") == snapshot_id and r.get("State") in _FSR_ON
            )
            token = answer.get("NextToken")
            if not token:
                return frozenset(zones)
            request["NextToken"] = token

    def lock_snapshot(self, snapshot_id: str, lock: SnapshotLock) -> None:
        request: dict[str, Any] = {"SnapshotId": snapshot_id, "LockMode": lock.mode}
        if lock.duration_days is not None:
            request["LockDuration"] = lock.duration_days
        if lock.expires_at is not None:
            request["ExpirationDate"] = datetime.datetime.fromtimestamp(lock.expires_at, datetime.UTC)
        if lock.cool_off_hours is not None:
            request["CoolOffPeriod"] = lock.cool_off_hours
        with _offered("LockSnapshot"), translated(f"snapshot {snapshot_id}"):
            self._ec2.lock_snapshot(**request)

    def snapshot_lock_state(self, snapshot_id: str) -> str:
        with _offered("DescribeLockedSnapshots"), translated(f"snapshot {snapshot_id}"):
            answer = self._ec2.describe_locked_snapshots(SnapshotIds=[snapshot_id])
        for item in answer.get("Snapshots", []):
            if item.get("SnapshotId") == snapshot_id:
                state = str(item.get("LockState", ""))
                return "" if state in _UNLOCKED else state
        return ""

    def volume_initialized(self, volume_id: str) -> bool:
        with _offered("DescribeVolumeStatus"), translated(f"volume {volume_id}"):
            answer = self._ec2.describe_volume_status(VolumeIds=[volume_id])
        for item in answer.get("VolumeStatuses", []):
            if item.get("VolumeId") != volume_id:
                continue
            details = item.get("VolumeStatus", {}).get("Details", [])
            return not any(
                d.get("Name") == "initialization-state" and d.get("Status") == "initializing" for d in details
            )
        return True  # EC2 lists no status for a volume it has nothing to report on
