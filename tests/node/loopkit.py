"""Real loop devices, mounts and decoys for the root node tests, all confined to one folder.

A :class:`Kit` owns a folder under pytest's ``tmp_path``: volumes are sparse files in ``loops/`` on
loop devices (the embedded cloud's convention, which the resolver accepts from that folder only),
decoys are loop devices over other files (or, for disks a test must never touch, nodes in a fake
/dev and /sys: :class:`Tree`), and every mount the test or the plugin makes below the
folder is unmounted, and every loop device whose backing file is below it detached, by
:meth:`Kit.cleanup` — never anything else on the machine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import uuid
from pathlib import Path

from provisioner.embedded.loopback import LoopBacker
from provisioner.mount.devices import NVME_BY_ID_PREFIX, SysfsDeviceResolver
from provisioner.mount.linux import LinuxMounter, parse_mountinfo, run
from provisioner.mount.state import FileNodeState
from provisioner.node import NodeConfig, NodeCore
from provisioner.ports.clock import SystemClock
from provisioner.ports.node import MountInfo, NodeMetadata

MIB = 1024**2


def new_volume_id() -> str:
    return f"vol-{uuid.uuid4().hex[:17]}"


def mountinfo() -> list[MountInfo]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def loops_backed_under(folder: Path) -> list[str]:
    """Loop devices whose backing file lies below ``folder`` (as the kernel reports it)."""
    prefix = str(folder) + "/"
    found = []
    for block in Path("/sys/block").glob("loop*"):
        try:
            backing = (block / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(prefix):
            found.append(f"/dev/{block.name}")
    return sorted(found)


def mounts_under(folder: Path) -> list[tuple[str, str, str]]:
    prefix = str(folder) + "/"
    return [(m.target, m.fs_type, m.major_minor) for m in mountinfo() if m.target.startswith(prefix)]


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every entry below ``root`` (type and content hash or link target), not following symlinks."""
    seen: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder, name)
            if p.is_symlink():
                seen[str(p)] = "link:" + os.readlink(p)
            elif p.is_dir():
                seen[str(p)] = "dir"
            elif p.is_file():
                seen[str(p)] = "file:" + file_hash(p)
            else:
                seen[str(p)] = "other"
    return seen


def write_mbr(path: Path, start_sector: int = 2048, sectors: int = 4096) -> None:
    """A DOS partition table with one Linux partition, written by hand (no sfdisk needed)."""
    entry = (
        bytes([0x00, 0, 0, 0, 0x83, 0, 0, 0])
        + start_sector.to_bytes(4, "little")
        + sectors.to_bytes(4, "little")
    )
    with open(path, "r+b") as f:
        f.seek(446)
        f.write(entry + bytes(48))
        f.write(b"\x55\xaa")


