"""The port verbs relocation added: a delete guarded by the object's UID (in memory and through the official
client against the HTTP fake), and EC2's snapshot progress read through the EC2 adapter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.embedded.kube.memory import MemoryKube
from provisioner.model import VolumeSpec
from provisioner.ports.kube import Kind, KubeApi, KubeConflict
from tests.fakes.clock import FakeClock
from tests.fakes.kube import claim
from tests.fakes.kube_http import official_client


@pytest.fixture(params=["memory", "official-client"])
def api(request: pytest.FixtureRequest) -> Iterator[tuple[MemoryKube, KubeApi]]:
    kube = MemoryKube()
    if request.param == "memory":
        yield kube, kube
        return
    with official_client(kube) as client:
        yield kube, client


def test_delete_with_a_uid_deletes_only_that_object(api: tuple[MemoryKube, KubeApi]) -> None:
    kube, client = api
    first = client.create(Kind.CLAIM, claim("data", "gp3", "zonal.csi.dev"))
    client.delete(Kind.CLAIM, "data", "default", uid=first["metadata"]["uid"])
    second = client.create(Kind.CLAIM, claim("data", "gp3", "zonal.csi.dev"))
    with pytest.raises(KubeConflict):
        client.delete(Kind.CLAIM, "data", "default", uid=first["metadata"]["uid"])  # the old one's UID
    assert kube.get(Kind.CLAIM, "data", "default")["metadata"]["uid"] == second["metadata"]["uid"]
    client.delete(Kind.CLAIM, "data", "default")
    assert kube.find(Kind.CLAIM, "data", "default") is None


def test_snapshot_progress_is_read_from_ec2() -> None:
    clock = FakeClock()
    sim = Simulator(SimConfig(throttling=False, delays=Delays(volume_create=0, snapshot=10.0)), clock=clock)
    cloud = Ec2Cloud(sim.client(), sim.region)
    volume = cloud.create_volume(VolumeSpec("v", 1), sim.zones[0], "token-1")
    snap = cloud.create_snapshot(volume.volume_id, {}, "")
    assert (snap.state, snap.progress) == ("pending", 0)
    clock.advance(4.0)
    assert cloud.get_snapshot(snap.snapshot_id).progress == 40
    clock.advance(6.0)
    done = cloud.get_snapshot(snap.snapshot_id)
    assert (done.state, done.progress) == ("completed", 100)
