"""Fixtures for the EC2 adapter tests: an in-process moto EC2 and a recorder of sent requests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3.session
import pytest
from moto import mock_aws

from provisioner.aws.client import build_ec2_client
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import CloudConfig

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

REGION = "us-east-1"
MOTO_AMI = "ami-12c6146b"  # one of moto's built-in image ids


@dataclass
class Recorder:
    """The API parameters of every request the client sends, as boto3 sees them before serialising.

    moto ignores some parameters (ClientToken), so tests assert what we *send*, not what moto kept.
    """

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((str(model.name), copy.deepcopy(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]

    def last(self, operation: str) -> dict[str, Any]:
        sent = self.of(operation)
        assert sent, f"no {operation} request was sent"
        return sent[-1]


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    """One session for the suite: it caches EC2's service model (loading it takes ~0.3 s)."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


@contextmanager
def moto_ec2(
    session: boto3.session.Session, monkeypatch: pytest.MonkeyPatch, images: bool
) -> Iterator[EC2Client]:
    """A fresh moto account. Without ``images`` moto skips loading its ~1,300 public AMIs and snapshots,
    which makes each test about ten times faster; run_instances accepts any image id then."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "true" if images else "false")
    with mock_aws():
        yield build_ec2_client(CloudConfig(region=REGION, retry_mode="standard", max_attempts=1), session)


@pytest.fixture
def ec2(boto_session: boto3.session.Session, monkeypatch: pytest.MonkeyPatch) -> Iterator[EC2Client]:
    with moto_ec2(boto_session, monkeypatch, images=False) as client:
        yield client


@pytest.fixture
def ec2_with_public_images(
    boto_session: boto3.session.Session, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EC2Client]:
    """moto with its public AMIs and their 1,000+ public snapshots, owned by other accounts."""
    with moto_ec2(boto_session, monkeypatch, images=True) as client:
        yield client


@pytest.fixture
def recorder(ec2: EC2Client) -> Recorder:
    rec = Recorder()
    ec2.meta.events.register("before-parameter-build.ec2.*", rec)
    return rec


@pytest.fixture
def cloud(ec2: EC2Client) -> Ec2Cloud:
    return Ec2Cloud(ec2, REGION)


def run_instance(ec2: EC2Client, zone: str = "us-east-1a") -> str:
    """Start one moto instance in ``zone`` and return its id."""
    answer = ec2.run_instances(ImageId=MOTO_AMI, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone})
    return answer["Instances"][0]["InstanceId"]
