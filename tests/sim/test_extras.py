"""What the simulator adds over moto for aws-ebs-csi-driver's class keys: fast snapshot restores,
snapshot locks and volume initialization, on the simulator's clock, in EC2's wire format."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from provisioner.aws.rates import MUTATING
from provisioner.embedded.ec2 import Simulator
from provisioner.embedded.ec2.buckets import bucket_for
from tests.fakes.clock import FakeClock
from tests.sim.conftest import ZONE_A, ZONE_B, code_of

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


def _snapshot(ec2: EC2Client, clock: FakeClock, size: int = 10) -> str:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=size)["VolumeId"]
    clock.advance(5)
    return ec2.create_snapshot(VolumeId=volume_id)["SnapshotId"]


def _states(ec2: EC2Client, snapshot_id: str) -> dict[str, str]:
    found = ec2.describe_fast_snapshot_restores(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])
    return {r["AvailabilityZone"]: r["State"] for r in found["FastSnapshotRestores"]}


def _initialization(ec2: EC2Client, volume_id: str) -> str:
    status = ec2.describe_volume_status(VolumeIds=[volume_id])["VolumeStatuses"][0]
    return {d["Name"]: d["Status"] for d in status["VolumeStatus"]["Details"]}["initialization-state"]


def test_fast_snapshot_restore_enables_per_zone_over_time(
    ec2: EC2Client, sim: Simulator, clock: FakeClock
) -> None:
    snapshot_id = _snapshot(ec2, clock)
    answer = ec2.enable_fast_snapshot_restores(
        AvailabilityZones=[ZONE_A, "us-east-1z"], SourceSnapshotIds=[snapshot_id]
    )
    assert [(s["AvailabilityZone"], s["State"]) for s in answer["Successful"]] == [(ZONE_A, "enabling")]
    (failed,) = answer["Unsuccessful"]
    assert failed["FastSnapshotRestoreStateErrors"][0]["Error"]["Code"] == "InvalidAvailabilityZone"
    assert _states(ec2, snapshot_id) == {ZONE_A: "enabling"}
    clock.advance(sim.extras.fsr_enabling)
    assert _states(ec2, snapshot_id) == {ZONE_A: "optimizing"}
    clock.advance(sim.extras.fsr_optimizing)
    assert _states(ec2, snapshot_id) == {ZONE_A: "enabled"}
    ec2.disable_fast_snapshot_restores(AvailabilityZones=[ZONE_A], SourceSnapshotIds=[snapshot_id])
    assert _states(ec2, snapshot_id) == {ZONE_A: "disabled"}


def test_an_unknown_snapshot_fails_every_zone(ec2: EC2Client) -> None:
    answer = ec2.enable_fast_snapshot_restores(
        AvailabilityZones=[ZONE_A, ZONE_B], SourceSnapshotIds=["snap-0000000000000dead"]
    )
    errors = answer["Unsuccessful"][0]["FastSnapshotRestoreStateErrors"]
    assert {e["Error"]["Code"] for e in errors} == {"InvalidSnapshot.NotFound"} and len(errors) == 2


def test_locks_follow_the_clock_and_block_deletion(ec2: EC2Client, clock: FakeClock) -> None:
    snapshot_id = _snapshot(ec2, clock)
    locked = ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="compliance", LockDuration=1, CoolOffPeriod=1)
    assert locked["LockState"] == "compliance-cooloff"
    with pytest.raises(ClientError) as refused:
        ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert code_of(refused.value) == "IncorrectState"
    clock.advance(3600)
    assert (
        ec2.describe_locked_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["LockState"] == "compliance"
    )
    clock.advance(86_400)
    assert ec2.describe_locked_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["LockState"] == "expired"
    ec2.delete_snapshot(SnapshotId=snapshot_id)  # an expired lock no longer protects it
    assert ec2.describe_locked_snapshots(SnapshotIds=[snapshot_id])["Snapshots"] == []


@pytest.mark.parametrize(
    ("request_args", "code"),
    [
        ({"LockMode": "strict", "LockDuration": 1}, "InvalidParameterValue"),
        ({"LockMode": "governance"}, "InvalidParameterCombination"),
        ({"LockMode": "governance", "LockDuration": 1, "CoolOffPeriod": 2}, "InvalidParameterCombination"),
        ({"LockMode": "compliance", "LockDuration": 40_000}, "InvalidParameterValue"),
        (
            {"LockMode": "compliance", "ExpirationDate": datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)},
            "InvalidParameterValue",
        ),
    ],
)
def test_lock_rules_are_ec2s(
    ec2: EC2Client, clock: FakeClock, request_args: dict[str, object], code: str
) -> None:
    snapshot_id = _snapshot(ec2, clock)
    with pytest.raises(ClientError) as refused:
        ec2.lock_snapshot(SnapshotId=snapshot_id, **request_args)  # type: ignore[arg-type]
    assert code_of(refused.value) == code


def test_a_restored_volume_initializes_at_its_rate(ec2: EC2Client, clock: FakeClock) -> None:
    snapshot_id = _snapshot(ec2, clock, size=10)
    clock.advance(60)
    volume_id = ec2.create_volume(
        AvailabilityZone=ZONE_B, Size=10, SnapshotId=snapshot_id, VolumeInitializationRate=100
    )["VolumeId"]
    assert _initialization(ec2, volume_id) == "initializing"
    status = ec2.describe_volume_status(VolumeIds=[volume_id])["VolumeStatuses"][0]
    assert status["InitializationStatusDetails"]["InitializationType"] == "provisioned-rate"
    clock.advance(10 * 1024 / 100 / 2)
    assert (
        ec2.describe_volume_status(VolumeIds=[volume_id])["VolumeStatuses"][0]["InitializationStatusDetails"][
            "Progress"
        ]
        == 50
    )
    clock.advance(10 * 1024 / 100 / 2)
    assert _initialization(ec2, volume_id) == "completed"
    blank = ec2.create_volume(AvailabilityZone=ZONE_B, Size=10)["VolumeId"]
    assert _initialization(ec2, blank) == "completed"


def test_an_enabled_fast_restore_creates_initialized_volumes(
    ec2: EC2Client, sim: Simulator, clock: FakeClock
) -> None:
    snapshot_id = _snapshot(ec2, clock)
    ec2.enable_fast_snapshot_restores(AvailabilityZones=[ZONE_A], SourceSnapshotIds=[snapshot_id])
    early = ec2.create_volume(AvailabilityZone=ZONE_A, Size=10, SnapshotId=snapshot_id)["VolumeId"]
    assert _initialization(ec2, early) == "initializing"  # FSR still enabling: the default rate applies
    clock.advance(sim.extras.fsr_enabling + sim.extras.fsr_optimizing)
    fast = ec2.create_volume(AvailabilityZone=ZONE_A, Size=10, SnapshotId=snapshot_id)["VolumeId"]
    other_zone = ec2.create_volume(AvailabilityZone=ZONE_B, Size=10, SnapshotId=snapshot_id)["VolumeId"]
    assert _initialization(ec2, fast) == "completed"
    assert _initialization(ec2, other_zone) == "initializing"


def test_unknown_volume_status_is_not_found(ec2: EC2Client) -> None:
    with pytest.raises(ClientError) as refused:
        ec2.describe_volume_status(VolumeIds=["vol-0000000000000dead"])
    assert code_of(refused.value) == "InvalidVolume.NotFound"


def test_refuse_next_fails_one_call(ec2: EC2Client, sim: Simulator, clock: FakeClock) -> None:
    snapshot_id = _snapshot(ec2, clock)
    sim.extras.refuse_next("LockSnapshot", "InvalidParameterValue", "no")
    with pytest.raises(ClientError):
        ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="governance", LockDuration=1)
    assert (
        ec2.lock_snapshot(SnapshotId=snapshot_id, LockMode="governance", LockDuration=1)["LockState"]
        == "governance"
    )
    assert sim.counters.snapshot()["LockSnapshot"].codes == {"InvalidParameterValue": 1}


@pytest.mark.parametrize("action", ["EnableFastSnapshotRestores", "LockSnapshot"])
def test_new_mutating_actions_draw_from_ec2s_mutating_bucket(action: str) -> None:
    assert bucket_for(action, {"SnapshotId": "snap-1"}) == (action, MUTATING)
