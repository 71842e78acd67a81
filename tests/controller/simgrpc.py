"""A Controller (with Identity) served over a real unix socket, against the EC2 simulator in this process.

The simulator keeps a short but real ``creating`` state (and attach/detach/snapshot delays), so the
core's waits are exercised; waits poll every few milliseconds so tests stay fast. ``world.ec2`` is a
boto3 client on the same simulated account, for reading EC2's full state and for making volumes
the way other tools (aws-ebs-csi-driver, an operator's script) would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.csi.controller_service import ControllerService
from provisioner.csi.identity import IdentityService
from provisioner.csi.server import Services
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.ports.clock import SystemClock
from tests.grpcutil import Stubs, channel, running_server

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
# Short real delays: volumes pass through `creating`, attachments through `attaching`/`detaching`.
DELAYS = Delays(
    volume_create=0.05,
    attach=0.02,
    detach=0.02,
    snapshot=0.05,
    modify_modifying=0.0,
    modify_optimizing=0.0,
    modify_cooldown=0.0,
)
FAST = ControllerConfig(
    wait_initial_delay=0.01,
    wait_factor=1.5,
    wait_max_delay=0.05,
    default_wait_timeout=20.0,
    attach_timeout=20.0,
    probe_cache_seconds=0.0,
    validate_cache_seconds=0.0,
    modify_merge_window=0.0,
)


@dataclass
class World:
    sim: Simulator
    ec2: EC2Client
    stubs: Stubs
    core: ControllerCore
    node: str  # an instance in us-east-1a
    channel: grpc.Channel
    others: dict[str, str] = field(default_factory=dict)  # zone → an instance there

    def volumes(self) -> dict[str, dict[str, Any]]:
        """Every volume EC2 holds (deleted ones aside), by id, as DescribeVolumes reports them."""
        out: dict[str, dict[str, Any]] = {}
        for page in self.ec2.get_paginator("describe_volumes").paginate():
            for raw in page["Volumes"]:
                if raw.get("State") not in ("deleting", "deleted"):
                    out[raw["VolumeId"]] = dict(raw)
        return out

    def snapshots(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for page in self.ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"]):
            for raw in page["Snapshots"]:
                out[raw["SnapshotId"]] = dict(raw)
        return out

    def make_volume(
        self, tags: Mapping[str, str], zone: str = "us-east-1a", size: int = 4, **extra: Any
    ) -> str:
        """A volume made outside zonal (as another driver or tool would), once it is available."""
        request: dict[str, Any] = {"AvailabilityZone": zone, "Size": size, "VolumeType": "gp3", **extra}
        if tags:
            request["TagSpecifications"] = tag_specifications("volume", tags)
        volume_id: str = self.ec2.create_volume(**request)["VolumeId"]
        deadline = time.monotonic() + 30
        while self.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] != "available":
            assert time.monotonic() < deadline, f"{volume_id} never became available"
            time.sleep(0.02)
        return volume_id

    def make_snapshot(self, volume_id: str, tags: Mapping[str, str]) -> str:
        request: dict[str, Any] = {"VolumeId": volume_id}
        if tags:
            request["TagSpecifications"] = tag_specifications("snapshot", tags)
        snapshot_id: str = self.ec2.create_snapshot(**request)["SnapshotId"]
        return snapshot_id


def tag_specifications(kind: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


@contextmanager
def sim_world(
    folder: Path,
    driver: DriverConfig | None = None,
    config: ControllerConfig | None = None,
    delays: Delays = DELAYS,
) -> Iterator[World]:
    sim = Simulator(SimConfig(zones=ZONES, delays=delays, throttling=False))
    node = sim.create_instance("us-east-1a")
    others = {zone: sim.create_instance(zone) for zone in ZONES[1:]}
    cloud = Ec2Cloud(sim.client(), sim.config.region)
    core = ControllerCore(cloud, SystemClock(), driver or DriverConfig(), config or FAST)
    services = Services(
        identity=IdentityService(core.driver.driver_name, "0.0.0", controller=True, probe=core.probe),
        controller=ControllerService(core),
    )
    with running_server(folder, services, mode="controller") as server, channel(server) as ch:
        yield World(sim, sim.client(), Stubs(ch), core, node, ch, others)


def fast(**changes: Any) -> ControllerConfig:
    return replace(FAST, **changes)
