"""States advance with the (fake) clock: volumes, attachments, snapshots, modifications."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from provisioner.embedded.ec2 import Delays, Faults, SimConfig, Simulator
from tests.fakes.clock import FakeClock
from tests.sim.conftest import NO_RETRY, ZONE_A, attachment_states, code_of, volume_state

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef

DELAYS = Delays(
    volume_create=2.0,
    attach=1.0,
    detach=3.0,
    snapshot=4.0,
    modify_modifying=2.0,
    modify_optimizing=5.0,
    modify_cooldown=100.0,
)


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(SimConfig(delays=DELAYS), clock=clock)


def _attached(sim: Simulator, ec2: EC2Client, clock: FakeClock) -> tuple[str, str]:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    clock.advance(DELAYS.volume_create)
    instance_id = sim.create_instance(ZONE_A)
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/xvdba")
    clock.advance(DELAYS.attach)
    return volume_id, instance_id


def test_volume_is_creating_until_its_delay_passed(ec2: EC2Client, clock: FakeClock) -> None:
    created = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)
    assert created["State"] == "creating"

    clock.advance(1.9)
    assert volume_state(ec2, created["VolumeId"]) == "creating"
    clock.advance(0.1)
    assert volume_state(ec2, created["VolumeId"]) == "available"


def test_status_filter_follows_the_clock(ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    available: list[FilterTypeDef] = [{"Name": "status", "Values": ["available"]}]

    assert ec2.describe_volumes(Filters=available)["Volumes"] == []
    clock.advance(2)
    assert [v["VolumeId"] for v in ec2.describe_volumes(Filters=available)["Volumes"]] == [volume_id]


def test_a_doomed_volume_ends_in_error_and_cannot_be_attached(clock: FakeClock) -> None:
    sim = Simulator(SimConfig(delays=DELAYS, faults=Faults(volume_error_rate=1.0)), clock=clock)
    ec2 = sim.client(config=NO_RETRY)
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    assert volume_state(ec2, volume_id) == "creating"
    clock.advance(2)
    assert volume_state(ec2, volume_id) == "error"

    with pytest.raises(ClientError) as raised:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=sim.create_instance(ZONE_A), Device="/dev/xvdba")
    assert code_of(raised.value) == "IncorrectState"


def test_error_fraction_is_about_the_configured_rate(clock: FakeClock) -> None:
    config = SimConfig(
        delays=Delays.instant(), faults=Faults(volume_error_rate=0.25), throttling=False, seed=7
    )
    ec2 = Simulator(config, clock=clock).client(config=NO_RETRY)
    ids = [ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"] for _ in range(40)]

    states = [v["State"] for v in ec2.describe_volumes(VolumeIds=ids)["Volumes"]]

    assert 4 <= states.count("error") <= 16
    assert states.count("error") + states.count("available") == 40


def test_a_creating_volume_cannot_be_attached(sim: Simulator, ec2: EC2Client) -> None:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]

    with pytest.raises(ClientError) as raised:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=sim.create_instance(ZONE_A), Device="/dev/xvdba")

    assert code_of(raised.value) == "IncorrectState"


def test_attachment_is_attaching_then_attached(sim: Simulator, ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    clock.advance(2)
    instance_id = sim.create_instance(ZONE_A)

    answer = ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/xvdba")

    assert answer["State"] == "attaching"
    assert attachment_states(ec2, volume_id) == ["attaching"]
    assert volume_state(ec2, volume_id) == "in-use"
    clock.advance(1)
    assert attachment_states(ec2, volume_id) == ["attached"]


def test_detach_keeps_the_volume_in_use_until_detached(
    sim: Simulator, ec2: EC2Client, clock: FakeClock
) -> None:
    volume_id, instance_id = _attached(sim, ec2, clock)

    answer = ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)

    assert answer["State"] == "detaching"
    assert attachment_states(ec2, volume_id) == ["detaching"]
    assert volume_state(ec2, volume_id) == "in-use"
    again = ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)
    assert again["State"] == "detaching"
    clock.advance(3)
    assert attachment_states(ec2, volume_id) == []
    assert volume_state(ec2, volume_id) == "available"


def test_a_detaching_volume_cannot_be_deleted(sim: Simulator, ec2: EC2Client, clock: FakeClock) -> None:
    volume_id, instance_id = _attached(sim, ec2, clock)
    ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)

    with pytest.raises(ClientError) as raised:
        ec2.delete_volume(VolumeId=volume_id)
    assert code_of(raised.value) == "VolumeInUse"

    clock.advance(3)
    ec2.delete_volume(VolumeId=volume_id)
    assert ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume_id]}])["Volumes"] == []


def test_snapshot_is_pending_then_completed(ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    clock.advance(2)

    snapshot = ec2.create_snapshot(VolumeId=volume_id)
    assert snapshot["State"] == "pending"

    clock.advance(2)
    halfway = ec2.describe_snapshots(SnapshotIds=[snapshot["SnapshotId"]])["Snapshots"][0]
    assert (halfway["State"], halfway["Progress"]) == ("pending", "50%")
    clock.advance(2)
    done = ec2.describe_snapshots(SnapshotIds=[snapshot["SnapshotId"]])["Snapshots"][0]
    assert (done["State"], done["Progress"]) == ("completed", "100%")


def test_modification_goes_modifying_optimizing_completed(ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    clock.advance(2)

    answer = ec2.modify_volume(VolumeId=volume_id, Size=8)["VolumeModification"]
    assert (answer["ModificationState"], answer["TargetSize"]) == ("modifying", 8)

    def state() -> str:
        return ec2.describe_volumes_modifications(VolumeIds=[volume_id])["VolumesModifications"][0][
            "ModificationState"
        ]

    assert state() == "modifying"
    clock.advance(2)
    assert state() == "optimizing"
    clock.advance(5)
    assert state() == "completed"
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"] == 8


def test_modifying_again_too_soon_is_refused(ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    clock.advance(2)
    ec2.modify_volume(VolumeId=volume_id, Size=8)

    with pytest.raises(ClientError) as in_progress:
        ec2.modify_volume(VolumeId=volume_id, Size=9)
    clock.advance(10)
    with pytest.raises(ClientError) as cooling_down:
        ec2.modify_volume(VolumeId=volume_id, Size=9)
    clock.advance(100)
    ec2.modify_volume(VolumeId=volume_id, Size=9)

    assert code_of(in_progress.value) == "IncorrectModificationState"
    assert code_of(cooling_down.value) == "VolumeModificationRateExceeded"
    assert ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"] == 9


def test_shrinking_is_refused(ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    clock.advance(2)

    with pytest.raises(ClientError) as raised:
        ec2.modify_volume(VolumeId=volume_id, Size=2)

    assert code_of(raised.value) == "InvalidParameterValue"


def test_instant_delays_make_everything_ready_at_once(clock: FakeClock) -> None:
    sim = Simulator(SimConfig(delays=Delays.instant()), clock=clock)
    ec2 = sim.client(config=NO_RETRY)
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    instance_id = sim.create_instance(ZONE_A)

    assert volume_state(ec2, volume_id) == "available"
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/xvdba")
    assert attachment_states(ec2, volume_id) == ["attached"]
    ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)
    assert volume_state(ec2, volume_id) == "available"


def _mappings(ec2: EC2Client, instance_id: str) -> dict[str, tuple[str, str]]:
    """DescribeInstances' block-device mappings: device → (volume id, attachment status)."""
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {
        m["DeviceName"]: (m["Ebs"]["VolumeId"], m["Ebs"]["Status"])
        for m in instance.get("BlockDeviceMappings", [])
        if m["DeviceName"] != "/dev/sda1"  # the root volume
    }


