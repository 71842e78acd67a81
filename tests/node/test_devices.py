"""Device identity over a fake /dev and /sys tree (tests.node.loopkit.Tree; root: the device nodes are
real ``mknod`` nodes with a major number no driver has, so nothing can ever be opened through them);
the mount adapter's helpers.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound
from provisioner.mount.devices import (
    VOLUME_SIZE_KEY,
    SysfsDeviceResolver,
    normalize_serial,
)
from provisioner.mount.linux import ext_args, parse_mountinfo, xfs_args
from provisioner.ports.node import FormatOptions
from tests.node.loopkit import FAKE_MAJOR, GIB_SECTORS, Tree

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes device nodes with mknod"),
]

VOL = "vol-0123456789abcdef0"
SERIAL = "vol0123456789abcdef0"


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def test_a_matching_nvme_serial_proves_the_device(tree: Tree) -> None:
    dev = tree.disk("nvme1n1", serial=SERIAL)
    found = tree.resolver.resolve(VOL, {"devicePath": dev})
    assert found.path == dev and found.size == 1024**3 and SERIAL in found.proof
    assert found.major_minor == f"{FAKE_MAJOR}:1"


def test_the_udev_link_is_found_without_a_hint(tree: Tree) -> None:
    dev = tree.disk("nvme2n1", serial=SERIAL)
    tree.by_id(VOL, dev)
    assert tree.resolver.resolve(VOL, {"devicePath": str(tree.dev / "xvdba")}).path == dev
    assert tree.resolver.resolve(VOL, {}).path == dev


def test_the_serial_is_found_by_a_scan_when_udev_made_no_link(tree: Tree) -> None:
    tree.disk("nvme0n1", serial="vol0aaaaaaaaaaaaaaaa")
    dev = tree.disk("nvme3n1", serial=SERIAL)
    assert tree.resolver.resolve(VOL, {}).path == dev


def test_a_stale_link_to_another_volume_is_refused(tree: Tree) -> None:
    dev = tree.disk("nvme3n1", serial="vol0fffffffffffffff0")
    tree.by_id(VOL, dev)
    with pytest.raises(FailedPrecondition, match="serial 'vol0fffffffffffffff0'"):
        tree.resolver.resolve(VOL, {})


def test_a_wrong_hint_falls_back_to_the_right_device(tree: Tree) -> None:
    wrong = tree.disk("nvme1n1", serial="vol0fffffffffffffff0")
    right = tree.disk("nvme2n1", serial=SERIAL)
    tree.by_id(VOL, right)
    assert tree.resolver.resolve(VOL, {"devicePath": wrong}).path == right


def test_a_root_disk_like_vda_with_serial_overlay_is_refused(tree: Tree) -> None:
    vda = tree.disk("vda", virtio_serial="overlay", partitions=("vda1",))
    with pytest.raises(FailedPrecondition, match="serial 'overlay'"):
        tree.resolver.resolve(VOL, {"devicePath": vda})


def test_a_device_without_serial_is_refused_unless_udev_named_it(tree: Tree) -> None:
    plain = tree.disk("sdb")
    with pytest.raises(FailedPrecondition, match="no serial"):
        tree.resolver.resolve(VOL, {"devicePath": plain})
    tree.by_id(VOL, plain)
    assert "udev" in tree.resolver.resolve(VOL, {}).proof


def test_what_is_not_a_block_device_is_refused(tree: Tree) -> None:
    (tree.dev / "notes").write_text("")
    tree._node("zero", stat.S_IFCHR)
    for name in ("notes", "zero"):
        with pytest.raises(FailedPrecondition, match="not a block device"):
            tree.resolver.resolve(VOL, {"devicePath": str(tree.dev / name)})


def test_a_partition_is_refused_and_partitions_and_holders_are_reported(tree: Tree) -> None:
    tree.disk("sda", partitions=("sda1",))
    with pytest.raises(FailedPrecondition, match="is a partition"):
        tree.resolver.resolve(VOL, {"devicePath": str(tree.dev / "sda1")})
    dev = tree.disk("nvme1n1", serial=SERIAL, partitions=("nvme1n1p1",), holders=("dm-0",))
    found = tree.resolver.resolve(VOL, {"devicePath": dev})
    assert [name for name, _ in found.partitions] == ["nvme1n1p1"] and found.holders == ("dm-0",)
    assert len(found.numbers) == 2


def test_loop_devices_count_only_from_the_embedded_folder(tmp_path: Path) -> None:
    folder = tmp_path / "embedded"
    folder.mkdir()
    strict = Tree(tmp_path, loop_dirs=(str(folder),))
    good = strict.disk("loop4", backing=f"{folder}/{VOL}")
    assert "backed by" in strict.resolver.resolve(VOL, {"devicePath": good}).proof
    decoys = {
        "vol-0aaaaaaaaaaaaaaaa": strict.disk("loop5", backing="/srv/images/vol-0aaaaaaaaaaaaaaaa"),
        "vol-0bbbbbbbbbbbbbbbb": strict.disk("loop6", backing=f"{folder}/vol-0bbbbbbbbbbbbbbbb (deleted)"),
        "vol-0cccccccccccccccc": strict.disk("loop7"),
    }
    for volume_id, dev in decoys.items():
        with pytest.raises(FailedPrecondition, match="loop device"):
            strict.resolver.resolve(volume_id, {"devicePath": dev})
    never = SysfsDeviceResolver(str(strict.dev), str(strict.sys), loop_dirs=(), use_nvme_cli=False)
    with pytest.raises(FailedPrecondition, match="loop device"):
        never.resolve(VOL, {"devicePath": good})


def test_xen_devices_need_the_attachment_name_and_a_matching_size(tree: Tree) -> None:
    tree.xen()
    xvdf = tree.disk("xvdf", sectors=GIB_SECTORS)
    ctx = {"devicePath": str(tree.dev / "sdf"), VOLUME_SIZE_KEY: str(1024**3)}
    found = tree.resolver.resolve(VOL, ctx)
    assert found.path == xvdf and "Xen" in found.proof
    with pytest.raises(FailedPrecondition, match="smaller"):
        tree.resolver.resolve(VOL, {**ctx, VOLUME_SIZE_KEY: str(2 * 1024**3)})
    with pytest.raises(FailedPrecondition, match=VOLUME_SIZE_KEY):
        tree.resolver.resolve(VOL, {"devicePath": xvdf})


def test_without_xen_a_serial_less_named_device_is_refused(tree: Tree) -> None:
    xvdf = tree.disk("xvdf")
    with pytest.raises(FailedPrecondition, match="no serial"):
        tree.resolver.resolve(VOL, {"devicePath": xvdf, VOLUME_SIZE_KEY: str(1024**3)})


def test_nothing_found_is_not_found(tree: Tree) -> None:
    with pytest.raises(NotFound):
        tree.resolver.resolve(VOL, {"devicePath": str(tree.dev / "xvdz")})
    with pytest.raises(NotFound):
        tree.resolver.resolve("vol-../../sda", {})
    with pytest.raises(NotFound):
        tree.resolver.resolve("fake-vol-id", {})


@pytest.mark.parametrize("path", ["/etc/passwd", "dev/xvdf", "{dev}/../etc/passwd", "/devious", "{dev}/a\0b"])
def test_device_path_outside_dev_is_invalid(tree: Tree, path: str) -> None:
    with pytest.raises(InvalidArgument):
        tree.resolver.resolve(VOL, {"devicePath": path.format(dev=tree.dev)})


def test_normalize_serial() -> None:
    assert normalize_serial(" VOL-0ABC ") == normalize_serial("vol0abc")


def test_parse_mountinfo_unescapes_and_keeps_order() -> None:
    text = (
        "36 35 98:0 / /mnt/with\\040space rw,noatime shared:1 - ext4 /dev/loop0 rw,errors=continue\n"
        "37 36 98:0 /sub /target ro,relatime - ext4 /dev/loop0 rw\n"
        "garbage line\n"
    )
    first, second = parse_mountinfo(text)
    assert (first.target, first.source, first.fs_type, first.major_minor) == (
        "/mnt/with space",
        "/dev/loop0",
        "ext4",
        "98:0",
    )
    assert second.read_only and second.root == "/sub" and not first.read_only


def test_mkfs_arguments() -> None:
    o = FormatOptions(block_size=4096, inode_size=256, bytes_per_inode=8192, number_of_inodes=100)
    want = ["-F", "-m0", "-E", "nodiscard", "-b", "4096", "-I", "256", "-i", "8192", "-N", "100"]
    assert ext_args("ext4", o) == want
    assert ext_args("ext4", FormatOptions(ext4_bigalloc=True, ext4_cluster_size=16384))[-4:] == [
        "-O",
        "bigalloc",
        "-C",
        "16384",
    ]
    assert xfs_args(FormatOptions(block_size=4096, inode_size=512)) == [
        "-K",
        "-b",
        "size=4096",
        "-i",
        "size=512",
    ]
