"""Snapshot data in the embedded cloud: CreateSnapshot, CreateVolume from a snapshot and DeleteSnapshot
reach the block backer; hooks without the snapshot methods still work; actions moto lacks answer
EC2's ``InvalidAction``."""

from __future__ import annotations

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.embedded.ec2 import BackerHooks, Delays, SimConfig, Simulator, VolumeHooks
from provisioner.errors import Unimplemented
from provisioner.model import VolumeSpec
from tests.fakes.clock import FakeClock
from tests.sim.conftest import NO_RETRY, ZONE_A, code_of, http_status_of
from tests.sim.test_hooks import RecordingBacker

GIB = 1024**3


class PlainHooks:
    """A VolumeHooks from before snapshots existed: only the four volume events."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def attached(self, volume_id: str, instance_id: str, device: str, size_gib: int) -> None:
        self.events.append("attached")

    def detached(self, volume_id: str, instance_id: str) -> None:
        self.events.append("detached")

    def deleted(self, volume_id: str) -> None:
        self.events.append("deleted")

    def resized(self, volume_id: str, size_gib: int) -> None:
        self.events.append("resized")


def _instant(clock: FakeClock, hooks: VolumeHooks | None) -> Simulator:
    return Simulator(SimConfig(delays=Delays.instant()), clock=clock, hooks=hooks)


def test_snapshot_restore_and_delete_reach_the_backer(clock: FakeClock) -> None:
    backer = RecordingBacker()
    hooks = BackerHooks(backer)
    ec2 = _instant(clock, hooks).client(config=NO_RETRY)
    source = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"]

    snap = ec2.create_snapshot(VolumeId=source)["SnapshotId"]
    restored = ec2.create_volume(AvailabilityZone=ZONE_A, Size=2, SnapshotId=snap)["VolumeId"]
    ec2.modify_volume(VolumeId=restored, Size=3)  # a restored volume is backed: resizes reach it
    ec2.delete_volume(VolumeId=restored)
    ec2.delete_snapshot(SnapshotId=snap)

    assert backer.calls == [
        ("snapshot", source, snap),
        ("restore", restored, snap, str(2 * GIB)),
        ("resize", restored, str(3 * GIB)),
        ("release", restored),
        ("drop_snapshot", snap),
    ]


def test_the_snapshot_is_taken_at_create_snapshot_while_still_pending(clock: FakeClock) -> None:
    backer = RecordingBacker()
    sim = Simulator(SimConfig(delays=Delays(snapshot=60.0)), clock=clock, hooks=BackerHooks(backer))
    ec2 = sim.client(config=NO_RETRY)
    source = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"]
    clock.advance(10)  # the volume is available

    snap = ec2.create_snapshot(VolumeId=source)["SnapshotId"]

    assert ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "pending"
    assert backer.calls == [("snapshot", source, snap)]


def test_a_client_token_replay_restores_once(clock: FakeClock) -> None:
    backer = RecordingBacker()
    ec2 = _instant(clock, BackerHooks(backer)).client(config=NO_RETRY)
    source = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=source)["SnapshotId"]

    first = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1, SnapshotId=snap, ClientToken="t-1")
    again = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1, SnapshotId=snap, ClientToken="t-1")

    assert first["VolumeId"] == again["VolumeId"]
    assert [c for c in backer.calls if c[0] == "restore"] == [("restore", first["VolumeId"], snap, str(GIB))]


def test_a_volume_smaller_than_its_snapshot_is_refused(clock: FakeClock) -> None:
    backer = RecordingBacker()
    ec2 = _instant(clock, BackerHooks(backer)).client(config=NO_RETRY)
    snap = ec2.create_snapshot(VolumeId=ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"])

    with pytest.raises(ClientError) as raised:
        ec2.create_volume(AvailabilityZone=ZONE_A, Size=2, SnapshotId=snap["SnapshotId"])

    assert code_of(raised.value) == "InvalidParameterValue"
    assert [c[0] for c in backer.calls] == ["snapshot"]


def test_hooks_without_snapshot_methods_still_work(clock: FakeClock) -> None:
    hooks = PlainHooks()
    ec2 = _instant(clock, hooks).client(config=NO_RETRY)
    source = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"]

    snap = ec2.create_snapshot(VolumeId=source)["SnapshotId"]
    restored = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1, SnapshotId=snap)["VolumeId"]
    ec2.delete_snapshot(SnapshotId=snap)
    ec2.delete_volume(VolumeId=restored)

    assert hooks.events == ["deleted"]


def test_an_action_moto_lacks_answers_invalid_action_once(clock: FakeClock) -> None:
    sim = _instant(clock, None)
    # Retries on (the default): a 500 would be retried; a 400 must not be.
    ec2 = sim.client(config=Config(retries={"total_max_attempts": 3, "mode": "standard"}))

    with pytest.raises(ClientError) as raised:
        ec2.copy_volumes(SourceVolumeId="vol-0123456789abcdef0", Size=1)

    assert (code_of(raised.value), http_status_of(raised.value)) == ("InvalidAction", 400)
    assert "The action CopyVolumes is not valid for this web service." in str(raised.value)
    assert sim.counters.snapshot()["CopyVolumes"].calls == 1


def test_the_controller_clone_path_sees_unimplemented(clock: FakeClock) -> None:
    sim = _instant(clock, None)
    cloud = Ec2Cloud(sim.client(config=NO_RETRY), sim.region)
    source = sim.client(config=NO_RETRY).create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"]
    spec = VolumeSpec(name="pvc-clone", size_gib=1)

    with pytest.raises(Unimplemented):
        cloud.copy_volume(source, spec, "token-1")
    with pytest.raises(Unimplemented):  # remembered: no second call reaches the endpoint
        cloud.copy_volume(source, spec, "token-2")

    assert sim.counters.snapshot()["CopyVolumes"].calls == 1
