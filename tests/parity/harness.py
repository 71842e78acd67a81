"""Two worlds for the parity table: the EC2 simulator (boto3 → Ec2Cloud → moto plus the simulator's
extras) and the stateful FakeCloud, each behind the same small API.

What a row asserts is always what EC2 was asked and what EC2 then holds, never the driver's own echo:

* ``last(action)``: the parameters of the latest call of an EC2 action, in EC2's own names. Against
  the simulator they are the Query parameters botocore put on the wire (recorded by a ``before-call``
  hook); against the FakeCloud, the values its port methods received, spelt with the same names.
* ``tags``, ``fast_restore_zones``, ``lock_state``, ``initializing``, ``snapshot_exists``: the state,
  read back with separate EC2 calls (a second boto3 client) or from the FakeCloud's tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.model import GIB, ContentSource, Snapshot, TopologyRequirement
from provisioner.ports.clock import Deadline
from provisioner.ports.cloud import Cloud
from provisioner.ports.csi import CreatedVolume
from tests.controller.helpers import MOUNT_RWO, zones
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

ZONE = "us-east-1a"
DRIVER = DriverConfig(driver_name="ebs.csi.aws.com")
Params = dict[str, str]

# FakeCloud method → the EC2 action it stands for.
_FAKE_ACTIONS = {
    "create_volume": "CreateVolume",
    "create_snapshot": "CreateSnapshot",
    "delete_snapshot": "DeleteSnapshot",
    "modify_volume": "ModifyVolume",
    "create_tags": "CreateTags",
    "delete_tags": "DeleteTags",
    "enable_fast_snapshot_restores": "EnableFastSnapshotRestores",
    "lock_snapshot": "LockSnapshot",
    "volume_initialized": "DescribeVolumeStatus",
}


class Harness:
    """The shared scenario steps; subclasses provide the cloud and the read-back."""

    backend = ""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.driver = DRIVER

    # --- provided by each world ---------------------------------------------------------------

    @property
    def cloud(self) -> Cloud:
        raise NotImplementedError

    def last(self, action: str) -> Params:
        raise NotImplementedError

    def count(self, action: str) -> int:
        raise NotImplementedError

    def tags(self, resource_id: str) -> dict[str, str]:
        raise NotImplementedError

    def fast_restore_zones(self, snapshot_id: str) -> set[str]:
        raise NotImplementedError

    def lock_state(self, snapshot_id: str) -> str:
        raise NotImplementedError

    def snapshot_exists(self, snapshot_id: str) -> bool:
        raise NotImplementedError

    def initializing(self, volume_id: str) -> bool:
        raise NotImplementedError

    def instance(self, zone: str = ZONE) -> str:
        raise NotImplementedError

    def refuse_next(self, action: str) -> None:
        """Make EC2 refuse the next call of ``action`` (InvalidParameterValue)."""
        raise NotImplementedError

    def slow_initialization(self) -> None:
        """Restored volumes stay initializing until :meth:`finish_initialization`."""

    def finish_initialization(self) -> None:
        raise NotImplementedError

    # --- scenario steps ---------------------------------------------------------------------------

    def core(self, driver: DriverConfig | None = None) -> ControllerCore:
        return ControllerCore(self.cloud, self.clock, driver or self.driver, ControllerConfig())

    def create(
        self,
        parameters: Mapping[str, str],
        mutable: Mapping[str, str] | None = None,
        name: str = "pvc-1",
        size_gib: int = 10,
        source: ContentSource | None = None,
        driver: DriverConfig | None = None,
        fs_type: str = "ext4",
    ) -> CreatedVolume:
        from provisioner.model import CapacityRange, VolumeCapability

        capability = VolumeCapability(MOUNT_RWO.access_type, MOUNT_RWO.access_mode, fs_type)
        return self.core(driver).create_volume(
            name,
            CapacityRange(size_gib * GIB),
            (capability,),
            parameters,
            mutable or {},
            TopologyRequirement(requisite=zones(ZONE), preferred=zones(ZONE)),
            source,
            None,
        )

    def snapshot(
        self,
        volume_id: str,
        parameters: Mapping[str, str],
        name: str = "snapcontent-1",
        driver: DriverConfig | None = None,
    ) -> Snapshot:
        return self.core(driver).create_snapshot(name, volume_id, parameters)

    def restored(self, parameters: Mapping[str, str], size_gib: int = 10) -> CreatedVolume:
        """A volume restored from a fresh snapshot of a fresh volume, with ``parameters``."""
        source = self.create({}, name="pvc-source", size_gib=size_gib)
        snap = self.snapshot(source.volume_id, {}, name="snapcontent-source")
        self.clock.advance(60)  # the snapshot completes
        return self.create(
            parameters, name="pvc-restored", size_gib=size_gib, source=ContentSource(snap.snapshot_id)
        )

    def modify(self, volume_id: str, mutable: Mapping[str, str]) -> None:
        self.core().modify_volume(volume_id, mutable, Deadline(self.clock, 600))

    def expand(self, volume_id: str, size_gib: int) -> None:
        from provisioner.model import CapacityRange

        self.core().expand_volume(
            volume_id, CapacityRange(size_gib * GIB), MOUNT_RWO, Deadline(self.clock, 600)
        )

    def publish(
        self, volume_id: str, node_id: str, context: Mapping[str, str], seconds: float
    ) -> dict[str, str]:
        core = self.core()
        return core.publish(volume_id, node_id, MOUNT_RWO, False, context, Deadline(self.clock, seconds))


def _flatten_tags(params: Mapping[str, str], prefix: str) -> dict[str, str]:
    keys = {m.group(1): v for k, v in params.items() if (m := re.fullmatch(rf"{prefix}\.(\d+)\.Key", k))}
    return {key: params.get(f"{prefix}.{n}.Value", "") for n, key in keys.items()}


class SimHarness(Harness):
    backend = "simulator"

    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulator(SimConfig(delays=Delays.instant(), throttling=False), clock=self.clock)
        client = self.sim.client()
        self.requests: list[tuple[str, Params]] = []
        client.meta.events.register("before-call.ec2", self._record)
        self._cloud = Ec2Cloud(client, "us-east-1")
        self.reader: EC2Client = self.sim.client()

    def _record(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        body = params.get("body") or {}
        self.requests.append((str(model.name), {str(k): str(v) for k, v in dict(body).items()}))

    @property
    def cloud(self) -> Cloud:
        return self._cloud

    def last(self, action: str) -> Params:
        found = [p for a, p in self.requests if a == action]
        assert found, f"EC2 {action} was never called (calls: {sorted({a for a, _ in self.requests})})"
        params = dict(found[-1])
        tags = _flatten_tags(params, "TagSpecification.1.Tag") or _flatten_tags(params, "Tag")
        params.update({f"tag:{k}": v for k, v in tags.items()})
        return params

    def count(self, action: str) -> int:
        return sum(1 for a, _ in self.requests if a == action)

    def tags(self, resource_id: str) -> dict[str, str]:
        found = self.reader.describe_tags(Filters=[{"Name": "resource-id", "Values": [resource_id]}])
        return {t["Key"]: t.get("Value", "") for t in found["Tags"]}

    def fast_restore_zones(self, snapshot_id: str) -> set[str]:
        found = self.reader.describe_fast_snapshot_restores(
            Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}]
        )["FastSnapshotRestores"]
        return {r["AvailabilityZone"] for r in found if r["State"] in ("enabling", "optimizing", "enabled")}

    def lock_state(self, snapshot_id: str) -> str:
        found = self.reader.describe_locked_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
        return str(found[0]["LockState"]) if found else ""

    def snapshot_exists(self, snapshot_id: str) -> bool:
        try:
            self.reader.describe_snapshots(SnapshotIds=[snapshot_id])
        except ClientError:
            return False
        return True

    def initializing(self, volume_id: str) -> bool:
        status = self.reader.describe_volume_status(VolumeIds=[volume_id])["VolumeStatuses"][0]
        details = {d["Name"]: d["Status"] for d in status["VolumeStatus"]["Details"]}
        return details["initialization-state"] == "initializing"

    def instance(self, zone: str = ZONE) -> str:
        return self.sim.create_instance(zone)

    def refuse_next(self, action: str) -> None:
        self.sim.extras.refuse_next(action, "InvalidParameterValue", f"{action} refused by the test")

    def finish_initialization(self) -> None:
        self.clock.advance(3600)  # the rate the rows use loads 10 GiB in about 100 s


class FakeHarness(Harness):
    backend = "fake cloud"

    def __init__(self) -> None:
        super().__init__()
        self.fake = FakeCloud(clock=self.clock)
        self.fake.init_polls = 0
        self._instances = 0

    @property
    def cloud(self) -> Cloud:
        return self.fake

    def last(self, action: str) -> Params:
        fake = self.fake
        if action == "CreateVolume":
            spec, zone, _ = fake.created_with[-1]
            params = {"AvailabilityZone": zone, "Size": str(spec.size_gib), "VolumeType": spec.volume_type}
            optional = {
                "Iops": spec.iops,
                "Throughput": spec.throughput,
                "KmsKeyId": spec.kms_key_id or None,
                "SnapshotId": spec.snapshot_id or None,
                "VolumeInitializationRate": spec.initialization_rate if spec.snapshot_id else None,
                "Encrypted": "true" if spec.encrypted or spec.kms_key_id else None,
            }
            params.update({k: str(v) for k, v in optional.items() if v is not None})
            params.update({f"tag:{k}": v for k, v in spec.tags.items()})
            return params
        if action == "CreateSnapshot":
            volume_id, tags, outpost = fake.snapshot_requests[-1]
            params = {"VolumeId": volume_id, **({"OutpostArn": outpost} if outpost else {})}
            return {**params, **{f"tag:{k}": v for k, v in tags.items()}}
        if action == "ModifyVolume":
            volume_id, changes = fake.modified[-1]
            names = {
                "size_gib": "Size",
                "volume_type": "VolumeType",
                "iops": "Iops",
                "throughput": "Throughput",
            }
            return {"VolumeId": volume_id, **{names[k]: str(v) for k, v in changes.items()}}
        if action == "LockSnapshot":
            snapshot_id, lock = next(reversed(fake.locks.items()))
            params = {"SnapshotId": snapshot_id, "LockMode": lock.mode}
            if lock.duration_days is not None:
                params["LockDuration"] = str(lock.duration_days)
            if lock.expires_at is not None:
                params["ExpirationDate"] = str(lock.expires_at)
            if lock.cool_off_hours is not None:
                params["CoolOffPeriod"] = str(lock.cool_off_hours)
            return params
        raise AssertionError(f"the fake cloud keeps no record of {action} parameters")

    def count(self, action: str) -> int:
        return sum(n for method, n in self.fake.calls.items() if _FAKE_ACTIONS.get(method) == action)

    def tags(self, resource_id: str) -> dict[str, str]:
        if resource_id in self.fake.volumes:
            return dict(self.fake.volumes[resource_id].volume.tags)
        return dict(self.fake.snapshots[resource_id].tags)

    def fast_restore_zones(self, snapshot_id: str) -> set[str]:
        return set(self.fake.fast_restores.get(snapshot_id, set()))

    def lock_state(self, snapshot_id: str) -> str:
        return self.fake.snapshot_lock_state(snapshot_id)

    def snapshot_exists(self, snapshot_id: str) -> bool:
        return snapshot_id in self.fake.snapshots

    def initializing(self, volume_id: str) -> bool:
        return not self.fake.volume_initialized(volume_id)

    def instance(self, zone: str = ZONE) -> str:
        self._instances += 1
        instance_id = f"i-{self._instances:017x}"
        self.fake.add_instance(instance_id, zone)
        return instance_id

    def refuse_next(self, action: str) -> None:
        from provisioner import errors

        method = next(m for m, a in _FAKE_ACTIONS.items() if a == action)
        self.fake.fail(method, errors.InvalidArgument(f"InvalidParameterValue: {action} refused by the test"))

    def slow_initialization(self) -> None:
        self.fake.init_polls = 10**6

    def finish_initialization(self) -> None:
        self.fake.init_polls = 0


def harness(backend: str) -> Harness:
    return SimHarness() if backend == "simulator" else FakeHarness()