def test_instance_mappings_follow_the_attachment_until_the_detach_completes(
    sim: Simulator, ec2: EC2Client, clock: FakeClock
) -> None:
    volume_id = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)["VolumeId"]
    clock.advance(DELAYS.volume_create)
    instance_id = sim.create_instance(ZONE_A)

    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/xvdba")
    assert _mappings(ec2, instance_id) == {"/dev/xvdba": (volume_id, "attaching")}
    clock.advance(DELAYS.attach)
    assert _mappings(ec2, instance_id) == {"/dev/xvdba": (volume_id, "attached")}

    ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)
    # EC2 lists the mapping as detaching until the detach completes, as DescribeVolumes does.
    assert _mappings(ec2, instance_id) == {"/dev/xvdba": (volume_id, "detaching")}
    assert attachment_states(ec2, volume_id) == ["detaching"]
    clock.advance(DELAYS.detach - 0.1)
    assert _mappings(ec2, instance_id) == {"/dev/xvdba": (volume_id, "detaching")}
    clock.advance(0.1)
    assert _mappings(ec2, instance_id) == {}
    assert attachment_states(ec2, volume_id) == []

    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/xvdba")  # the name is free
    assert _mappings(ec2, instance_id) == {"/dev/xvdba": (volume_id, "attaching")}


def test_an_instance_terminated_while_a_volume_detaches_frees_the_volume(
    sim: Simulator, ec2: EC2Client, clock: FakeClock
) -> None:
    volume_id, instance_id = _attached(sim, ec2, clock)
    ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)

    ec2.terminate_instances(InstanceIds=[instance_id])

    assert attachment_states(ec2, volume_id) == []
    assert volume_state(ec2, volume_id) == "available"
    clock.advance(DELAYS.detach)
    assert volume_state(ec2, volume_id) == "available"
