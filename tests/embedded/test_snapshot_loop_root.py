"""LoopBacker snapshots of a volume attached to a loop device (root only): what was written to the
device but not yet flushed is in the snapshot, and the restored volume's device has the data and the
new size. Every loop device is released, even when a test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.embedded.loopback import LoopBacker

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: attaches loop devices"),
]

MIB = 1024**2
SOURCE, RESTORED, SNAP = "vol-0aa11bb22cc33dd44", "vol-0ee55ff66aa77bb88", "snap-0cc99dd00ee11ff22"


@pytest.fixture
def backer(tmp_path: Path) -> Iterator[LoopBacker]:
    backer = LoopBacker(tmp_path / "state")
    try:
        yield backer
    finally:
        for volume_id in (SOURCE, RESTORED):
            backer.release(volume_id)
        backer.drop_snapshot(SNAP)


def _device_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def test_unflushed_device_writes_reach_the_snapshot_and_the_restored_device(backer: LoopBacker) -> None:
    device = backer.back(SOURCE, 8 * MIB)
    payload = os.urandom(4096)
    fd = os.open(device, os.O_WRONLY)
    try:
        # Still open (a last close would flush it): the write sits in the device's page cache.
        os.pwrite(fd, payload, 4 * MIB)
        backer.snapshot(SOURCE, SNAP)  # while attached and in use
    finally:
        os.close(fd)
    backer.restore(RESTORED, SNAP, 16 * MIB)
    restored = backer.back(RESTORED, 16 * MIB)

    assert restored != device
    assert _device_size(restored) == 16 * MIB
    fd = os.open(restored, os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 4 * MIB) == payload
    finally:
        os.close(fd)
