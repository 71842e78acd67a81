"""A stateful fake of the node's Mounter and DeviceResolver ports: devices, a tree and a mount table.

It behaves like the kernel where NodeCore's rules depend on it: mounting needs an existing directory
and a filesystem of the asked type, bind mounts inherit the source's device, stat of a path with a
device bound on it shows the device, unmounting an unmounted path fails, removing a mounted or
non-empty directory fails, a symlink in a path blocks the walk. Every mutating call is logged in
:attr:`FakeMounter.calls`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from provisioner.errors import FailedPrecondition, Internal, InvalidArgument, NotFound, shown
from provisioner.ports.node import (
    BlockDevice,
    FormatOptions,
    FsStats,
    MountInfo,
    PathKind,
    PathState,
)


@dataclass
class FakeDevice:
    path: str
    number: str
    size: int
    serial: str = ""
    content: str = ""  # what blkid would report: "" (blank), "ext4", "xfs", "partition-table:gpt"…
    fs_size: int = 0
    format_options: FormatOptions | None = None
    nonzero: str = ""  # what nonzero_region reports ("" = zeros)
    partitions: tuple[tuple[str, str], ...] = ()
    holders: tuple[str, ...] = ()
    appearance: str = "boot-1/1"  # BlockDevice.appearance: a re-attached disk gets another


@dataclass
class FakeMounter:
    devices: dict[str, FakeDevice] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {"/"})
    files: dict[str, int] = field(default_factory=dict)  # path → size
    symlinks: set[str] = field(default_factory=set)
    table: list[MountInfo] = field(default_factory=list)
    swaps: set[str] = field(default_factory=set)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    # Called at the start of format(): lets a test act "while" an operation is running.
    on_format: Callable[[], None] | None = None
    _bound_devices: dict[str, str] = field(default_factory=dict)  # target file → device path
    _ids: dict[str, str] = field(default_factory=dict)

    def add_device(self, path: str, size: int, serial: str = "", content: str = "") -> FakeDevice:
        dev = FakeDevice(path, f"259:{len(self.devices)}", size, serial, content, size if content else 0)
        self.devices[path] = dev
        return dev

    def add_dirs(self, *paths: str) -> None:
        for p in paths:
            while p not in self.dirs:
                self.dirs.add(p)
                p = posixpath.dirname(p)

    def _device(self, path: str) -> FakeDevice:
        if path not in self.devices:
            raise NotFound(f"device {path} does not exist")
        return self.devices[path]

    def _blocker(self, path: str) -> str:
        parts = [p for p in path.split("/") if p]
        walked = ""
        for name in parts[:-1]:
            walked += "/" + name
            if walked in self.symlinks:
                return f"{shown(walked)} is a symlink"
            if walked in self.files or walked in self.devices:
                return f"{shown(walked)} is a regular file, not a directory"
            if walked not in self.dirs:
                return ""
        return ""

    def _file_id(self, path: str) -> str:
        return self._ids.setdefault(path, f"1:{len(self._ids) + 1}")

    # -- Mounter ---------------------------------------------------------------------------------

    def inspect(self, path: str, table: tuple[MountInfo, ...] | None = None) -> PathState:
        blocker = self._blocker(path)
        if blocker:
            return PathState(path, PathKind.BLOCKED, blocker=blocker)
        mounts = tuple(m for m in (self.table if table is None else table) if m.target == path)
        if path in self._bound_devices:
            number = self.devices[self._bound_devices[path]].number
            return PathState(path, PathKind.BLOCK_DEVICE, mounts, rdev=number, file_id=self._file_id(path))
        if path in self.symlinks:
            return PathState(path, PathKind.SYMLINK)
        if path in self.dirs:
            prefix = path.rstrip("/") + "/"
            mounted = any(m.target == path for m in self.table)
            entries = (
                0
                if mounted
                else sum(
                    1
                    for p in (*self.dirs, *self.files, *self.symlinks)
                    if p.startswith(prefix) and "/" not in p[len(prefix) :]
                )
            )
            return PathState(path, PathKind.DIRECTORY, mounts, entries, file_id=self._file_id(path))
        if path in self.files:
            return PathState(path, PathKind.FILE, mounts, self.files[path], file_id=self._file_id(path))
        if path in self.devices:
            return PathState(path, PathKind.BLOCK_DEVICE, mounts, rdev=self.devices[path].number)
        return PathState(path, PathKind.MISSING)

    def mounts(self) -> tuple[MountInfo, ...]:
        return tuple(self.table)

    def swap_devices(self) -> frozenset[str]:
        return frozenset(self.swaps)

    def make_dirs(self, path: str) -> tuple[str, ...]:
        blocker = self._blocker(path)
        if blocker or path in self.symlinks or path in self.files:
            raise FailedPrecondition(f"cannot create {path}: {blocker or 'something else is there'}")
        created = []
        p = path
        while p not in self.dirs:
            created.append(p)
            p = posixpath.dirname(p)
        for d in reversed(created):
            self.dirs.add(d)
            self.calls.append(("mkdir", d))
        return tuple(reversed(created))

    def make_file(self, path: str) -> str:
        if posixpath.dirname(path) not in self.dirs:
            raise NotFound(f"cannot create {path}: {posixpath.dirname(path)} does not exist")
        if self.inspect(path).kind is not PathKind.MISSING:
            raise FailedPrecondition(f"{path} already exists")
        self.files[path] = 0
        self.calls.append(("touch", path))
        return self._file_id(path)

    def remove_dir(self, path: str) -> None:
        here = self.inspect(path)
        if here.kind is PathKind.MISSING:
            return
        if here.kind is not PathKind.DIRECTORY or here.mounts or here.entries:
            raise FailedPrecondition(f"cannot remove {path}")
        self.dirs.discard(path)
        self._ids.pop(path, None)
        self.calls.append(("rmdir", path))

    def remove_file(self, path: str, file_id: str) -> None:
        if path in self.files and not self.files[path] and self._ids.get(path) == file_id:
            del self.files[path]
            self._ids.pop(path, None)
            self.calls.append(("unlink", path))

    def probe(self, device: str) -> str:
        return self._device(device).content

    def nonzero_region(self, device: str) -> str:
        return self._device(device).nonzero

    def format(self, device: str, fs_type: str, options: FormatOptions, force: bool = False) -> None:
        if self.on_format is not None:
            self.on_format()
        dev = self._device(device)
        if dev.content and not force:
            raise FailedPrecondition(f"mkfs: {device} contains a {dev.content} file system")
        dev.content, dev.fs_size, dev.format_options, dev.nonzero = fs_type, dev.size, options, "first MiB"
        self.calls.append(("format", device, fs_type, *(["force"] if force else [])))

    def mount(self, device: str, target: str, fs_type: str, options: tuple[str, ...]) -> None:
        dev = self._device(device)
        if target not in self.dirs:
            raise NotFound(f"mount: {target}: mount point does not exist")
        if dev.content != fs_type:
            raise FailedPrecondition(f"mount: {device}: wrong fs type, bad option, bad superblock")
        self.table.append(MountInfo(target, device, fs_type, dev.number, "/", ("rw", *options)))
        self.calls.append(("mount", device, target, fs_type, *options))

    def bind_mount(self, source: str, target: str, read_only: bool, options: tuple[str, ...]) -> None:
        mode = "ro" if read_only else "rw"
        if source in self.devices:
            if target not in self.files:
                raise NotFound(f"mount: {target}: mount point does not exist")
            self._bound_devices[target] = source
            info = MountInfo(target, "devtmpfs", "devtmpfs", "0:5", "/" + posixpath.basename(source), (mode,))
        else:
            staged = self.inspect(source).top
            if target not in self.dirs:
                raise NotFound(f"mount: {target}: mount point does not exist")
            if staged is None:
                raise Internal(f"the fake binds mounted directories only, not {source}")
            info = MountInfo(
                target, staged.source, staged.fs_type, staged.major_minor, staged.root, (mode, *options)
            )
        self.table.append(info)
        self.calls.append(("bind", source, target, mode, *options))

    def unmount(self, target: str) -> None:
        for i in range(len(self.table) - 1, -1, -1):
            if self.table[i].target == target:
                del self.table[i]
                self._bound_devices.pop(target, None)
                self.calls.append(("unmount", target))
                return
        raise FailedPrecondition(f"umount: {target}: not mounted")

    def filesystem_size(self, device: str, mount_path: str, fs_type: str) -> int:
        if fs_type == "xfs" and not mount_path:
            raise InvalidArgument("xfs is measured only while mounted")
        return self._device(device).fs_size

    def resize_fs(self, device: str, mount_path: str, fs_type: str) -> None:
        dev = self._device(device)
        if fs_type == "xfs" and not mount_path:
            raise InvalidArgument("xfs grows only while mounted")
        dev.fs_size = dev.size
        self.calls.append(("resize", device, mount_path, fs_type))

    def fs_stats(self, path: str) -> FsStats:
        info = self.inspect(path).top
        if info is None:
            raise NotFound(f"nothing is mounted at {path}")
        total = self.devices[info.source].fs_size if info.source in self.devices else 1 << 30
        return FsStats(total, total - 4096, 4096, 1000, 990, 10)

    def device_size(self, device: str) -> int:
        return self._device(self._bound_devices.get(device, device)).size


@dataclass
class FakeResolver:
    """DeviceResolver over a volume id → device path table (devices from ``mounter``); an unknown
    volume is NotFound, a device with another serial is refused like the sysfs resolver does."""

    volumes: dict[str, str] = field(default_factory=dict)
    mounter: FakeMounter | None = None

    def resolve(self, volume_id: str, publish_context: Mapping[str, str]) -> BlockDevice:
        if volume_id not in self.volumes:
            raise NotFound(f"no device for volume {volume_id}")
        path = self.volumes[volume_id]
        dev = self.mounter.devices.get(path) if self.mounter else None
        if dev is None:
            return BlockDevice(path, "259:99", 0, "fake")
        if dev.serial and dev.serial.replace("-", "") != volume_id.replace("-", ""):
            raise FailedPrecondition(f"{path} has serial {dev.serial}")
        return BlockDevice(
            path, dev.number, dev.size, "fake serial", dev.partitions, dev.holders, dev.appearance
        )
