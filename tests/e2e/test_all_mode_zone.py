"""``zonal all`` (one process that is controller and node): a CreateVolume without accessibility
requirements lands in the node's own zone, so ControllerPublish to that node always works; with
``--default-zone`` that zone wins. Real processes, real gRPC, the embedded cloud."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.model import GIB, ZONE_KEY
from tests.e2e.procs import running

pytestmark = pytest.mark.e2e

RWO = csi_pb2.VolumeCapability(
    block=csi_pb2.VolumeCapability.BlockVolume(),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)
NAMES = [f"pvc-all-mode-{i}" for i in range(9)]  # a hash of these names spreads over all three zones


def _zones_of_new_volumes(tmp_path: Path, *flags: str) -> tuple[set[str], str, grpc.StatusCode | None]:
    args = ["all", "--cloud", "embedded", "--embedded-fast", "--zone", "us-east-1c", *flags]
    args += ["--embedded-state-dir", str(tmp_path / "state")]
    with running(args, tmp_path / "csi.sock", tmp_path / "zonal.log") as server:
        with grpc.insecure_channel(server.endpoint) as ch:
            ctl, node = csi_pb2_grpc.ControllerStub(ch), csi_pb2_grpc.NodeStub(ch)
            node_id = node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=30).node_id
            zones: set[str] = set()
            first = ""
            for name in NAMES:
                volume = ctl.CreateVolume(
                    csi_pb2.CreateVolumeRequest(
                        name=name,
                        volume_capabilities=[RWO],
                        capacity_range=csi_pb2.CapacityRange(required_bytes=GIB),
                    ),
                    timeout=60,
                ).volume
                first = first or volume.volume_id
                zones |= {t.segments[ZONE_KEY] for t in volume.accessible_topology}
            code = None
            try:
                ctl.ControllerPublishVolume(
                    csi_pb2.ControllerPublishVolumeRequest(
                        volume_id=first, node_id=node_id, volume_capability=RWO
                    ),
                    timeout=60,
                )
                ctl.ControllerUnpublishVolume(
                    csi_pb2.ControllerUnpublishVolumeRequest(volume_id=first, node_id=node_id), timeout=60
                )
            except grpc.RpcError as e:
                code = e.code()
            return zones, first, code


def test_all_mode_creates_in_the_nodes_zone(tmp_path: Path) -> None:
    zones, _, publish_error = _zones_of_new_volumes(tmp_path)
    assert zones == {"us-east-1c"}
    assert publish_error is None


def test_all_mode_default_zone_flag_wins(tmp_path: Path) -> None:
    zones, _, publish_error = _zones_of_new_volumes(tmp_path, "--default-zone", "us-east-1a")
    assert zones == {"us-east-1a"}
    assert publish_error == grpc.StatusCode.FAILED_PRECONDITION  # EBS attaches only within its zone
