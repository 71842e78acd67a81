"""The Controller servicer over a real unix socket, against the core and the FakeCloud."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner.config import ControllerConfig
from provisioner.controller import ControllerCore
from provisioner.csi._proto import csi_pb2
from provisioner.csi.controller_service import ControllerService
from provisioner.csi.identity import IdentityService
from provisioner.csi.server import Services
from provisioner.model import GIB, ZONE_KEY
from tests.controller.conftest import DRIVER
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud
from tests.grpcutil import Stubs, channel, running_server

NODE = "i-0123456789abcdef0"
RWO = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


@pytest.fixture
def cloud() -> FakeCloud:
    cloud = FakeCloud()
    cloud.add_instance(NODE, "us-east-1b")
    return cloud


@pytest.fixture
def stubs(tmp_path: Path, cloud: FakeCloud) -> Iterator[Stubs]:
    core = ControllerCore(cloud, FakeClock(), DRIVER, ControllerConfig())
    services = Services(
        identity=IdentityService("zonal.csi.dev", "0.1.0", controller=True, probe=core.probe),
        controller=ControllerService(core),
    )
    with running_server(tmp_path, services, mode="controller") as server, channel(server) as ch:
        yield Stubs(ch)


def create_request(
    name: str = "pvc-1", zone: str = "us-east-1b", size_gib: int = 10
) -> csi_pb2.CreateVolumeRequest:
    return csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=size_gib * GIB),
        volume_capabilities=[RWO],
        parameters={"type": "gp3"},
        accessibility_requirements=csi_pb2.TopologyRequirement(
            requisite=[csi_pb2.Topology(segments={ZONE_KEY: z}) for z in ("us-east-1a", zone)],
            preferred=[csi_pb2.Topology(segments={ZONE_KEY: zone})],
        ),
    )


def code_of(call: object) -> grpc.StatusCode:
    assert isinstance(call, grpc.RpcError)
    code = call.code()
    assert isinstance(code, grpc.StatusCode)
    return code


def test_create_publish_unpublish_delete(stubs: Stubs) -> None:
    created = stubs.controller.CreateVolume(create_request(), timeout=10).volume
    assert [dict(t.segments) for t in created.accessible_topology] == [{ZONE_KEY: "us-east-1b"}]
    assert created.capacity_bytes == 10 * GIB
    published = stubs.controller.ControllerPublishVolume(
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=created.volume_id, node_id=NODE, volume_capability=RWO
        ),
        timeout=10,
    )
    assert dict(published.publish_context) == {"devicePath": "/dev/xvdaa", "volumeSizeBytes": str(10 * GIB)}
    got = stubs.controller.ControllerGetVolume(
        csi_pb2.ControllerGetVolumeRequest(volume_id=created.volume_id)
    )
    assert list(got.status.published_node_ids) == [NODE] and not got.status.volume_condition.abnormal
    stubs.controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=created.volume_id, node_id=NODE), timeout=10
    )
    stubs.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=created.volume_id), timeout=10)
    stubs.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=created.volume_id), timeout=10)
    assert stubs.identity.Probe(csi_pb2.ProbeRequest()).ready.value


def test_error_codes(stubs: Stubs) -> None:
    ctl = stubs.controller
    cases: list[tuple[object, grpc.StatusCode]] = []
    ctl.CreateVolume(create_request(), timeout=10)

    def expect(fn: object, request: object, code: grpc.StatusCode) -> None:
        with pytest.raises(grpc.RpcError) as info:
            fn(request, timeout=10)  # type: ignore[operator]
        assert code_of(info.value) == code, info.value
        cases.append((request, code))

    expect(
        ctl.CreateVolume,
        csi_pb2.CreateVolumeRequest(volume_capabilities=[RWO]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    expect(ctl.CreateVolume, create_request(size_gib=20), grpc.StatusCode.ALREADY_EXISTS)
    elsewhere = create_request("pvc-2", zone="eu-west-1a")
    del elsewhere.accessibility_requirements.requisite[0]  # only eu-west-1a is left
    expect(ctl.CreateVolume, elsewhere, grpc.StatusCode.RESOURCE_EXHAUSTED)
    big = create_request("pvc-3")
    big.capacity_range.limit_bytes = 5 * GIB
    expect(ctl.CreateVolume, big, grpc.StatusCode.OUT_OF_RANGE)
    expect(ctl.DeleteVolume, csi_pb2.DeleteVolumeRequest(), grpc.StatusCode.INVALID_ARGUMENT)
    expect(
        ctl.ControllerPublishVolume,
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id="vol-0000000000000dead", node_id=NODE, volume_capability=RWO
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    expect(
        ctl.ControllerPublishVolume,
        csi_pb2.ControllerPublishVolumeRequest(volume_id="vol-0000000000000dead", node_id=NODE),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    expect(
        ctl.ValidateVolumeCapabilities,
        csi_pb2.ValidateVolumeCapabilitiesRequest(
            volume_id="vol-0000000000000dead", volume_capabilities=[RWO]
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    expect(ctl.ListVolumes, csi_pb2.ListVolumesRequest(starting_token="nope"), grpc.StatusCode.ABORTED)
    expect(ctl.GetCapacity, csi_pb2.GetCapacityRequest(), grpc.StatusCode.UNIMPLEMENTED)
    expect(ctl.CreateSnapshot, csi_pb2.CreateSnapshotRequest(), grpc.StatusCode.INVALID_ARGUMENT)
    assert len(cases) == 11


def test_list_validate_and_capabilities(stubs: Stubs) -> None:
    ids = sorted(
        stubs.controller.CreateVolume(create_request(f"pvc-{i}"), timeout=10).volume.volume_id
        for i in range(3)
    )
    first = stubs.controller.ListVolumes(csi_pb2.ListVolumesRequest(max_entries=2))
    rest = stubs.controller.ListVolumes(csi_pb2.ListVolumesRequest(starting_token=first.next_token))
    assert [e.volume.volume_id for e in (*first.entries, *rest.entries)] == ids and not rest.next_token
    validated = stubs.controller.ValidateVolumeCapabilities(
        csi_pb2.ValidateVolumeCapabilitiesRequest(volume_id=ids[0], volume_capabilities=[RWO])
    )
    assert list(validated.confirmed.volume_capabilities) == [RWO]
    caps = stubs.controller.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    names = {csi_pb2.ControllerServiceCapability.RPC.Type.Name(c.rpc.type) for c in caps.capabilities}
    assert names == {
        "CREATE_DELETE_VOLUME",
        "PUBLISH_UNPUBLISH_VOLUME",
        "LIST_VOLUMES",
        "LIST_VOLUMES_PUBLISHED_NODES",
        "GET_VOLUME",
        "VOLUME_CONDITION",
        "CLONE_VOLUME",
        "CREATE_DELETE_SNAPSHOT",
        "LIST_SNAPSHOTS",
        "GET_SNAPSHOT",
        "EXPAND_VOLUME",
        "MODIFY_VOLUME",
    }
