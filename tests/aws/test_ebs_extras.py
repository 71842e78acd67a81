"""The EC2 adapter's fast-restore, lock and volume-status calls: request shapes, EC2's per-zone failures
and error codes (against the simulator, which has these actions), and plain moto (which lacks them)."""

from __future__ import annotations

import pytest

from provisioner import errors
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.model import VolumeSpec
from provisioner.ports.cloud import SnapshotLock
from tests.aws.conftest import Recorder
from tests.fakes.clock import FakeClock

UNKNOWN_SNAPSHOT = "snap-0000000000000dead"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim_cloud(clock: FakeClock) -> tuple[Ec2Cloud, Recorder]:
    sim = Simulator(SimConfig(delays=Delays.instant(), throttling=False), clock=clock)
    client = sim.client()
    recorder = Recorder()
    client.meta.events.register("before-parameter-build.ec2.*", recorder)
    return Ec2Cloud(client, "us-east-1"), recorder


def _snapshot(cloud: Ec2Cloud) -> str:
    volume = cloud.create_volume(VolumeSpec("pvc-1", 10), "us-east-1a", "token-1")
    return cloud.create_snapshot(volume.volume_id, {}, "test").snapshot_id


def test_fast_restores_round_trip(sim_cloud: tuple[Ec2Cloud, Recorder]) -> None:
    cloud, recorder = sim_cloud
    snapshot_id = _snapshot(cloud)
    cloud.enable_fast_snapshot_restores(snapshot_id, ["us-east-1a", "us-east-1b"])
    assert recorder.last("EnableFastSnapshotRestores") == {
        "AvailabilityZones": ["us-east-1a", "us-east-1b"],
        "SourceSnapshotIds": [snapshot_id],
    }
    assert cloud.fast_snapshot_restore_zones(snapshot_id) == {"us-east-1a", "us-east-1b"}


def test_a_failed_zone_is_raised_as_ec2_classifies_it(sim_cloud: tuple[Ec2Cloud, Recorder]) -> None:
    cloud, _ = sim_cloud
    snapshot_id = _snapshot(cloud)
    with pytest.raises(errors.InvalidArgument, match="us-east-1q: EC2 InvalidAvailabilityZone"):
        cloud.enable_fast_snapshot_restores(snapshot_id, ["us-east-1a", "us-east-1q"])
    with pytest.raises(errors.NotFound, match=r"InvalidSnapshot\.NotFound"):
        cloud.enable_fast_snapshot_restores(UNKNOWN_SNAPSHOT, ["us-east-1a"])


def test_lock_request_and_state(sim_cloud: tuple[Ec2Cloud, Recorder], clock: FakeClock) -> None:
    cloud, recorder = sim_cloud
    snapshot_id = _snapshot(cloud)
    assert cloud.snapshot_lock_state(snapshot_id) == ""
    expires = clock.time() + 86_400 * 3
    cloud.lock_snapshot(snapshot_id, SnapshotLock("compliance", expires_at=expires, cool_off_hours=2))
    sent = recorder.last("LockSnapshot")
    assert sent["LockMode"] == "compliance" and sent["CoolOffPeriod"] == 2
    assert sent["ExpirationDate"].timestamp() == expires and "LockDuration" not in sent
    assert cloud.snapshot_lock_state(snapshot_id) == "compliance-cooloff"
    with pytest.raises(errors.FailedPrecondition, match="locked"):
        cloud.delete_snapshot(snapshot_id)
    with pytest.raises(errors.NotFound):
        cloud.lock_snapshot(UNKNOWN_SNAPSHOT, SnapshotLock("governance", duration_days=1))


def test_volume_initialized_and_the_rate_sent(sim_cloud: tuple[Ec2Cloud, Recorder], clock: FakeClock) -> None:
    cloud, recorder = sim_cloud
    snapshot_id = _snapshot(cloud)
    blank = cloud.create_volume(VolumeSpec("pvc-blank", 10, initialization_rate=300), "us-east-1a", "t-2")
    assert "VolumeInitializationRate" not in recorder.last(
        "CreateVolume"
    )  # EC2 refuses it without a snapshot
    restored = cloud.create_volume(
        VolumeSpec("pvc-2", 10, snapshot_id=snapshot_id, initialization_rate=300), "us-east-1a", "t-3"
    )
    assert recorder.last("CreateVolume")["VolumeInitializationRate"] == 300
    assert cloud.volume_initialized(blank.volume_id)
    assert not cloud.volume_initialized(restored.volume_id)
    clock.advance(10 * 1024 / 300 + 1)
    assert cloud.volume_initialized(restored.volume_id)
    with pytest.raises(errors.NotFound):
        cloud.volume_initialized("vol-0000000000000dead")


def test_outpost_arn_is_sent_with_create_snapshot(sim_cloud: tuple[Ec2Cloud, Recorder]) -> None:
    cloud, recorder = sim_cloud
    volume = cloud.create_volume(VolumeSpec("pvc-1", 10), "us-east-1a", "token-1")
    arn = "arn:aws:outposts:us-east-1:123456789012:outpost/op-1234567890abcdef0"
    cloud.create_snapshot(volume.volume_id, {}, "test", arn)
    assert recorder.last("CreateSnapshot")["OutpostArn"] == arn


def test_an_endpoint_without_these_actions_is_unimplemented(cloud: Ec2Cloud) -> None:
    with pytest.raises(errors.Unimplemented, match="DescribeVolumeStatus"):
        cloud.volume_initialized("vol-0123456789abcdef0")
