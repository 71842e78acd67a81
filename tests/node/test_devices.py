"""Device resolution and serial checks over a fake /dev and /sys tree; the mount adapter's helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.errors import DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument, NotFound
from provisioner.mount.devices import NVME_BY_ID_PREFIX, SysfsDeviceResolver, normalize_serial, read_serial
from provisioner.mount.linux import ext_args, parse_mountinfo, run, xfs_args
from provisioner.ports.node import FormatOptions

VOL = "vol-0123456789abcdef0"


class Tree:
    """A fake /dev and /sys: devices are plain files, serials live where the kernel puts them."""

    def __init__(self, root: Path) -> None:
        self.dev, self.sys = root / "dev", root / "sys"
        self.dev.mkdir()
        self.resolver = SysfsDeviceResolver(str(self.dev), str(self.sys))

    def nvme(self, name: str, serial: str) -> str:
        (self.dev / name).write_text("")
        block = self.sys / "block" / name / "device"
        block.mkdir(parents=True)
        (block / "serial").write_text(serial + "   \n")
        return str(self.dev / name)

    def loop(self, name: str, backing: str) -> str:
        (self.dev / name).write_text("")
        d = self.sys / "block" / name / "loop"
        d.mkdir(parents=True)
        (d / "backing_file").write_text(backing + "\n")
        return str(self.dev / name)

    def by_id(self, volume_id: str, target: str) -> None:
        link = self.dev / (NVME_BY_ID_PREFIX + volume_id.replace("-", ""))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(target, link.parent))


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def test_device_path_from_publish_context_with_matching_serial(tree: Tree) -> None:
    dev = tree.nvme("nvme1n1", "vol0123456789abcdef0")
    assert tree.resolver.resolve(VOL, {"devicePath": dev}) == dev


def test_by_id_symlink_is_resolved_when_device_path_is_absent(tree: Tree) -> None:
    dev = tree.nvme("nvme2n1", "vol0123456789abcdef0")
    tree.by_id(VOL, dev)
    assert tree.resolver.resolve(VOL, {"devicePath": str(tree.dev / "xvdba")}) == dev
    assert tree.resolver.resolve(VOL, {}) == dev


def test_a_stale_symlink_to_another_volume_is_refused(tree: Tree) -> None:
    dev = tree.nvme("nvme3n1", "vol0fffffffffffffff0")
    tree.by_id(VOL, dev)
    with pytest.raises(FailedPrecondition, match="serial vol0fffffffffffffff0"):
        tree.resolver.resolve(VOL, {})


def test_a_wrong_device_path_falls_back_to_the_right_by_id_device(tree: Tree) -> None:
    wrong = tree.nvme("nvme1n1", "vol0fffffffffffffff0")
    right = tree.nvme("nvme2n1", "vol0123456789abcdef0")
    tree.by_id(VOL, right)
    assert tree.resolver.resolve(VOL, {"devicePath": wrong}) == right


def test_loop_device_serial_is_its_backing_file_name(tree: Tree) -> None:
    dev = tree.loop("loop4", f"/var/lib/zonal/loops/{VOL}")
    assert read_serial(dev, str(tree.sys)) == VOL
    assert tree.resolver.resolve(VOL, {"devicePath": dev}) == dev
    tree.loop("loop5", "/var/lib/zonal/loops/vol-0aaaaaaaaaaaaaaaa (deleted)")
    with pytest.raises(FailedPrecondition):
        tree.resolver.resolve(VOL, {"devicePath": str(tree.dev / "loop5")})


def test_a_device_without_serial_is_taken_as_named(tree: Tree) -> None:
    (tree.dev / "xvdf").write_text("")
    assert tree.resolver.resolve(VOL, {"devicePath": str(tree.dev / "xvdf")}) == str(tree.dev / "xvdf")


def test_nothing_found_is_not_found(tree: Tree) -> None:
    with pytest.raises(NotFound):
        tree.resolver.resolve(VOL, {"devicePath": str(tree.dev / "xvdz")})
    with pytest.raises(NotFound):
        tree.resolver.resolve("vol-../../sda", {})


@pytest.mark.parametrize("path", ["/etc/passwd", "dev/xvdf", "{dev}/../etc/passwd", "/devious"])
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
    assert ext_args("ext4", o) == ["-F", "-m0", "-b", "4096", "-I", "256", "-i", "8192", "-N", "100"]
    assert ext_args("ext4", FormatOptions(ext4_bigalloc=True, ext4_cluster_size=16384))[-4:] == [
        "-O",
        "bigalloc",
        "-C",
        "16384",
    ]
    assert xfs_args(FormatOptions(block_size=4096, inode_size=512)) == ["-b", "size=4096", "-i", "size=512"]


def test_run_puts_stderr_in_the_error() -> None:
    with pytest.raises(Internal, match="exit code 3: it broke"):
        run(["sh", "-c", "echo it broke >&2; exit 3"], 5)
    assert run(["sh", "-c", "exit 2"], 5, ok_codes=(0, 2)).returncode == 2


def test_run_times_out() -> None:
    with pytest.raises(DeadlineExceeded, match=r"within 0\.2s"):
        run(["sleep", "5"], 0.2)


def test_run_missing_command() -> None:
    with pytest.raises(Internal, match="not installed"):
        run(["zonal-no-such-tool"], 5)
