"""Issue 4's end to end (root): ``zonal all --cloud embedded`` as a process, driven by ``zonal csi``:
create → stage → write a file → snapshot → restore into a bigger volume → stage it on the embedded
node → the file is there and the filesystem has the new size."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import Server, csi_json, running

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices, mkfs and mount"),
]

GIB = 1 << 30
ZONE = "us-east-1b"


@pytest.fixture
def zonal(tmp_path: Path) -> Iterator[Server]:
    args = [
        "all", "--cloud", "embedded", "--embedded-fast", "--zone", ZONE,
        "--embedded-state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    with running(args, tmp_path / "csi.sock", tmp_path / "zonal.log") as server:
        yield server


def _stage(zonal: Server, node: str, vol: str, staging: Path) -> None:
    device = csi_json(zonal, "publish", vol, "--node-id", node)["publish_context"]["devicePath"]
    staging.mkdir(parents=True)
    csi_json(zonal, "stage", vol, "--staging-path", str(staging), "--publish-context", f"devicePath={device}")


def _unstage(zonal: Server, node: str, vol: str, staging: Path) -> None:
    csi_json(zonal, "unstage", vol, "--staging-path", str(staging))
    csi_json(zonal, "unpublish", vol, "--node-id", node)


def test_restore_into_a_bigger_volume_keeps_the_file(zonal: Server, tmp_path: Path) -> None:
    node = csi_json(zonal, "node-info")["node_id"]
    vol = csi_json(zonal, "create-volume", "--name", "pvc-src", "--size", "1Gi", "--zone", ZONE)["volume_id"]
    first = tmp_path / "kubelet" / "first"
    _stage(zonal, node, vol, first)
    (first / "before.txt").write_text("written before the snapshot\n")
    os.sync()
    _unstage(zonal, node, vol, first)  # a consistent snapshot: unmounted and detached

    snap = csi_json(zonal, "create-snapshot", vol, "--name", "snapshot-e2e")
    deadline = time.monotonic() + 60
    while not snap["ready_to_use"]:
        assert time.monotonic() < deadline, f"snapshot never became ready: {snap}"
        time.sleep(0.2)
        (snap,) = csi_json(zonal, "list-snapshots", "--snapshot-id", snap["snapshot_id"])["snapshots"]

    restored = csi_json(
        zonal,
        "create-volume", "--name", "pvc-restored", "--size", "2Gi", "--zone", ZONE,
        "--from-snapshot", snap["snapshot_id"],
    )  # fmt: skip
    assert restored["capacity_bytes"] == 2 * GIB
    second = tmp_path / "kubelet" / "second"
    _stage(zonal, node, restored["volume_id"], second)
    try:
        stats = csi_json(zonal, "stats", restored["volume_id"], "--path", str(second))
        assert stats["total_bytes"] > 1.5 * GIB, f"the filesystem was not grown to the new size: {stats}"
        assert (second / "before.txt").read_text() == "written before the snapshot\n"
    finally:
        _unstage(zonal, node, restored["volume_id"], second)  # never leave a mount behind

    csi_json(zonal, "delete-volume", restored["volume_id"])
    csi_json(zonal, "delete-snapshot", snap["snapshot_id"])
    csi_json(zonal, "delete-volume", vol)