class Kit:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.loops = root / "loops"
        self.backer = LoopBacker(self.loops)
        self.volumes: list[str] = []
        self.mounter = LinuxMounter()
        self.state = FileNodeState(root / "state")
        self.resolver = SysfsDeviceResolver(loop_dirs=(str(self.loops),))
        self.core = self.make_core()

    def make_core(self, resolver: SysfsDeviceResolver | None = None) -> NodeCore:
        return NodeCore(
            self.mounter,
            resolver or self.resolver,
            NodeMetadata(instance_id="i-test", zone="local-1a"),
            NodeConfig(),
            SystemClock(),
            logging.getLogger("test.node"),
            state=self.state,
        )

    def path(self, name: str) -> str:
        return str(self.root / name)

    def volume(self, size: int = 64 * MIB) -> tuple[str, str]:
        volume_id = new_volume_id()
        self.volumes.append(volume_id)
        return volume_id, self.backer.back(volume_id, size)

    def decoy(self, path: Path, size: int = 16 * MIB, partitions: bool = False, data: bytes = b"") -> str:
        """A loop device over ``path`` (created sparse if missing); ``data`` is written at 512 KiB."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            with open(path, "wb") as f:
                f.truncate(size)
        if partitions:
            write_mbr(path)
        if data:
            with open(path, "r+b") as f:
                f.seek(512 * 1024)
                f.write(data)
        return run(
            ["losetup", "--find", "--show", *(["-P"] if partitions else []), str(path)], 30
        ).stdout.strip()

    def tmpfs(self, name: str, files: dict[str, str] | None = None) -> str:
        target = self.root / name
        target.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "size=1m", "zonal-test-decoy", str(target)], 30)
        for fname, text in (files or {}).items():
            (target / fname).write_text(text)
        return str(target)

    def cleanup(self) -> None:
        prefix = str(self.root) + "/"
        for m in reversed(mountinfo()):
            if m.target.startswith(prefix):
                run(["umount", "-l", m.target], 30)
        for device in loops_backed_under(self.root):
            run(["losetup", "--detach", device], 30)
        for volume_id in self.volumes:
            self.backer.release(volume_id)
        os.sync()


FAKE_MAJOR = 240  # "local/experimental use": no driver answers it, so the nodes open nothing
GIB_SECTORS = 2 * 1024 * 1024


def _unused_major() -> int:
    majors = {line.split()[0] for line in Path("/proc/devices").read_text().splitlines() if line[:1] == " "}
    assert str(FAKE_MAJOR) not in majors, "pick another fake major: 240 is in use here"
    return FAKE_MAJOR


class Tree:
    """A fake /dev and /sys: block nodes with a dead major, serials where the kernel puts them."""

    def __init__(self, root: Path, loop_dirs: tuple[str, ...] | None = None) -> None:
        self.root = root
        self.dev, self.sys = root / "dev", root / "sys"
        self.dev.mkdir(parents=True)
        (self.sys / "block").mkdir(parents=True)
        (self.sys / "dev" / "block").mkdir(parents=True)
        self.major = _unused_major()
        self.minor = 0
        self.resolver = SysfsDeviceResolver(
            str(self.dev), str(self.sys), loop_dirs=loop_dirs, use_nvme_cli=False
        )

    def disk(
        self,
        name: str,
        serial: str = "",
        virtio_serial: str = "",
        backing: str = "",
        sectors: int = GIB_SECTORS,
        partitions: tuple[str, ...] = (),
        holders: tuple[str, ...] = (),
    ) -> str:
        number = self._node(name, stat.S_IFBLK)
        block = self.sys / "block" / name
        block.mkdir()
        (block / "size").write_text(f"{sectors}\n")
        (block / "dev").write_text(number + "\n")
        (self.sys / "dev" / "block" / number).symlink_to(block)
        if serial:
            (block / "device").mkdir()
            (block / "device" / "serial").write_text(serial + "   \n")
        if virtio_serial:
            (block / "serial").write_text(virtio_serial + "\n")
        if backing:
            (block / "loop").mkdir()
            (block / "loop" / "backing_file").write_text(backing + "\n")
        (block / "holders").mkdir()
        for holder in holders:
            (block / "holders" / holder).mkdir()
        for part in partitions:
            pnum = self._node(part, stat.S_IFBLK)
            (block / part).mkdir()
            (block / part / "partition").write_text("1\n")
            (block / part / "dev").write_text(pnum + "\n")
            (self.sys / "dev" / "block" / pnum).symlink_to(block / part)
        return str(self.dev / name)

    def _node(self, name: str, kind: int) -> str:
        self.minor += 1
        os.mknod(self.dev / name, kind | 0o600, os.makedev(self.major, self.minor))
        return f"{self.major}:{self.minor}"

    def by_id(self, volume_id: str, target: str) -> str:
        link = self.dev / (NVME_BY_ID_PREFIX + volume_id.replace("-", ""))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(target, link.parent))
        return str(link)

    def xen(self) -> None:
        (self.sys / "hypervisor").mkdir()
        (self.sys / "hypervisor" / "type").write_text("xen\n")
