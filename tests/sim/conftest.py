"""Fixtures for the simulator's own tests: a fake clock, a simulator on it, a boto3 client that never
retries (so every throttle and fault reaches the test)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from tests.fakes.clock import FakeClock

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

# botocore counts `max_attempts` as RETRIES (one retry with 1); `total_max_attempts` counts every attempt.
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
ZONE_A, ZONE_B = "us-east-1a", "us-east-1b"


def code_of(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code"))


def http_status_of(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(SimConfig(delays=Delays()), clock=clock)


@pytest.fixture
def ec2(sim: Simulator) -> EC2Client:
    return sim.client(config=NO_RETRY)


def volume_state(ec2: EC2Client, volume_id: str) -> str:
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"]


def attachment_states(ec2: EC2Client, volume_id: str) -> list[str]:
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return [a["State"] for a in volume.get("Attachments", [])]
