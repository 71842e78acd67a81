"""A stateful fake of the node's Mounter and DeviceResolver ports: devices, directories and a mount table.

It behaves like the kernel where NodeCore's rules depend on it: mounting needs an existing directory
and a filesystem of the asked type, bind mounts inherit the source's device, unmounting an unmounted
path fails, removing a mounted path fails. Every mutating call is logged in :attr:`FakeMounter.calls`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from provisioner.errors import Internal, InvalidArgument, NotFound
from provisioner.ports.node import FormatOptions, FsStats, MountInfo


@dataclass
class FakeDevice:
    path: str
    number: str
    size: int
    serial: str = ""
    content: str = ""  # what blkid would report: "" (blank), "ext4", "xfs", "partition-table:gpt"…
    fs_size: int = 0
    format_options: FormatOptions | None = None


@dataclass
class FakeMounter:
    devices: dict[str, FakeDevice] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    mounts: list[MountInfo] = field(default_factory=list)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    # Called at the start of format(): lets a test act "while" an operation is running.
    on_format: Callable[[], None] | None = None
    _bound_devices: dict[str, str] = field(default_factory=dict)  # target file → device path

    def add_device(self, path: str, size: int, serial: str = "", content: str = "") -> FakeDevice:
        dev = FakeDevice(path, f"259:{len(self.devices)}", size, serial, content, size if content else 0)
        self.devices[path] = dev
        return dev

    def _device(self, path: str) -> FakeDevice:
        if path not in self.devices:
            raise NotFound(f"device {path} does not exist")
        return self.devices[path]

    # -- Mounter ---------------------------------------------------------------------------------

    def format(self, device: str, fs_type: str, options: FormatOptions) -> None:
        if self.on_format is not None:
            self.on_format()
        dev = self._device(device)
        if dev.content:
            raise Internal(f"mkfs: {device} contains a {dev.content} file system")
        dev.content, dev.fs_size, dev.format_options = fs_type, dev.size, options
        self.calls.append(("format", device, fs_type))

    def mount(self, device: str, target: str, fs_type: str, options: tuple[str, ...]) -> None:
        dev = self._device(device)
        if target not in self.dirs:
            raise Internal(f"mount: {target}: mount point does not exist")
        if dev.content != fs_type:
            raise Internal(f"mount: {device}: wrong fs type, bad option, bad superblock")
        self.mounts.append(MountInfo(target, device, fs_type, dev.number, "/", ("rw", *options)))
        self.calls.append(("mount", device, target, fs_type, *options))

    def bind_mount(self, source: str, target: str, read_only: bool, options: tuple[str, ...]) -> None:
        mode = "ro" if read_only else "rw"
        if source in self.devices:
            if target not in self.files:
                raise Internal(f"mount: {target}: mount point does not exist")
            self._bound_devices[target] = source
            info = MountInfo(target, "devtmpfs", "devtmpfs", "0:5", "/" + os.path.basename(source), (mode,))
        else:
            staged = self.mount_info(source)
            if staged is None or target not in self.dirs:
                raise Internal(f"mount: bind {source} {target} failed")
            info = MountInfo(
                target, staged.source, staged.fs_type, staged.major_minor, staged.root, (mode, *options)
            )
        self.mounts.append(info)
        self.calls.append(("bind", source, target, mode, *options))

    def unmount(self, target: str) -> None:
        for i in range(len(self.mounts) - 1, -1, -1):
            if self.mounts[i].target == target:
                del self.mounts[i]
                self._bound_devices.pop(target, None)
                self.calls.append(("unmount", target))
                return
        raise Internal(f"umount: {target}: not mounted")

    def mount_info(self, path: str) -> MountInfo | None:
        found = [m for m in self.mounts if m.target == path]
        return found[-1] if found else None

    def fs_type(self, device: str) -> str:
        return self._device(device).content

    def filesystem_size(self, device: str, mount_path: str, fs_type: str) -> int:
        return self._device(device).fs_size

    def resize_fs(self, device: str, mount_path: str, fs_type: str) -> None:
        dev = self._device(device)
        if fs_type == "xfs" and not mount_path:
            raise InvalidArgument("xfs grows only while mounted")
        dev.fs_size = dev.size
        self.calls.append(("resize", device, mount_path, fs_type))

    def fs_stats(self, path: str) -> FsStats:
        if not self.exists(path):
            raise NotFound(f"{path} does not exist")
        info = self.mount_info(path)
        total = self.devices[info.source].fs_size if info and info.source in self.devices else 1 << 30
        return FsStats(total, total - 4096, 4096, 1000, 990, 10)

    def device_size(self, device: str) -> int:
        return self._device(self._bound_devices.get(device, device)).size

    def device_number(self, path: str) -> str | None:
        path = self._bound_devices.get(path, path)
        return self.devices[path].number if path in self.devices else None

    def device_serial(self, device: str) -> str:
        return self._device(device).serial

    def exists(self, path: str) -> bool:
        return path in self.dirs or path in self.files or path in self.devices

    def make_dir(self, path: str) -> None:
        self.dirs.add(path)

    def make_file(self, path: str) -> None:
        self.files.add(path)

    def remove(self, path: str) -> None:
        if self.mount_info(path) is not None:
            raise Internal(f"rmdir {path}: device or resource busy")
        self.dirs.discard(path)
        self.files.discard(path)
        self.calls.append(("remove", path))


@dataclass
class FakeResolver:
    """DeviceResolver over a volume id → device table; an unknown volume is NotFound."""

    volumes: dict[str, str] = field(default_factory=dict)

    def resolve(self, volume_id: str, publish_context: Mapping[str, str]) -> str:
        if volume_id not in self.volumes:
            raise NotFound(f"no device for volume {volume_id}")
        return self.volumes[volume_id]
