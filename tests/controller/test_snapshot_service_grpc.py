"""Snapshot, expand and modify RPCs over a real unix socket: answers and status codes."""

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
from provisioner.model import GIB
from tests.controller.conftest import DRIVER
from tests.controller.test_service_grpc import RWO, code_of, create_request
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud
from tests.grpcutil import Stubs, channel, running_server

BLOCK = csi_pb2.VolumeCapability(
    block=csi_pb2.VolumeCapability.BlockVolume(),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)
UNKNOWN_VOLUME = "vol-0000000000000dead"
UNKNOWN_SNAPSHOT = "snap-0000000000000dead"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cloud(clock: FakeClock) -> FakeCloud:
    return FakeCloud(clock=clock)


@pytest.fixture
def stubs(tmp_path: Path, cloud: FakeCloud, clock: FakeClock) -> Iterator[Stubs]:
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig())
    services = Services(
        identity=IdentityService(
            "zonal.csi.dev",
            "0.1.0",
            controller=True,
            online_expansion=core.online_expansion,
            probe=core.probe,
        ),
        controller=ControllerService(core),
    )
    with running_server(tmp_path, services, mode="controller") as server, channel(server) as ch:
        yield Stubs(ch)


def test_snapshot_restore_expand_modify(stubs: Stubs, cloud: FakeCloud, clock: FakeClock) -> None:
    ctl = stubs.controller
    volume_id = ctl.CreateVolume(create_request(), timeout=10).volume.volume_id
    snapshot = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(name="snapshot-1", source_volume_id=volume_id), timeout=10
    ).snapshot
    assert snapshot.ready_to_use and snapshot.size_bytes == 10 * GIB
    assert snapshot.source_volume_id == volume_id and snapshot.creation_time.seconds == int(clock.time())
    got = ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=snapshot.snapshot_id), timeout=10)
    assert got.snapshot == snapshot
    listed = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(source_volume_id=volume_id), timeout=10)
    assert [e.snapshot.snapshot_id for e in listed.entries] == [snapshot.snapshot_id]

    restore = create_request("restored", size_gib=20)
    restore.volume_content_source.snapshot.snapshot_id = snapshot.snapshot_id
    restored = ctl.CreateVolume(restore, timeout=10).volume
    assert restored.content_source.snapshot.snapshot_id == snapshot.snapshot_id
    assert restored.capacity_bytes == 20 * GIB

    expanded = ctl.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=restored.volume_id,
            capacity_range=csi_pb2.CapacityRange(required_bytes=30 * GIB),
            volume_capability=RWO,
        ),
        timeout=10,
    )
    assert expanded.capacity_bytes == 30 * GIB and expanded.node_expansion_required
    block = ctl.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=restored.volume_id,
            capacity_range=csi_pb2.CapacityRange(required_bytes=30 * GIB),
            volume_capability=BLOCK,
        ),
        timeout=10,
    )
    assert not block.node_expansion_required
    cloud.finish_modification(restored.volume_id)
    ctl.ControllerModifyVolume(
        csi_pb2.ControllerModifyVolumeRequest(
            volume_id=restored.volume_id, mutable_parameters={"iops": "5000"}
        ),
        timeout=10,
    )
    assert cloud.volumes[restored.volume_id].volume.iops == 5000
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id), timeout=10)
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id), timeout=10)

    caps = stubs.identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
    online = csi_pb2.PluginCapability.VolumeExpansion.ONLINE
    assert any(c.volume_expansion.type == online for c in caps.capabilities)


