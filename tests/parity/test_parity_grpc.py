"""Every bad value of the parity table, sent as the sidecars send it — over gRPC on a unix socket to the
controller service, against the EC2 simulator — is INVALID_ARGUMENT naming its key, never INTERNAL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner.csi._proto import csi_pb2
from provisioner.csi.controller_service import ControllerService
from provisioner.csi.identity import IdentityService
from provisioner.csi.server import Services
from provisioner.model import GIB, ZONE_KEY
from tests.grpcutil import Stubs, channel, running_server
from tests.parity.harness import ZONE, SimHarness
from tests.parity.test_parity_table import BAD, TABLE

RWO = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stubs]:
    core = SimHarness().core()
    services = Services(
        identity=IdentityService("ebs.csi.aws.com", "0.1.0", controller=True, probe=core.probe),
        controller=ControllerService(core),
    )
    folder: Path = tmp_path_factory.mktemp("parity-grpc")
    with running_server(folder, services, mode="controller") as server, channel(server) as ch:
        yield Stubs(ch)


def create(stubs: Stubs, name: str, parameters: dict[str, str]) -> csi_pb2.CreateVolumeResponse:
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=10 * GIB),
        volume_capabilities=[RWO],
        parameters=parameters,
        accessibility_requirements=csi_pb2.TopologyRequirement(
            requisite=[csi_pb2.Topology(segments={ZONE_KEY: ZONE})]
        ),
    )
    response: csi_pb2.CreateVolumeResponse = stubs.controller.CreateVolume(request, timeout=30)
    return response


@pytest.mark.parametrize(("kind", "key"), BAD, ids=[f"{k}:{n}" for k, n in BAD])
def test_bad_value_over_grpc(stubs: Stubs, kind: str, key: str) -> None:
    row = TABLE[(kind, key)]
    assert row.bad is not None
    name = key.replace("_N", "_1")
    parameters = {**(row.extra or {}), name: row.bad}
    with pytest.raises(grpc.RpcError) as caught:
        if kind == "storage_class":
            create(stubs, f"pvc-bad-{len(name)}", parameters)
        elif kind == "volume_snapshot_class":
            source = create(stubs, "pvc-source", {}).volume.volume_id
            request = csi_pb2.CreateSnapshotRequest(
                name="snap-bad", source_volume_id=source, parameters=parameters
            )
            stubs.controller.CreateSnapshot(request, timeout=30)
        else:
            volume_id = create(stubs, "pvc-target", {}).volume.volume_id
            modify = csi_pb2.ControllerModifyVolumeRequest(volume_id=volume_id, mutable_parameters=parameters)
            stubs.controller.ControllerModifyVolume(modify, timeout=30)
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert name.lower() in (error.details() or "").lower()
