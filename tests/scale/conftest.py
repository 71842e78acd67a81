"""Shared pieces of the scale tests: simulators wired to the EC2 adapter with zonal's client hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.config import Config

from provisioner.aws.batcher import BatchSettings
from provisioner.aws.client import instrument
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import CloudConfig
from provisioner.embedded.ec2 import Simulator

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

ZONE_A, ZONE_B, ZONE_C = "us-east-1a", "us-east-1b", "us-east-1c"
# The mode build_ec2_client gives botocore; instrument() then puts zonal's RetryPolicy in its place.
STANDARD = Config(retries={"mode": "standard", "total_max_attempts": 5})


def zonal_client(sim: Simulator, config: CloudConfig | None = None) -> EC2Client:
    """A client of ``sim`` with zonal's limiter and retries, as ``build_ec2_client`` would set it up."""
    client = sim.client(config=STANDARD)
    instrument(client, config or CloudConfig(region=sim.region))
    return client


def batched_cloud(sim: Simulator, window: float = 0.2, min_interval: float = 0.0) -> Ec2Cloud:
    """Batches spaced a fixed ``min_interval`` apart under load (no adaptive spacing)."""
    settings = BatchSettings(window, min_interval, target_batch=0, instance_interval=min_interval)
    return Ec2Cloud(zonal_client(sim), sim.region, settings)


def calls(sim: Simulator, action: str) -> int:
    counts = sim.counters.snapshot().get(action)
    return counts.calls if counts is not None else 0
