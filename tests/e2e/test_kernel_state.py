"""Embedded mode owns its kernel state (issue #13), proven with real processes, loop devices and mounts.

``zonal all --cloud embedded`` stopped by SIGTERM, SIGINT or SIGHUP while a volume is staged and
published releases both mounts, the loop device, the by-id link and its folder; after ``kill -9`` the
next start releases exactly what its dead predecessor recorded, and says so. ``zonal node`` (production)
leaves the kubelet's mounts alone when it stops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.embedded.ledger import loop_backing_files
from provisioner.embedded.loopback import LoopBacker
from provisioner.mount.devices import NVME_BY_ID_PREFIX
from provisioner.mount.linux import parse_mountinfo, run
from tests.e2e.procs import Server, running

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices, mkfs and mount"),
]

CAP = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)
ZONE = csi_pb2.Topology(segments={"topology.kubernetes.io/zone": "us-east-1a"})
EMBEDDED = ("all", "--cloud", "embedded", "--embedded-fast", "--zone", "us-east-1a", "-v")


def mounts_below(folder: Path) -> list[str]:
    prefix = str(folder) + "/"
    return [
        m.target
        for m in parse_mountinfo(Path("/proc/self/mountinfo").read_text())
        if m.target.startswith(prefix)
    ]


def in_use(server: Server, tmp_path: Path) -> tuple[str, Path]:
    """Create, attach, stage and publish one volume through the server; its id and its state folder."""
    with grpc.insecure_channel(f"unix:{server.socket}") as channel:
        ctl, node = csi_pb2_grpc.ControllerStub(channel), csi_pb2_grpc.NodeStub(channel)
        node_id = node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=30).node_id
        created = ctl.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name=f"pvc-{uuid.uuid4()}",
                capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 30),
                volume_capabilities=[CAP],
                accessibility_requirements=csi_pb2.TopologyRequirement(requisite=[ZONE], preferred=[ZONE]),
            ),
            timeout=60,
        )
        volume_id = created.volume.volume_id
        published = ctl.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume_id, node_id=node_id, volume_capability=CAP
            ),
            timeout=60,
        )
        stage, target = tmp_path / "stage", tmp_path / "pod" / "mnt"
        node.NodeStageVolume(
            csi_pb2.NodeStageVolumeRequest(
                volume_id=volume_id,
                publish_context=published.publish_context,
                staging_target_path=str(stage),
                volume_capability=CAP,
            ),
            timeout=120,
        )
        node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=volume_id,
                staging_target_path=str(stage),
                target_path=str(target),
                volume_capability=CAP,
            ),
            timeout=60,
        )
    backing = [f for f in loop_backing_files().values() if f.endswith("/" + volume_id)]
    assert len(backing) == 1, backing
    return volume_id, Path(backing[0]).parent


def held(volume_id: str, tmp_path: Path, state: Path) -> dict[str, object]:
    """What of this volume's kernel state is still there."""
    link = Path("/dev") / (NVME_BY_ID_PREFIX + volume_id.replace("-", ""))
    return {
        "mounts": mounts_below(tmp_path),
        "loops": [d for d, f in loop_backing_files().items() if f.startswith(str(state) + "/")],
        "link": link.is_symlink(),
        "folder": state.exists(),
    }


NOTHING = {"mounts": [], "loops": [], "link": False, "folder": False}


@pytest.fixture
def runtime_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture(autouse=True)
def _release_what_a_failed_test_left(tmp_path: Path) -> Iterator[None]:
    yield
    for target in reversed(mounts_below(tmp_path)):
        run(["umount", "-l", target], 30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signalled_stop_releases_mounts_loops_links_and_folders(
    tmp_path: Path, runtime_dir: Path, sig: signal.Signals
) -> None:
    env = {"ZONAL_RUNTIME_DIR": str(runtime_dir)}
    with running(EMBEDDED, tmp_path / "csi.sock", tmp_path / "zonal.log", env=env) as server:
        volume_id, state = in_use(server, tmp_path)
        assert held(volume_id, tmp_path, state) == {
            "mounts": [str(tmp_path / "stage"), str(tmp_path / "pod" / "mnt")],
            "loops": held(volume_id, tmp_path, state)["loops"],
            "link": True,
            "folder": True,
        }
        [ledger] = runtime_dir.glob("*.json")
        assert json.loads(ledger.read_text())["pid"] == server.proc.pid
        assert server.stop(sig) == 0, server.output()
    assert held(volume_id, tmp_path, state) == NOTHING, server.output()
    assert list(runtime_dir.glob("*.json")) == []  # everything released: the ledger is gone too


def test_after_kill_9_the_next_start_releases_the_predecessors_leftovers_and_says_so(
    tmp_path: Path, runtime_dir: Path
) -> None:
    env = {"ZONAL_RUNTIME_DIR": str(runtime_dir)}
    with running(EMBEDDED, tmp_path / "csi.sock", tmp_path / "first.log", env=env) as first:
        volume_id, state = in_use(first, tmp_path)
        first.stop(signal.SIGKILL)
    left = held(volume_id, tmp_path, state)
    assert left["mounts"] and left["loops"] and left["link"] and left["folder"], left  # what a crash leaves
    with running(EMBEDDED, tmp_path / "csi.sock", tmp_path / "second.log", env=env) as second:
        assert held(volume_id, tmp_path, state) == NOTHING
        said = second.output()
        assert (
            f"released what embedded zonal process {first.proc.pid} left when it died: "
            "2 mounts, 1 loop device, 1 link, 1 folder, 1 backing file"
        ) in said, said
        assert [p.name for p in runtime_dir.glob("*.json")] == [f"{second.proc.pid}.json"]
        assert second.stop(signal.SIGTERM) == 0


def test_node_mode_leaves_the_kubelets_mounts_alone_when_it_stops(tmp_path: Path, runtime_dir: Path) -> None:
    """Production ``zonal node``: unmounting on exit is the kubelet's call, not the plugin's. A staged
    volume stands in as an ext4 loop device mounted under a kubelet-like path (the production node
    refuses loop devices as volumes, so the test mounts it itself, as an earlier NodeStage would have)."""
    backer = LoopBacker(tmp_path / "disks")
    volume_id = f"vol-{uuid.uuid4().hex[:17]}"
    device = backer.back(volume_id, 64 << 20)
    stage = tmp_path / "kubelet" / "plugins" / "kubernetes.io" / "csi" / "zonal.csi.dev" / "globalmount"
    stage.mkdir(parents=True)
    node_args = (
        "node",
        "--node-id",
        "i-0123456789abcdef0",
        "--zone",
        "us-east-1a",
        "--instance-type",
        "m5.large",
    )
    try:
        run(["mkfs.ext4", "-q", "-F", device], 60)
        run(["mount", device, str(stage)], 30)
        env = {"ZONAL_RUNTIME_DIR": str(runtime_dir)}
        with running(node_args, tmp_path / "node.sock", tmp_path / "node.log", env=env) as server:
            with grpc.insecure_channel(f"unix:{server.socket}") as channel:
                info = csi_pb2_grpc.NodeStub(channel).NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=30)
            assert info.node_id == "i-0123456789abcdef0"
            assert server.stop(signal.SIGTERM) == 0, server.output()
        assert mounts_below(tmp_path) == [str(stage)]  # still mounted: the kubelet unstages
        assert loop_backing_files().get(device) == str(tmp_path / "disks" / volume_id)
        assert not runtime_dir.exists()  # node mode keeps no embedded ledger
    finally:
        for target in reversed(mounts_below(tmp_path)):
            subprocess.run(["umount", target], check=False, timeout=30)
        backer.release(volume_id)
