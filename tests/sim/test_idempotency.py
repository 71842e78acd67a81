"""ClientToken idempotency of CreateVolume, as EC2 documents it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from provisioner.embedded.ec2 import Simulator
from tests.fakes.clock import FakeClock
from tests.sim.conftest import ZONE_A, ZONE_B, code_of, http_status_of, volume_state

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


def test_same_token_same_parameters_returns_the_original_volume(ec2: EC2Client) -> None:
    first = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, VolumeType="gp3", ClientToken="pvc-1")
    again = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, VolumeType="gp3", ClientToken="pvc-1")

    assert again["VolumeId"] == first["VolumeId"]
    assert len(ec2.describe_volumes()["Volumes"]) == 1


def test_same_token_in_another_zone_returns_the_original_volume_in_its_zone(ec2: EC2Client) -> None:
    first = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-1")
    again = ec2.create_volume(AvailabilityZone=ZONE_B, Size=4, ClientToken="pvc-1")

    assert again["VolumeId"] == first["VolumeId"]
    assert again["AvailabilityZone"] == ZONE_A


@pytest.mark.parametrize(
    "changed",
    [{"Size": 5}, {"VolumeType": "io2", "Iops": 1000}, {"Encrypted": True}],
    ids=["size", "type", "encryption"],
)
def test_same_token_other_parameters_is_a_mismatch(ec2: EC2Client, changed: dict[str, object]) -> None:
    ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, VolumeType="gp3", ClientToken="pvc-1")
    params: dict[str, object] = {"AvailabilityZone": ZONE_A, "Size": 4, "VolumeType": "gp3", **changed}

    with pytest.raises(ClientError) as raised:
        ec2.create_volume(ClientToken="pvc-1", **params)  # type: ignore[arg-type]

    assert code_of(raised.value) == "IdempotentParameterMismatch"
    assert http_status_of(raised.value) == 400
    assert len(ec2.describe_volumes()["Volumes"]) == 1


def test_other_tokens_create_other_volumes(ec2: EC2Client) -> None:
    a = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-1")
    b = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-2")
    c = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4)  # boto3 fills in a fresh token

    assert len({a["VolumeId"], b["VolumeId"], c["VolumeId"]}) == 3


def test_replay_after_delete_answers_the_deleted_volume(ec2: EC2Client, clock: FakeClock) -> None:
    first = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-1")
    clock.advance(5)
    ec2.delete_volume(VolumeId=first["VolumeId"])

    again = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-1")

    assert again["VolumeId"] == first["VolumeId"]
    assert ec2.describe_volumes()["Volumes"] == []


def test_replay_sees_the_current_state(ec2: EC2Client, clock: FakeClock) -> None:
    first = ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-1")
    clock.advance(5)

    ec2.create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-1")

    assert volume_state(ec2, first["VolumeId"]) == "available"


def test_tokens_belong_to_one_account(sim: Simulator, clock: FakeClock) -> None:
    other = Simulator(sim.config, clock=clock)
    a = sim.client().create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-1")
    b = other.client().create_volume(AvailabilityZone=ZONE_A, Size=4, ClientToken="pvc-1")

    assert a["VolumeId"] != b["VolumeId"]
    assert other.account_id != sim.account_id
