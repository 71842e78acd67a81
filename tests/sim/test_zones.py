"""Zone and device rules moto does not enforce: unknown zones, cross-zone attach, busy device names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from provisioner.embedded.ec2 import SimConfig, Simulator
from tests.fakes.clock import FakeClock
from tests.sim.conftest import NO_RETRY, ZONE_A, ZONE_B, code_of, http_status_of

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


def _available_volume(ec2: EC2Client, clock: FakeClock, zone: str = ZONE_A) -> str:
    volume_id = ec2.create_volume(AvailabilityZone=zone, Size=4)["VolumeId"]
    clock.advance(10)
    return volume_id


def test_unknown_zone_is_the_real_ec2_error(ec2: EC2Client) -> None:
    with pytest.raises(ClientError) as raised:
        ec2.create_volume(AvailabilityZone="us-east-1z", Size=4)

    assert code_of(raised.value) == "InvalidZone.NotFound"
    assert "us-east-1z" in str(raised.value)
    assert http_status_of(raised.value) == 400
    assert ec2.describe_volumes()["Volumes"] == []


def test_a_zone_moto_knows_but_the_simulator_does_not_offer_is_unknown(clock: FakeClock) -> None:
    ec2 = Simulator(SimConfig(zones=(ZONE_A, ZONE_B)), clock=clock).client(config=NO_RETRY)

    with pytest.raises(ClientError) as raised:
        ec2.create_volume(AvailabilityZone="us-east-1c", Size=4)

    assert code_of(raised.value) == "InvalidZone.NotFound"
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    assert zones == [ZONE_A, ZONE_B]


def test_configured_zones_must_exist_in_the_region() -> None:
    with pytest.raises(ValueError, match="us-west-2a"):
        Simulator(SimConfig(zones=("us-west-2a",)))


def test_default_zones_are_the_first_three_of_the_region(sim: Simulator) -> None:
    assert sim.zones == ("us-east-1a", "us-east-1b", "us-east-1c")


def test_instance_in_an_unoffered_zone_is_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="us-east-1f"):
        sim.create_instance("us-east-1f")


def test_created_instance_is_in_its_zone(sim: Simulator, ec2: EC2Client) -> None:
    instance_id = sim.create_instance(ZONE_B)

    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    assert reservations[0]["Instances"][0]["Placement"]["AvailabilityZone"] == ZONE_B


def test_attach_across_zones_is_a_zone_mismatch(sim: Simulator, ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = _available_volume(ec2, clock, ZONE_A)
    instance_id = sim.create_instance(ZONE_B)

    with pytest.raises(ClientError) as raised:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/xvdba")

    assert code_of(raised.value) == "InvalidVolume.ZoneMismatch"
    assert volume_id in str(raised.value) and instance_id in str(raised.value)


def test_device_name_in_use_on_the_instance(sim: Simulator, ec2: EC2Client, clock: FakeClock) -> None:
    first, second = _available_volume(ec2, clock), _available_volume(ec2, clock)
    instance_id = sim.create_instance(ZONE_A)
    ec2.attach_volume(VolumeId=first, InstanceId=instance_id, Device="/dev/xvdba")

    with pytest.raises(ClientError) as raised:
        ec2.attach_volume(VolumeId=second, InstanceId=instance_id, Device="/dev/xvdba")

    assert code_of(raised.value) == "InvalidParameterValue"
    assert "/dev/xvdba is already in use" in str(raised.value)


def test_the_root_device_is_in_use(sim: Simulator, ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = _available_volume(ec2, clock)
    instance_id = sim.create_instance(ZONE_A)

    with pytest.raises(ClientError) as raised:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sda1")

    assert code_of(raised.value) == "InvalidParameterValue"


def test_device_stays_in_use_while_detaching(sim: Simulator, ec2: EC2Client, clock: FakeClock) -> None:
    first, second = _available_volume(ec2, clock), _available_volume(ec2, clock)
    instance_id = sim.create_instance(ZONE_A)
    ec2.attach_volume(VolumeId=first, InstanceId=instance_id, Device="/dev/xvdba")
    clock.advance(10)
    ec2.detach_volume(VolumeId=first, InstanceId=instance_id)

    with pytest.raises(ClientError) as raised:
        ec2.attach_volume(VolumeId=second, InstanceId=instance_id, Device="/dev/xvdba")
    assert code_of(raised.value) == "InvalidParameterValue"

    clock.advance(10)
    attached = ec2.attach_volume(VolumeId=second, InstanceId=instance_id, Device="/dev/xvdba")
    assert attached["State"] == "attaching"


def test_attaching_an_attached_volume_elsewhere_is_volume_in_use(
    sim: Simulator, ec2: EC2Client, clock: FakeClock
) -> None:
    volume_id = _available_volume(ec2, clock)
    node_a, node_b = sim.create_instance(ZONE_A), sim.create_instance(ZONE_A)
    ec2.attach_volume(VolumeId=volume_id, InstanceId=node_a, Device="/dev/xvdba")

    with pytest.raises(ClientError) as raised:
        ec2.attach_volume(VolumeId=volume_id, InstanceId=node_b, Device="/dev/xvdbb")

    assert code_of(raised.value) == "VolumeInUse"


def test_detach_from_the_wrong_instance_is_refused(sim: Simulator, ec2: EC2Client, clock: FakeClock) -> None:
    volume_id = _available_volume(ec2, clock)
    node_a, node_b = sim.create_instance(ZONE_A), sim.create_instance(ZONE_A)
    ec2.attach_volume(VolumeId=volume_id, InstanceId=node_a, Device="/dev/xvdba")

    with pytest.raises(ClientError) as raised:
        ec2.detach_volume(VolumeId=volume_id, InstanceId=node_b)

    assert code_of(raised.value) == "InvalidAttachment.NotFound"