def test_codes(stubs: Stubs, cloud: FakeCloud) -> None:
    ctl = stubs.controller
    volume_id = ctl.CreateVolume(create_request(), timeout=10).volume.volume_id
    other_id = ctl.CreateVolume(create_request("pvc-2"), timeout=10).volume.volume_id
    ctl.CreateSnapshot(csi_pb2.CreateSnapshotRequest(name="s", source_volume_id=volume_id), timeout=10)
    cloud.max_modifications = 0

    def expect(fn: object, request: object, code: grpc.StatusCode) -> str:
        with pytest.raises(grpc.RpcError) as info:
            fn(request, timeout=10)  # type: ignore[operator]
        assert code_of(info.value) == code, info.value
        details = info.value.details()
        assert isinstance(details, str)
        return details

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    expect(ctl.CreateSnapshot, csi_pb2.CreateSnapshotRequest(source_volume_id=volume_id), invalid)
    expect(ctl.CreateSnapshot, csi_pb2.CreateSnapshotRequest(name="s"), invalid)
    expect(
        ctl.CreateSnapshot,
        csi_pb2.CreateSnapshotRequest(name="s", source_volume_id=other_id),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    expect(
        ctl.CreateSnapshot,
        csi_pb2.CreateSnapshotRequest(name="t", source_volume_id=UNKNOWN_VOLUME),
        grpc.StatusCode.NOT_FOUND,
    )
    expect(ctl.DeleteSnapshot, csi_pb2.DeleteSnapshotRequest(), invalid)
    expect(
        ctl.GetSnapshot, csi_pb2.GetSnapshotRequest(snapshot_id=UNKNOWN_SNAPSHOT), grpc.StatusCode.NOT_FOUND
    )
    expect(ctl.ListSnapshots, csi_pb2.ListSnapshotsRequest(starting_token="nope"), grpc.StatusCode.ABORTED)
    assert not ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=UNKNOWN_SNAPSHOT)).entries
    restore = create_request("restored")
    restore.volume_content_source.snapshot.snapshot_id = UNKNOWN_SNAPSHOT
    expect(ctl.CreateVolume, restore, grpc.StatusCode.NOT_FOUND)
    clone = create_request("clone", zone="us-east-1a")
    del clone.accessibility_requirements.requisite[1]
    clone.volume_content_source.volume.volume_id = volume_id  # the source is in us-east-1b
    assert "us-east-1b" in expect(ctl.CreateVolume, clone, grpc.StatusCode.RESOURCE_EXHAUSTED)

    def expand(volume: str, gib: int) -> csi_pb2.ControllerExpandVolumeRequest:
        return csi_pb2.ControllerExpandVolumeRequest(
            volume_id=volume, capacity_range=csi_pb2.CapacityRange(required_bytes=gib * GIB)
        )

    expect(ctl.ControllerExpandVolume, csi_pb2.ControllerExpandVolumeRequest(volume_id=volume_id), invalid)
    expect(ctl.ControllerExpandVolume, expand(UNKNOWN_VOLUME, 20), grpc.StatusCode.NOT_FOUND)
    expect(ctl.ControllerExpandVolume, expand(volume_id, 100_000), grpc.StatusCode.OUT_OF_RANGE)
    limited = expand(volume_id, 20)
    assert "retry" in expect(ctl.ControllerExpandVolume, limited, grpc.StatusCode.RESOURCE_EXHAUSTED)

    def modify(volume: str, **params: str) -> csi_pb2.ControllerModifyVolumeRequest:
        return csi_pb2.ControllerModifyVolumeRequest(volume_id=volume, mutable_parameters=params)

    expect(ctl.ControllerModifyVolume, modify(""), invalid)
    ctl.ControllerModifyVolume(modify(volume_id), timeout=10)  # CSI: no mutable_parameters → OK, no-op
    expect(ctl.ControllerModifyVolume, modify(volume_id, color="blue"), invalid)
    expect(ctl.ControllerModifyVolume, modify(UNKNOWN_VOLUME), grpc.StatusCode.NOT_FOUND)
    expect(ctl.ControllerModifyVolume, modify(UNKNOWN_VOLUME, iops="4000"), grpc.StatusCode.NOT_FOUND)
    expect(ctl.ControllerModifyVolume, modify(volume_id, iops="4000"), grpc.StatusCode.RESOURCE_EXHAUSTED)
