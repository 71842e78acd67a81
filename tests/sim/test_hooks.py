"""The embedded cloud's hooks: attach/detach/delete/resize reach a block backer."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from provisioner.embedded.ec2 import BackerHooks, Delays, SimConfig, Simulator
from tests.fakes.clock import FakeClock
from tests.sim.conftest import NO_RETRY, ZONE_A, code_of

GIB = 1024**3


class RecordingBacker:
    """A BlockBacker that hands out fake device paths and records every call."""

    def __init__(self, fail_back: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail_back = fail_back

    def back(self, volume_id: str, size_bytes: int) -> str:
        if self.fail_back:
            raise RuntimeError("no free loop device")
        self.calls.append(("back", volume_id, str(size_bytes)))
        return f"/dev/loop-{volume_id}"

    def detach(self, volume_id: str) -> None:
        self.calls.append(("detach", volume_id))

    def release(self, volume_id: str) -> None:
        self.calls.append(("release", volume_id))

    def resize(self, volume_id: str, size_bytes: int) -> None:
        self.calls.append(("resize", volume_id, str(size_bytes)))

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        self.calls.append(("snapshot", volume_id, snapshot_id))

    def restore(self, volume_id: str, snapshot_id: str, size_bytes: int) -> None:
        self.calls.append(("restore", volume_id, snapshot_id, str(size_bytes)))

    def drop_snapshot(self, snapshot_id: str) -> None:
        self.calls.append(("drop_snapshot", snapshot_id))


def test_lifecycle_reaches_the_backer(clock: FakeClock) -> None:
    backer = RecordingBacker()
    hooks = BackerHooks(backer)
    sim = Simulator(SimConfig(delays=Delays.instant()), clock=clock, hooks=hooks)
    ec2 = sim.client(config=NO_RETRY)
    node = sim.create_instance(ZONE_A)
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=2)["VolumeId"]
    never_attached = ec2.create_volume(AvailabilityZone=ZONE_A, Size=2)["VolumeId"]

    ec2.attach_volume(VolumeId=volume_id, InstanceId=node, Device="/dev/xvdba")
    assert hooks.devices == {volume_id: f"/dev/loop-{volume_id}"}
    ec2.modify_volume(VolumeId=volume_id, Size=3)
    ec2.modify_volume(VolumeId=never_attached, Size=3)
    ec2.detach_volume(VolumeId=volume_id, InstanceId=node)
    assert hooks.devices == {}
    ec2.delete_volume(VolumeId=volume_id)
    ec2.delete_volume(VolumeId=never_attached)

    assert backer.calls == [
        ("back", volume_id, str(2 * GIB)),
        ("resize", volume_id, str(3 * GIB)),
        ("detach", volume_id),
        ("release", volume_id),
    ]


def test_failed_or_refused_calls_fire_no_hook(clock: FakeClock) -> None:
    backer = RecordingBacker()
    sim = Simulator(SimConfig(), clock=clock, hooks=BackerHooks(backer))
    ec2 = sim.client(config=NO_RETRY)
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=2)["VolumeId"]

    with pytest.raises(ClientError):  # still creating
        ec2.attach_volume(VolumeId=volume_id, InstanceId=sim.create_instance(ZONE_A), Device="/dev/xvdba")

    assert backer.calls == []


def test_a_failing_hook_answers_internal_error(clock: FakeClock) -> None:
    sim = Simulator(SimConfig(delays=Delays.instant()), clock=clock, hooks=BackerHooks(RecordingBacker(True)))
    ec2 = sim.client(config=NO_RETRY)
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=2)["VolumeId"]

    with pytest.raises(ClientError) as raised:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=sim.create_instance(ZONE_A), Device="/dev/xvdba")

    assert code_of(raised.value) == "InternalError"
    assert sim.counters.snapshot()["AttachVolume"].codes == {"InternalError": 1}
