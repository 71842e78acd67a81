"""The simulator's fast tag lookup serves its own accounts only: any other moto account (``mock_aws``
in tests/aws) keeps moto's own method, so those tests do not depend on whether a simulator ran first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from provisioner.embedded.ec2 import Simulator, fasttags
from tests.sim.conftest import ZONE_A

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import TagSpecificationTypeDef

TAGGED: list[TagSpecificationTypeDef] = [
    {"ResourceType": "volume", "Tags": [{"Key": "team", "Value": "storage"}]}
]


def _tags(ec2: EC2Client, volume_id: str) -> dict[str, str]:
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return {t["Key"]: t["Value"] for t in volume.get("Tags", [])}


def test_only_simulator_accounts_bypass_motos_get_tags(
    sim: Simulator, ec2: EC2Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    moto_own = fasttags._moto_get_tags

    def spy(resource: Any) -> list[dict[str, str]]:
        asked.append(resource.id)
        return moto_own(resource)

    monkeypatch.setattr(fasttags, "_moto_get_tags", spy)
    simulated = ec2.create_volume(AvailabilityZone=ZONE_A, Size=1, TagSpecifications=TAGGED)["VolumeId"]
    assert _tags(ec2, simulated) == {"team": "storage"}
    assert simulated not in asked  # the simulator's account: read from the tag table

    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        plain_ec2 = boto3.client(
            "ec2", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        plain = plain_ec2.create_volume(AvailabilityZone=ZONE_A, Size=1, TagSpecifications=TAGGED)["VolumeId"]
        assert _tags(plain_ec2, plain) == {"team": "storage"}
    assert plain in asked  # another account, after a simulator ran: moto's own method
