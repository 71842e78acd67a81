"""Which block device holds a volume, and proof that it is the right one.

EC2 reports a device name at attach time (``publish_context["devicePath"]``, e.g. ``/dev/xvdba``), but
on Nitro instances the disk appears as an NVMe namespace whose udev symlink
``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<id without dash>`` names the volume. Symlinks go
stale when disks come and go, so before a device is used its serial is checked against the volume id:
EBS NVMe controllers report ``vol0123…`` as their serial; loop devices of the embedded cloud report
their backing file's name (which :mod:`provisioner.embedded.loopback` sets to the volume id). A device
with a mismatching serial is refused, never formatted. Devices without a serial (Xen ``xvd*``) are
accepted as EC2 named them.

This module reads /dev and /sys (roots injectable for tests); it decides nothing about mounting.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound, ZonalError

DEVICE_PATH_KEY = "devicePath"
NVME_BY_ID_PREFIX = "disk/by-id/nvme-Amazon_Elastic_Block_Store_"
_VOLUME_ID_RE = re.compile(r"^vol-?[0-9A-Za-z]+$")
_DELETED_SUFFIX = " (deleted)"


def normalize_serial(value: str) -> str:
    """``vol-0abc`` and ``vol0abc`` compare equal (EBS NVMe serials drop the dash)."""
    return value.strip().lower().replace("-", "")


def read_serial(device: str, sys_root: str = "/sys", use_nvme_cli: bool = True) -> str:
    """The serial of ``device`` as described in the module docstring, or ``""``."""
    name = os.path.basename(os.path.realpath(device))
    block = Path(sys_root) / "block" / name
    backing = block / "loop" / "backing_file"
    if backing.exists():
        path = backing.read_text().strip().removesuffix(_DELETED_SUFFIX)
        return os.path.basename(path)
    serial = block / "device" / "serial"
    if serial.exists():
        return serial.read_text().strip()
    if use_nvme_cli and name.startswith("nvme") and shutil.which("nvme"):
        from provisioner.mount.linux import PROBE_TIMEOUT, run

        try:
            out = run(["nvme", "id-ctrl", "-o", "json", f"/dev/{name}"], PROBE_TIMEOUT).stdout
            return str(json.loads(out).get("sn", "")).strip()
        except (ZonalError, ValueError):
            return ""
    return ""


class SysfsDeviceResolver:
    """Implements :class:`provisioner.ports.node.DeviceResolver` over /dev and /sys."""

    def __init__(
        self,
        dev_root: str = "/dev",
        sys_root: str = "/sys",
        serial_reader: Callable[[str], str] | None = None,
    ) -> None:
        self.dev_root = dev_root.rstrip("/") or "/"
        self.sys_root = sys_root
        self._serial = serial_reader or (lambda dev: read_serial(dev, self.sys_root))

    def _under_dev(self, path: str) -> bool:
        return path.startswith(self.dev_root + "/")

    def by_id_path(self, volume_id: str) -> str:
        return f"{self.dev_root}/{NVME_BY_ID_PREFIX}{volume_id.replace('-', '')}"

    def resolve(self, volume_id: str, publish_context: Mapping[str, str]) -> str:
        if not _VOLUME_ID_RE.match(volume_id):
            raise NotFound(f"{volume_id!r} is not an EBS volume id")
        candidates = []
        given = publish_context.get(DEVICE_PATH_KEY, "")
        if given:
            if not given.startswith("/") or ".." in given.split("/") or not self._under_dev(given):
                raise InvalidArgument(f"device path {given!r} must be an absolute path under {self.dev_root}")
            candidates.append(given)
        candidates.append(self.by_id_path(volume_id))
        refused = []
        for candidate in candidates:
            if not os.path.exists(candidate):  # also false for a dangling symlink
                continue
            real = os.path.realpath(candidate)
            if not self._under_dev(real):
                refused.append(f"{candidate} resolves to {real}, outside {self.dev_root}")
                continue
            serial = self._serial(real)
            if serial and normalize_serial(serial) != normalize_serial(volume_id):
                refused.append(f"{candidate} ({real}) has serial {serial}")
                continue
            return real
        if refused:
            # A stale symlink or a reused device name must never get the wrong disk formatted.
            raise FailedPrecondition(f"no device of volume {volume_id} found; refused: {'; '.join(refused)}")
        # CSI NodeStageVolume: "Volume does not exist" → NOT_FOUND.
        raise NotFound(f"no device for volume {volume_id} (tried {', '.join(candidates)})")
