"""LoopBacker's snapshots as files (no loop device involved, so no root): point in time, restored
grown, all zeros when nothing was ever written; and EmbeddedCloud.close() deleting them."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.cli.embedded_entry import DEFAULT_ZONES
from provisioner.embedded.cloud import build_embedded
from provisioner.embedded.loopback import LoopBacker
from provisioner.errors import AlreadyExists, InvalidArgument

MIB = 1024**2
GIB = 1024**3
VOL, OTHER, SNAP = "vol-0a1b2c3d4e5f60718", "vol-0f1e2d3c4b5a69788", "snap-0123456789abcdef0"


@pytest.fixture
def backer(tmp_path: Path) -> LoopBacker:
    return LoopBacker(tmp_path / "state")


def _write_volume(backer: LoopBacker, volume_id: str, size: int, writes: dict[int, bytes]) -> None:
    """What an attached volume's file looks like after a filesystem wrote to it."""
    backer.state_dir.mkdir(parents=True, exist_ok=True)
    mode = "r+b" if backer.path(volume_id).exists() else "wb"
    with open(backer.path(volume_id), mode) as f:
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)


def _read(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_a_snapshot_is_the_volume_at_that_moment(backer: LoopBacker) -> None:
    _write_volume(backer, VOL, 8 * MIB, {MIB: b"before"})

    backer.snapshot(VOL, SNAP)
    _write_volume(backer, VOL, 8 * MIB, {MIB: b"after!"})

    assert _read(backer.snapshot_path(SNAP), MIB, 6) == b"before"
    assert backer.snapshot_path(SNAP).stat().st_size == 8 * MIB


def test_a_volume_never_written_keeps_no_snapshot_file(backer: LoopBacker) -> None:
    backer.snapshot(VOL, SNAP)

    assert not backer.snapshot_path(SNAP).exists()


def test_restore_copies_the_snapshot_and_grows_it(backer: LoopBacker) -> None:
    _write_volume(backer, VOL, 8 * MIB, {0: b"superblock", 7 * MIB: b"tail"})
    backer.snapshot(VOL, SNAP)

    backer.restore(OTHER, SNAP, 16 * MIB)

    restored = backer.path(OTHER)
    assert restored.stat().st_size == 16 * MIB
    assert _read(restored, 0, 10) == b"superblock"
    assert _read(restored, 7 * MIB, 4) == b"tail"
    assert _read(restored, 12 * MIB, 4) == b"\0\0\0\0"
    assert restored.stat().st_blocks * 512 < MIB  # still sparse


def test_restore_from_a_snapshot_of_zeros_makes_an_empty_sparse_file(backer: LoopBacker) -> None:
    backer.snapshot(VOL, SNAP)  # VOL was never written

    backer.restore(OTHER, SNAP, GIB)

    assert backer.path(OTHER).stat().st_size == GIB
    assert backer.path(OTHER).stat().st_blocks == 0


def test_restore_refuses_a_smaller_size_or_an_existing_volume(backer: LoopBacker) -> None:
    _write_volume(backer, VOL, 8 * MIB, {0: b"x"})
    backer.snapshot(VOL, SNAP)

    with pytest.raises(InvalidArgument):
        backer.restore(OTHER, SNAP, 4 * MIB)
    with pytest.raises(AlreadyExists):
        backer.restore(VOL, SNAP, 8 * MIB)

    assert not backer.path(OTHER).exists()
    assert _read(backer.path(VOL), 0, 1) == b"x"


def test_drop_snapshot_is_idempotent(backer: LoopBacker) -> None:
    _write_volume(backer, VOL, MIB, {0: b"x"})
    backer.snapshot(VOL, SNAP)

    backer.drop_snapshot(SNAP)
    backer.drop_snapshot(SNAP)

    assert not backer.snapshot_path(SNAP).exists()
    assert backer.path(VOL).exists()


@pytest.mark.parametrize("snapshot_id", ["../snap-1", "snap-", "vol-0123", "snap-12/../../x", ""])
def test_malformed_snapshot_ids_are_refused(backer: LoopBacker, snapshot_id: str) -> None:
    with pytest.raises(InvalidArgument):
        backer.snapshot_path(snapshot_id)
    with pytest.raises(InvalidArgument):
        backer.drop_snapshot(snapshot_id)


def test_the_embedded_cloud_carries_data_and_close_deletes_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    embedded = build_embedded("us-east-1", DEFAULT_ZONES, "", str(state), fast=True, back_devices=True)
    try:
        assert embedded.backer is not None
        ec2 = embedded.simulator.client()
        zone = embedded.node.zone
        source = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
        _write_volume(embedded.backer, source, GIB, {MIB: b"data"})  # as if attached and written
        snap = ec2.create_snapshot(VolumeId=source)["SnapshotId"]
        restored = ec2.create_volume(AvailabilityZone=zone, Size=2, SnapshotId=snap)["VolumeId"]

        assert _read(state / restored, MIB, 4) == b"data"
        assert (state / restored).stat().st_size == 2 * GIB
        assert (state / snap).exists()
    finally:
        embedded.close()

    assert sorted(p.name for p in state.iterdir()) == []
