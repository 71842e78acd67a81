"""CreateVolume's idempotency rests on EC2's ClientToken, here the simulator's (moto ignores tokens):
retries and restarted controllers get the first volume with no lookup by name, a name reused after
its deletion gets a new volume, and a retry into another zone never reports a zone it did not get."""

from __future__ import annotations

import pytest

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.errors import AlreadyExists, DeadlineExceeded
from provisioner.model import GIB, TAG_VOLUME_NAME, ZONE_KEY, CapacityRange, TopologyRequirement
from provisioner.ports.clock import Deadline
from provisioner.ports.csi import CreatedVolume
from tests.aws.conftest import Recorder
from tests.controller.helpers import MOUNT_RWO
from tests.fakes.clock import FakeClock
from tests.scale.conftest import ZONE_A, ZONE_B, calls, zonal_client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(SimConfig(delays=Delays(volume_create=3.0), throttling=False), clock=clock)


def _controller(sim: Simulator, clock: FakeClock, recorder: Recorder | None = None) -> ControllerCore:
    """A freshly started controller process: no memory of earlier calls."""
    client = zonal_client(sim)
    if recorder is not None:
        client.meta.events.register("provide-client-params.ec2.*", recorder)
    return ControllerCore(Ec2Cloud(client, sim.region), clock, DriverConfig(), ControllerConfig())


def _create(
    core: ControllerCore, clock: FakeClock, zone: str, gib: int = 1, seconds: float = 60.0
) -> CreatedVolume:
    requirement = TopologyRequirement(requisite=({ZONE_KEY: zone},), preferred=({ZONE_KEY: zone},))
    deadline = Deadline(clock, seconds)
    return core.create_volume(
        "pvc-1", CapacityRange(gib * GIB), (MOUNT_RWO,), {}, {}, requirement, None, deadline
    )


def _live(sim: Simulator) -> list[tuple[str, str]]:
    return [
        (v["VolumeId"], v["AvailabilityZone"])
        for v in sim.client().describe_volumes()["Volumes"]
        if v["State"] not in ("deleting", "deleted")
        and {t["Key"]: t["Value"] for t in v.get("Tags", [])}.get(TAG_VOLUME_NAME) == "pvc-1"
    ]


def test_a_restarted_controller_gets_the_first_volume_with_no_lookup(
    sim: Simulator, clock: FakeClock
) -> None:
    sent = Recorder()
    with pytest.raises(DeadlineExceeded):
        _create(_controller(sim, clock, sent), clock, ZONE_A, seconds=1.0)  # still creating: gives up
    again = _create(_controller(sim, clock, sent), clock, ZONE_A)  # the sidecar retries on a new process
    assert _live(sim) == [(again.volume_id, ZONE_A)]
    assert calls(sim, "CreateVolume") == 2
    tokens = {params["ClientToken"] for params in sent.of("CreateVolume")}
    assert len(tokens) == 1
    # every DescribeVolumes was a wait on the volume's id, none a lookup by name
    described = sent.of("DescribeVolumes")
    assert described
    assert not [f for params in described for f in params.get("Filters", []) if f["Name"].startswith("tag:")]


def test_a_retry_that_chose_another_zone_gets_the_first_volume_only_if_allowed(
    sim: Simulator, clock: FakeClock
) -> None:
    first = _create(_controller(sim, clock), clock, ZONE_A)
    # EC2 leaves the zone out of the token comparison: the volume is in us-east-1a, not where asked
    with pytest.raises(AlreadyExists, match=rf"zone {ZONE_A}, outside the requested topology \[{ZONE_B}\]"):
        _create(_controller(sim, clock), clock, ZONE_B)
    assert _live(sim) == [(first.volume_id, ZONE_A)]


def test_the_same_name_with_another_size_is_judged_through_the_lookup(
    sim: Simulator, clock: FakeClock
) -> None:
    first = _create(_controller(sim, clock), clock, ZONE_A, gib=1)
    with pytest.raises(AlreadyExists, match="incompatible size 1 GiB"):
        _create(_controller(sim, clock), clock, ZONE_A, gib=2)  # IdempotentParameterMismatch → lookup
    assert _live(sim) == [(first.volume_id, ZONE_A)]


def test_a_name_reused_after_deletion_gets_a_new_volume_even_after_a_restart(
    sim: Simulator, clock: FakeClock
) -> None:
    core = _controller(sim, clock)
    first = _create(core, clock, ZONE_A)
    core.delete_volume(first.volume_id)
    second = _create(_controller(sim, clock), clock, ZONE_A)  # the old token answers a deleted volume
    assert second.volume_id != first.volume_id
    third = _create(_controller(sim, clock), clock, ZONE_A)  # and a later retry still finds the second
    assert third.volume_id == second.volume_id
    assert _live(sim) == [(second.volume_id, ZONE_A)]
