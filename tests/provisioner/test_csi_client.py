"""The gRPC CSI client over a real unix socket: messages in model terms, status codes → domain errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.client import GrpcCsiClient, error_for
from provisioner.csi.convert import requirement_from_pb, segment_to_pb
from provisioner.csi.server import Services
from provisioner.errors import (
    DeadlineExceeded,
    InvalidArgument,
    OperationInProgress,
    ResourceExhausted,
    Unimplemented,
    ZonalError,
)
from provisioner.model import AccessMode, AccessType, CapacityRange, TopologyRequirement, VolumeCapability
from provisioner.ports.csi import Cancelled, ControllerCapability, CreateVolumeRequest, PluginCapability
from provisioner.provisioning.loop import discover_driver
from tests.grpcutil import running_server

ZONE = "topology.kubernetes.io/zone"


class Driver(csi_pb2_grpc.IdentityServicer, csi_pb2_grpc.ControllerServicer):
    def __init__(self) -> None:
        self.errors: list[ZonalError] = []
        self.requests: list[csi_pb2.CreateVolumeRequest] = []
        self.deleted: list[str] = []

    def Probe(self, request: Any, context: Any) -> csi_pb2.ProbeResponse:
        return csi_pb2.ProbeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name="zonal.csi.dev", vendor_version="9.9")

    def GetPluginCapabilities(self, request: Any, context: Any) -> csi_pb2.GetPluginCapabilitiesResponse:
        svc = csi_pb2.PluginCapability.Service
        return csi_pb2.GetPluginCapabilitiesResponse(
            capabilities=[
                csi_pb2.PluginCapability(service=svc(type=svc.CONTROLLER_SERVICE)),
                csi_pb2.PluginCapability(service=svc(type=svc.VOLUME_ACCESSIBILITY_CONSTRAINTS)),
            ]
        )

    def ControllerGetCapabilities(
        self, request: Any, context: Any
    ) -> csi_pb2.ControllerGetCapabilitiesResponse:
        rpc = csi_pb2.ControllerServiceCapability.RPC
        return csi_pb2.ControllerGetCapabilitiesResponse(
            capabilities=[csi_pb2.ControllerServiceCapability(rpc=rpc(type=rpc.CREATE_DELETE_VOLUME))]
        )

    def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: Any
    ) -> csi_pb2.CreateVolumeResponse:
        self.requests.append(request)
        if self.errors:
            raise self.errors.pop(0)
        zone = requirement_from_pb(request.accessibility_requirements).preferred[0][ZONE]
        return csi_pb2.CreateVolumeResponse(
            volume=csi_pb2.Volume(
                volume_id="vol-1",
                capacity_bytes=request.capacity_range.required_bytes,
                volume_context={"a": "b"},
                accessible_topology=[segment_to_pb({ZONE: zone})],
            )
        )

    def DeleteVolume(
        self, request: csi_pb2.DeleteVolumeRequest, context: Any
    ) -> csi_pb2.DeleteVolumeResponse:
        self.deleted.append(request.volume_id)
        return csi_pb2.DeleteVolumeResponse()


@pytest.fixture
def driver_and_client(tmp_path: Path) -> Iterator[tuple[Driver, GrpcCsiClient]]:
    driver = Driver()  # type: ignore[abstract]
    with running_server(tmp_path, Services(identity=driver, controller=driver), mode="controller") as server:
        client = GrpcCsiClient(f"unix://{tmp_path / 'csi.sock'}", timeout=5)
        try:
            yield driver, client
        finally:
            client.close()
        assert server.address


REQUEST = CreateVolumeRequest(
    name="pvc-1",
    capacity=CapacityRange(required_bytes=4 * 1024**3),
    capabilities=(VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, fs_type="ext4"),),
    parameters={"type": "gp3"},
    requirement=TopologyRequirement(
        requisite=({ZONE: "b"}, {ZONE: "c"}), preferred=({ZONE: "c"}, {ZONE: "b"})
    ),
)


def test_identity_and_capabilities(driver_and_client: tuple[Driver, GrpcCsiClient]) -> None:
    import threading

    from provisioner.ports.clock import SystemClock

    _, client = driver_and_client
    facts = discover_driver(client, SystemClock(), threading.Event())
    assert facts.name == "zonal.csi.dev"
    assert facts.plugin_caps == {
        PluginCapability.CONTROLLER_SERVICE,
        PluginCapability.VOLUME_ACCESSIBILITY_CONSTRAINTS,
    }
    assert facts.controller_caps == {ControllerCapability.CREATE_DELETE_VOLUME}


def test_create_and_delete_round_trip(driver_and_client: tuple[Driver, GrpcCsiClient]) -> None:
    driver, client = driver_and_client
    created = client.create_volume(REQUEST)
    assert created.volume_id == "vol-1"
    assert created.capacity_bytes == 4 * 1024**3
    assert created.accessible_topology == ({ZONE: "c"},)
    assert dict(created.volume_context) == {"a": "b"}
    sent = driver.requests[0]
    assert sent.name == "pvc-1" and dict(sent.parameters) == {"type": "gp3"}
    assert sent.volume_capabilities[0].mount.fs_type == "ext4"
    assert requirement_from_pb(sent.accessibility_requirements) == REQUEST.requirement
    client.delete_volume("vol-1", {"s": "t"})
    assert driver.deleted == ["vol-1"]


@pytest.mark.parametrize(
    "error",
    [OperationInProgress("busy"), ResourceExhausted("full"), InvalidArgument("bad"), Unimplemented("no")],
)
def test_status_codes_become_domain_errors(
    driver_and_client: tuple[Driver, GrpcCsiClient], error: ZonalError
) -> None:
    driver, client = driver_and_client
    driver.errors.append(error)
    with pytest.raises(type(error), match=error.message):
        client.create_volume(REQUEST)


class _Rpc(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "x"


def test_transport_codes_map_for_retries() -> None:
    assert isinstance(error_for(_Rpc(grpc.StatusCode.DEADLINE_EXCEEDED)), DeadlineExceeded)
    assert isinstance(error_for(_Rpc(grpc.StatusCode.CANCELLED)), Cancelled)
    assert type(error_for(_Rpc(grpc.StatusCode.DATA_LOSS))).__name__ == "Internal"
