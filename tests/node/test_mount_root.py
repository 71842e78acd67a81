"""NodeCore over the real Linux mounter and real loop devices (root only).

Each test backs volumes with LoopBacker in its tmp_path (tests.node.loopkit); the fixture unmounts
everything under tmp_path and releases every loop device afterwards, even when the test fails.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, NotFound
from provisioner.model import AccessMode, AccessType, VolumeCapability
from provisioner.ports.node import FormatOptions, MountInfo
from tests.node.loopkit import Kit, mountinfo

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates loop devices, runs mkfs and mount"),
]

MIB = 1024**2
EXT4 = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
XFS = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, fs_type="xfs")
BLOCK = VolumeCapability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)


class Rig(Kit):
    def stage(self, volume_id: str, device: str, cap: VolumeCapability = EXT4, staging: str = "") -> str:
        staging = staging or self.path(f"staging-{volume_id}")
        self.core.stage(volume_id, staging, cap, {"devicePath": device}, {})
        return staging

    def top(self, path: str) -> MountInfo | None:
        return self.mounter.inspect(path).top

    def mounts_at(self, path: str) -> int:
        return sum(1 for m in mountinfo() if m.target == path)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.cleanup()


def test_stage_formats_a_blank_device_and_mounts_it_once(rig: Rig) -> None:
    volume_id, device = rig.volume()
    assert rig.mounter.probe(device) == ""
    staging = rig.stage(volume_id, device)
    assert rig.mounter.probe(device) == "ext4"
    info = rig.top(staging)
    assert info is not None and info.source == device and info.fs_type == "ext4"
    rig.stage(volume_id, device)  # again: a no-op, not a second mount
    assert rig.mounts_at(staging) == 1


def test_data_survives_unstage_and_stage(rig: Rig) -> None:
    volume_id, device = rig.volume()
    staging = rig.stage(volume_id, device)
    Path(staging, "hello.txt").write_text("kept")
    rig.core.unstage(volume_id, staging)
    assert not os.path.exists(staging) and rig.mounts_at(staging) == 0
    staging = rig.stage(volume_id, device)  # must mount, not reformat
    assert Path(staging, "hello.txt").read_text() == "kept"


def test_publish_and_unpublish_read_write_and_read_only(rig: Rig) -> None:
    volume_id, device = rig.volume()
    staging = rig.stage(volume_id, device)
    rw, ro = rig.path("pod1/mount"), rig.path("pod2/mount")
    rig.core.publish(volume_id, staging, rw, EXT4, False, {}, {})
    rig.core.publish(volume_id, staging, ro, EXT4, True, {}, {})
    rig.core.publish(volume_id, staging, rw, EXT4, False, {}, {})  # repeat: OK
    Path(rw, "f").write_text("via rw")
    assert Path(ro, "f").read_text() == "via rw"
    with pytest.raises(OSError) as e:
        Path(ro, "g").write_text("nope")
    assert e.value.errno == errno.EROFS
    for target in (rw, ro):
        rig.core.unpublish(volume_id, target)
        assert not os.path.exists(target)
        rig.core.unpublish(volume_id, target)
    assert Path(staging, "f").read_text() == "via rw"


def test_block_mode_binds_the_device_node(rig: Rig) -> None:
    volume_id, device = rig.volume(8 * MIB)
    rig.core.stage(volume_id, rig.path("staging"), BLOCK, {"devicePath": device}, {})
    target = rig.path("pod/dev")
    rig.core.publish(volume_id, rig.path("staging"), target, BLOCK, False, {"devicePath": device}, {})
    assert stat.S_ISBLK(os.stat(target).st_mode)
    with open(target, "r+b") as f:
        f.write(b"raw block data")
    with open(device, "rb") as f:
        assert f.read(14) == b"raw block data"
    assert rig.core.get_volume_stats(volume_id, target).total_bytes == 8 * MIB
    rig.core.publish(volume_id, rig.path("staging"), target, BLOCK, False, {"devicePath": device}, {})
    rig.core.unpublish(volume_id, target)
    assert not os.path.exists(target)


def test_stats(rig: Rig) -> None:
    volume_id, device = rig.volume()
    staging = rig.stage(volume_id, device)
    Path(staging, "blob").write_bytes(b"x" * (4 * MIB))
    os.sync()
    stats = rig.core.get_volume_stats(volume_id, staging)
    assert 50 * MIB < stats.total_bytes <= 64 * MIB
    assert stats.used_bytes is not None and stats.used_bytes >= 4 * MIB
    assert stats.total_inodes and stats.used_inodes and stats.available_inodes
    with pytest.raises(NotFound):
        rig.core.get_volume_stats(volume_id, rig.path("missing"))


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 24))  # CAP_SYS_RESOURCE is bit 24
    return False


@pytest.mark.skipif(
    not _has_cap_sys_resource(),
    reason="online ext4 resize needs CAP_SYS_RESOURCE, which this root lacks (xfs expand still runs)",
)
def test_expand_after_growing_the_backing_file(rig: Rig) -> None:
    volume_id, device = rig.volume()
    staging = rig.stage(volume_id, device)
    target = rig.path("pod/mount")
    rig.core.publish(volume_id, staging, target, EXT4, False, {}, {})
    before = rig.core.get_volume_stats(volume_id, target).total_bytes
    rig.backer.resize(volume_id, 128 * MIB)
    assert rig.core.expand(volume_id, target, EXT4) == 128 * MIB
    after = rig.core.get_volume_stats(volume_id, target).total_bytes
    assert after > before + 50 * MIB


def test_stage_grows_a_filesystem_smaller_than_its_device(rig: Rig) -> None:
    volume_id, device = rig.volume()
    staging = rig.stage(volume_id, device)
    rig.core.unstage(volume_id, staging)
    rig.backer.resize(volume_id, 128 * MIB)  # like a volume restored from a smaller snapshot
    staging = rig.stage(volume_id, device)
    assert rig.mounter.filesystem_size(device, staging, "ext4") == 128 * MIB


def test_a_wrong_serial_device_is_refused_and_left_untouched(rig: Rig) -> None:
    _, device = rig.volume()
    other_volume = f"vol-{uuid.uuid4().hex[:17]}"
    with pytest.raises(FailedPrecondition, match="loop device"):
        rig.stage(other_volume, device)
    assert rig.mounter.probe(device) == ""  # never formatted
    assert not os.path.exists(rig.path(f"staging-{other_volume}"))


def test_a_device_holding_another_filesystem_is_not_reformatted(rig: Rig) -> None:
    if shutil.which("mkfs.xfs") is None:
        pytest.fail("mkfs.xfs missing: install xfsprogs")
    volume_id, device = rig.volume(320 * MIB)
    rig.mounter.format(device, "xfs", FormatOptions())
    with pytest.raises(FailedPrecondition, match="holds xfs"):
        rig.stage(volume_id, device, EXT4)
    assert rig.mounter.probe(device) == "xfs"


def test_xfs_stage_publish_expand(rig: Rig) -> None:
    if shutil.which("mkfs.xfs") is None:
        pytest.fail("mkfs.xfs missing: install xfsprogs")
    volume_id, device = rig.volume(320 * MIB)  # mkfs.xfs wants at least 300 MiB
    staging = rig.stage(volume_id, device, XFS)
    assert rig.mounter.probe(device) == "xfs"
    target = rig.path("pod/mount")
    rig.core.publish(volume_id, staging, target, XFS, False, {}, {})
    Path(target, "x").write_text("xfs data")
    rig.backer.resize(volume_id, 640 * MIB)
    assert rig.core.expand(volume_id, target, XFS) == 640 * MIB
    assert rig.mounter.filesystem_size(device, staging, "xfs") > 600 * MIB
    rig.core.unpublish(volume_id, target)
    rig.core.unstage(volume_id, staging)
    staging = rig.stage(volume_id, device, XFS)
    assert Path(staging, "x").read_text() == "xfs data"


def test_loop_backer_is_idempotent_and_cleans_up(rig: Rig) -> None:
    volume_id, device = rig.volume(8 * MIB)
    assert rig.backer.back(volume_id, 8 * MIB) == device
    with open(device, "r+b") as f:
        f.write(b"persist")
    rig.backer.detach(volume_id)
    assert rig.backer.devices(volume_id) == []
    rig.backer.detach(volume_id)
    device = rig.backer.back(volume_id, 8 * MIB)
    with open(device, "rb") as f:
        assert f.read(7) == b"persist"
    rig.backer.release(volume_id)
    assert not rig.backer.path(volume_id).exists()
    assert rig.backer.devices(volume_id) == []
    rig.backer.release(volume_id)
    with pytest.raises(NotFound):
        rig.backer.resize(volume_id, 16 * MIB)
