"""The Node service over a real unix socket: wire conversion and status codes, with the fake mounter;
and (root only) the whole stage → publish → write → unpublish → unstage path on a loop device."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from provisioner.csi._proto import csi_pb2
from provisioner.csi.identity import IdentityService
from provisioner.csi.node_service import NodeService
from provisioner.csi.server import Services
from provisioner.embedded.loopback import LoopBacker
from provisioner.model import EBS_ZONE_KEY, GIB, ZONE_KEY
from provisioner.mount.devices import SysfsDeviceResolver
from provisioner.mount.linux import LinuxMounter, parse_mountinfo, run
from provisioner.node import NodeConfig, NodeCore
from provisioner.ports.clock import SystemClock
from provisioner.ports.node import Mounter, NodeMetadata
from tests.fakes.clock import FakeClock
from tests.fakes.mounter import FakeMounter, FakeResolver
from tests.grpcutil import Stubs, channel, running_server

VOL = "vol-0123456789abcdef0"
MD = NodeMetadata(instance_id="i-0abc", zone="us-east-1a", instance_type="m5.large", block_device_count=1)
Cap = csi_pb2.VolumeCapability
RW = Cap.AccessMode(mode=Cap.AccessMode.SINGLE_NODE_WRITER)


def mount_cap(fs_type: str = "") -> csi_pb2.VolumeCapability:
    return Cap(mount=Cap.MountVolume(fs_type=fs_type), access_mode=RW)


def block_cap() -> csi_pb2.VolumeCapability:
    return Cap(block=Cap.BlockVolume(), access_mode=RW)


def _stubs(folder: Path, core: NodeCore) -> Iterator[Stubs]:
    services = Services(
        identity=IdentityService("zonal.csi.dev", "0.1.0", controller=False), node=NodeService(core)
    )
    with running_server(folder, services, mode="node") as server, channel(server) as ch:
        yield Stubs(ch)


@pytest.fixture
def fake() -> FakeMounter:
    m = FakeMounter()
    m.add_device("/dev/nvme1n1", 10 * GIB)
    return m


@pytest.fixture
def stubs(tmp_path: Path, fake: FakeMounter) -> Iterator[Stubs]:
    core = NodeCore(fake, FakeResolver({VOL: "/dev/nvme1n1"}, fake), MD, NodeConfig(), FakeClock())
    yield from _stubs(tmp_path, core)


@pytest.fixture(scope="module")
def shared_stubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stubs]:
    """One server for the many bad-input cases (they never change its state)."""
    core = NodeCore(FakeMounter(), SysfsDeviceResolver(), MD, NodeConfig(), FakeClock())
    yield from _stubs(tmp_path_factory.mktemp("grpc"), core)


def code_of(call: Callable[[Any], object], request: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call(request)
    code: grpc.StatusCode = e.value.code()
    return code


def test_get_info_and_capabilities(stubs: Stubs) -> None:
    info = stubs.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
    assert info.node_id == "i-0abc" and info.max_volumes_per_node == 26
    assert dict(info.accessible_topology.segments) == {ZONE_KEY: "us-east-1a", EBS_ZONE_KEY: "us-east-1a"}
    caps = stubs.node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest())
    rpc = csi_pb2.NodeServiceCapability.RPC
    assert {c.rpc.type for c in caps.capabilities} == {
        rpc.STAGE_UNSTAGE_VOLUME,
        rpc.GET_VOLUME_STATS,
        rpc.EXPAND_VOLUME,
    }


def test_get_info_is_built_once_and_answers_the_same(
    tmp_path: Path, fake: FakeMounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = NodeCore(fake, FakeResolver({}), MD, NodeConfig(), FakeClock())
    calls: list[int] = []
    real = core.get_info

    def counting() -> Any:
        calls.append(1)
        return real()

    monkeypatch.setattr(core, "get_info", counting)
    for stubs in _stubs(tmp_path, core):
        answers = [stubs.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()) for _ in range(3)]
        assert answers[0] == answers[1] == answers[2]
        assert answers[0].node_id == "i-0abc"
    assert len(calls) == 1


def test_lifecycle_and_idempotency_over_the_wire(stubs: Stubs, fake: FakeMounter) -> None:
    stage = csi_pb2.NodeStageVolumeRequest(
        volume_id=VOL, staging_target_path="/s", volume_capability=mount_cap()
    )
    stubs.node.NodeStageVolume(stage)
    stubs.node.NodeStageVolume(stage)
    publish = csi_pb2.NodePublishVolumeRequest(
        volume_id=VOL, staging_target_path="/s", target_path="/t", volume_capability=mount_cap()
    )
    stubs.node.NodePublishVolume(publish)
    stubs.node.NodePublishVolume(publish)
    ro = csi_pb2.NodePublishVolumeRequest()
    ro.CopyFrom(publish)
    ro.readonly = True
    assert code_of(stubs.node.NodePublishVolume, ro) == grpc.StatusCode.ALREADY_EXISTS
    stats = stubs.node.NodeGetVolumeStats(csi_pb2.NodeGetVolumeStatsRequest(volume_id=VOL, volume_path="/t"))
    units = {u.unit: u for u in stats.usage}
    assert (
        units[csi_pb2.VolumeUsage.BYTES].total == 10 * GIB and units[csi_pb2.VolumeUsage.INODES].total == 1000
    )
    fake.devices["/dev/nvme1n1"].size = 12 * GIB
    expanded = stubs.node.NodeExpandVolume(csi_pb2.NodeExpandVolumeRequest(volume_id=VOL, volume_path="/t"))
    assert expanded.capacity_bytes == 12 * GIB
    for _ in range(2):
        stubs.node.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(volume_id=VOL, target_path="/t"))
        stubs.node.NodeUnstageVolume(
            csi_pb2.NodeUnstageVolumeRequest(volume_id=VOL, staging_target_path="/s")
        )
    assert fake.table == []


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        (
            "NodeStageVolume",
            csi_pb2.NodeStageVolumeRequest(staging_target_path="/s", volume_capability=mount_cap()),
        ),
        ("NodeStageVolume", csi_pb2.NodeStageVolumeRequest(volume_id=VOL, volume_capability=mount_cap())),
        ("NodeStageVolume", csi_pb2.NodeStageVolumeRequest(volume_id=VOL, staging_target_path="/s")),
        (
            "NodeStageVolume",
            csi_pb2.NodeStageVolumeRequest(
                volume_id=VOL, staging_target_path="s", volume_capability=mount_cap()
            ),
        ),
        (
            "NodeStageVolume",
            csi_pb2.NodeStageVolumeRequest(
                volume_id=VOL, staging_target_path="/s", volume_capability=mount_cap("zfs")
            ),
        ),
        (
            "NodeStageVolume",
            csi_pb2.NodeStageVolumeRequest(
                volume_id=VOL,
                staging_target_path="/s",
                volume_capability=mount_cap(),
                publish_context={"devicePath": "/etc/passwd"},
            ),
        ),
        ("NodeUnstageVolume", csi_pb2.NodeUnstageVolumeRequest(volume_id=VOL)),
        ("NodePublishVolume", csi_pb2.NodePublishVolumeRequest(volume_id=VOL, staging_target_path="/s")),
        *(
            (
                "NodePublishVolume",
                csi_pb2.NodePublishVolumeRequest(
                    volume_id=VOL, staging_target_path=staging, target_path=target, volume_capability=cap
                ),
            )
            for staging, target in (("/s", "/s/"), ("/s", "/s/t"), ("/t/s", "/t"))
            for cap in (mount_cap(), block_cap())
        ),
        ("NodeUnpublishVolume", csi_pb2.NodeUnpublishVolumeRequest(target_path="/t")),
        ("NodeGetVolumeStats", csi_pb2.NodeGetVolumeStatsRequest(volume_id=VOL)),
        ("NodeExpandVolume", csi_pb2.NodeExpandVolumeRequest(volume_path="/t")),
    ],
)
def test_bad_input_is_invalid_argument(shared_stubs: Stubs, method: str, request_: object) -> None:
    assert code_of(getattr(shared_stubs.node, method), request_) == grpc.StatusCode.INVALID_ARGUMENT


def test_publish_without_a_staging_path_is_failed_precondition(shared_stubs: Stubs) -> None:
    # CSI NodePublishVolume: "Staging target path not set" → FAILED_PRECONDITION (the field is optional
    # in the message, required only because this plugin advertises STAGE_UNSTAGE_VOLUME).
    request = csi_pb2.NodePublishVolumeRequest(volume_id=VOL, target_path="/t", volume_capability=mount_cap())
    assert code_of(shared_stubs.node.NodePublishVolume, request) == grpc.StatusCode.FAILED_PRECONDITION


def test_unknown_volume_and_path_are_not_found(stubs: Stubs) -> None:
    stage = csi_pb2.NodeStageVolumeRequest(
        volume_id="vol-0ffff", staging_target_path="/s", volume_capability=mount_cap()
    )
    assert code_of(stubs.node.NodeStageVolume, stage) == grpc.StatusCode.NOT_FOUND
    stats = csi_pb2.NodeGetVolumeStatsRequest(volume_id=VOL, volume_path="/missing")
    assert code_of(stubs.node.NodeGetVolumeStats, stats) == grpc.StatusCode.NOT_FOUND


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a loop device, runs mkfs and mount")
def test_real_loop_device_over_the_wire(tmp_path: Path) -> None:
    backer = LoopBacker(tmp_path / "loops")
    volume_id = f"vol-{uuid.uuid4().hex[:17]}"
    mounter: Mounter = LinuxMounter()
    core = NodeCore(mounter, SysfsDeviceResolver(), MD, NodeConfig(), SystemClock(), logging.getLogger("t"))
    staging, target = str(tmp_path / "staging"), str(tmp_path / "pod" / "mount")
    try:
        device = backer.back(volume_id, 64 * 1024**2)
        for stubs in _stubs(tmp_path, core):
            ctx = {"devicePath": device}
            stubs.node.NodeStageVolume(
                csi_pb2.NodeStageVolumeRequest(
                    volume_id=volume_id,
                    staging_target_path=staging,
                    volume_capability=mount_cap(),
                    publish_context=ctx,
                )
            )
            stubs.node.NodePublishVolume(
                csi_pb2.NodePublishVolumeRequest(
                    volume_id=volume_id,
                    staging_target_path=staging,
                    target_path=target,
                    volume_capability=mount_cap(),
                )
            )
            Path(target, "file").write_text("over grpc")
            assert Path(staging, "file").read_text() == "over grpc"
            stubs.node.NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target)
            )
            stubs.node.NodeUnstageVolume(
                csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=staging)
            )
        assert not os.path.exists(staging) and not os.path.exists(target)
    finally:
        for m in reversed(parse_mountinfo(Path("/proc/self/mountinfo").read_text())):
            if m.target.startswith(str(tmp_path) + "/"):
                run(["umount", "-l", m.target], 30)
        backer.release(volume_id)
    assert backer.devices(volume_id) == []
