"""Volumes sharing an instance through the controller core, the EC2 adapter and the simulator: a volume
still detaching keeps its device name, so another volume attaching meanwhile gets the next one, and the
name is reused once the detach completes (benchmarks/mixed_load.py relies on this)."""

from __future__ import annotations

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from tests.controller.helpers import MOUNT_RWO
from tests.fakes.clock import FakeClock
from tests.scale.conftest import ZONE_A

DELAYS = Delays(volume_create=1.0, attach=1.0, detach=5.0)


def test_an_attach_beside_a_detaching_volume_gets_another_name_and_the_name_is_reused_after() -> None:
    clock = FakeClock()
    sim = Simulator(SimConfig(throttling=False, delays=DELAYS), clock=clock)
    cloud = Ec2Cloud(sim.client(), sim.region)
    core = ControllerCore(cloud, clock, DriverConfig(), ControllerConfig())
    ec2 = sim.client()
    node = sim.create_instance(ZONE_A)
    a, b, c = (ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)["VolumeId"] for _ in range(3))
    clock.advance(DELAYS.volume_create)

    def publish(volume_id: str) -> str:
        return core.publish(volume_id, node, MOUNT_RWO, False, {}, None)["devicePath"]

    assert publish(a) == "/dev/xvdaa"
    cloud.detach_volume(a, node)  # an unpublish of A in flight: EC2 says detaching for 5 s
    detach_started = clock.monotonic()

    assert publish(b) == "/dev/xvdab"  # /dev/xvdaa is still A's: EC2 would refuse it
    assert clock.monotonic() - detach_started < DELAYS.detach  # B attached while A was detaching
    assert cloud.get_instance(node).block_devices["/dev/xvdaa"] == a

    core.unpublish(a, node, None)  # waits for the detach to complete
    assert "/dev/xvdaa" not in cloud.get_instance(node).block_devices
    assert publish(c) == "/dev/xvdaa"
    devices = {
        att["Device"]: v["VolumeId"]
        for v in ec2.describe_volumes(VolumeIds=[a, b, c])["Volumes"]
        for att in v.get("Attachments", [])
    }
    assert devices == {"/dev/xvdab": b, "/dev/xvdaa": c}
