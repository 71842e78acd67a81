"""Issue 3's end to end (root): ``zonal all --cloud embedded`` as a process, driven by ``zonal csi``
through create → publish → stage → node-publish → write/read a file → node-unpublish → unstage →
unpublish → delete; then nothing left behind (loop devices, mounts) and a clean SIGTERM stop."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.model import ZONE_KEY
from tests.e2e.procs import Server, csi, csi_json, running

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices, mkfs and mount"),
]


def loop_devices_under(folder: Path) -> list[str]:
    """``losetup -a`` lines whose backing file lies in ``folder``."""
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True, timeout=30).stdout
    return [line for line in out.splitlines() if str(folder) in line]


def mounts_under(folder: Path) -> list[str]:
    """Mount points (field 5 of /proc/self/mountinfo) inside ``folder``."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == str(folder) or p.startswith(f"{folder}/")]


@pytest.fixture
def zonal(tmp_path: Path) -> Iterator[Server]:
    args = [
        "all", "--cloud", "embedded", "--embedded-fast", "--zone", "us-east-1b",
        "--embedded-state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    with running(args, tmp_path / "csi.sock", tmp_path / "zonal.log") as server:
        yield server


def test_volume_lifecycle_on_a_loop_device_leaves_nothing_behind(zonal: Server, tmp_path: Path) -> None:
    node = csi_json(zonal, "node-info")
    assert node["accessible_topology"][0][ZONE_KEY] == "us-east-1b"
    created = csi_json(zonal, "create-volume", "--name", "pvc-e2e", "--size", "1Gi", "--zone", "us-east-1b")
    vol = created["volume_id"]
    assert created["accessible_topology"] == [{ZONE_KEY: "us-east-1b"}]

    published = csi_json(zonal, "publish", vol, "--node-id", node["node_id"])
    device = published["publish_context"]["devicePath"]
    staging = tmp_path / "kubelet" / "staging"
    target = tmp_path / "kubelet" / "pods" / "p1" / "mount"
    staging.mkdir(parents=True)  # the kubelet creates the staging folder; the driver the target
    csi_json(zonal, "stage", vol, "--staging-path", str(staging), "--publish-context", f"devicePath={device}")
    assert loop_devices_under(tmp_path), "the attached volume is not backed by a loop device"
    csi_json(zonal, "node-publish", vol, "--staging-path", str(staging), "--target-path", str(target))

    (target / "hello.txt").write_text("written through zonal\n")
    assert (staging / "hello.txt").read_text() == "written through zonal\n"  # the same filesystem
    stats = csi_json(zonal, "stats", vol, "--path", str(target))
    assert 0 < stats["used_bytes"] < stats["total_bytes"] <= 1 << 30

    csi_json(zonal, "node-unpublish", vol, "--target-path", str(target))
    assert not (target / "hello.txt").exists()
    csi_json(zonal, "unstage", vol, "--staging-path", str(staging))
    csi_json(zonal, "unpublish", vol, "--node-id", node["node_id"])
    csi_json(zonal, "delete-volume", vol)

    assert loop_devices_under(tmp_path) == []
    assert mounts_under(tmp_path) == []
    gone = csi(zonal, "get-volume", vol)
    assert gone.returncode == 1 and gone.stderr.startswith("zonal csi: NOT_FOUND: ")

    assert zonal.stop(signal.SIGTERM) == 0, zonal.output()
    assert not zonal.socket.exists()
    assert loop_devices_under(tmp_path) == []


def test_sigterm_releases_a_volume_left_attached(zonal: Server, tmp_path: Path) -> None:
    """Stopping with a volume still attached (and staged data on it) leaves no loop device either."""
    node = csi_json(zonal, "node-info")["node_id"]
    vol = csi_json(zonal, "create-volume", "--name", "pvc-left", "--size", "1Gi")["volume_id"]
    csi_json(zonal, "publish", vol, "--node-id", node)
    assert len(loop_devices_under(tmp_path)) == 1
    assert zonal.stop(signal.SIGTERM) == 0, zonal.output()
    assert not zonal.socket.exists()
    assert loop_devices_under(tmp_path) == []
