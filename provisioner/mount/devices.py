"""Which block device holds a volume, and the proof that it is that volume.

A device is used only when one of these shows it is the volume (``vol-0abc…``):

1. **Serial.** EBS NVMe controllers report ``vol0abc…`` (the id without its dash) as their serial:
   ``/sys/block/X/device/serial``, ``/sys/block/X/serial`` (virtio) or ``nvme id-ctrl``. A serial
   naming anything else (another volume, ``overlay``…) refuses the device, whatever else says.
2. **udev link.** ``/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc…`` was made by udev from
   that serial; it is accepted when the device it resolves to has no readable serial.
3. **Loop devices of the embedded cloud**: the backing file is named exactly after the volume id and
   lies in one of ``loop_dirs`` (the embedded cloud's state folder). ``loop_dirs=()`` never accepts a
   loop device (``zonal node`` on a real instance); ``None`` accepts the file in any folder (the
   in-process demo and tests that make their own loop devices).
4. **Xen instances** (``/sys/hypervisor/type`` is ``xen``; their disks have no serial): the device
   the attachment record names (``devicePath``, ``/dev/sdf`` read as ``/dev/xvdf``) is accepted
   when its size equals the volume's size the controller put in ``publish_context`` (or exceeds it:
   EBS volumes only grow). Without that size there is no second check, and the device is refused.

``devicePath`` is a hint, never proof. Candidates are the udev link, the hint, and a scan of
``/sys/block`` for the serial or the loop backing file; each must resolve to a whole-disk block
device node under ``/dev``. The facts that decide whether a proven device is *free* (partitions,
holders) are returned with it; mounts and swap are the core's to check.

This module reads /dev and /sys (roots injectable for tests); it decides nothing about mounting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound, ZonalError, shown
from provisioner.mount.commands import run
from provisioner.ports.node import BlockDevice

log = logging.getLogger(__name__)

DEVICE_PATH_KEY = "devicePath"
# The volume's size in bytes at attach time: the second check of a Xen device (see the docstring).
VOLUME_SIZE_KEY = "volumeSizeBytes"
NVME_BY_ID_PREFIX = "disk/by-id/nvme-Amazon_Elastic_Block_Store_"
PROBE_TIMEOUT = 30.0
_VOLUME_ID_RE = re.compile(r"^vol-[0-9a-zA-Z]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_SCAN = 4096  # block devices looked at in one scan of /sys/block


def normalize_serial(value: str) -> str:
    """``vol-0abc`` and ``vol0abc`` compare equal (EBS NVMe serials drop the dash)."""
    return value.strip().lower().replace("-", "")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class _Candidate:
    path: str  # as named (a link, a hint, a scan result)
    via: str  # "udev link", "devicePath", "scan"


class SysfsDeviceResolver:
    """Implements :class:`provisioner.ports.node.DeviceResolver` over /dev and /sys."""

    def __init__(
        self,
        dev_root: str = "/dev",
        sys_root: str = "/sys",
        loop_dirs: Sequence[str] | None = None,
        use_nvme_cli: bool = True,
        proc_root: str = "/proc",
    ) -> None:
        self.dev_root = dev_root.rstrip("/") or "/"
        self.sys_root = Path(sys_root)
        self.proc_root = Path(proc_root)
        self.loop_dirs = None if loop_dirs is None else tuple(os.path.realpath(d) for d in loop_dirs)
        self.use_nvme_cli = use_nvme_cli

    # -- finding candidates -------------------------------------------------------------------

    def by_id_path(self, volume_id: str) -> str:
        return f"{self.dev_root}/{NVME_BY_ID_PREFIX}{volume_id.replace('-', '')}"

    def xen(self) -> bool:
        return _read(self.sys_root / "hypervisor" / "type") == "xen"

    def _under_dev(self, path: str) -> bool:
        return path.startswith(self.dev_root + "/")

    def _hint(self, given: str) -> list[str]:
        if (
            not given.startswith("/")
            or ".." in given.split("/")
            or not self._under_dev(given)
            or _CONTROL.search(given)
            or len(given) > 1024
        ):
            raise InvalidArgument(
                f"publish_context {DEVICE_PATH_KEY} {shown(given)} must be an absolute path under "
                f"{self.dev_root}"
            )
        paths = [given]
        name = given[len(self.dev_root) + 1 :]
        if re.fullmatch(r"sd[a-z]{1,2}", name):
            paths.append(f"{self.dev_root}/xvd{name[2:]}")  # Xen names /dev/sdf as /dev/xvdf
        return paths

    def _scan(self, volume_id: str) -> list[str]:
        """Block devices whose serial or loop backing file names the volume (no udev needed)."""
        found = []
        want = normalize_serial(volume_id)
        try:
            names = sorted(os.listdir(self.sys_root / "block"))[:_MAX_SCAN]
        except OSError:
            return []
        for name in names:
            block = self.sys_root / "block" / name
            serial = self._sysfs_serial(block)
            backing = self._backing_file(block)
            if (serial and normalize_serial(serial) == want) or (
                backing and os.path.basename(backing) == volume_id
            ):
                found.append(f"{self.dev_root}/{name}")
        return found

    # -- facts about one device -----------------------------------------------------------------

    @staticmethod
    def _sysfs_serial(block: Path) -> str:
        return _read(block / "device" / "serial") or _read(block / "serial")

    @staticmethod
    def _backing_file(block: Path) -> str:
        # A deleted backing file keeps its " (deleted)" mark: that volume is gone, nothing matches it.
        return _read(block / "loop" / "backing_file")

    def _nvme_serial(self, name: str) -> str:
        if not (self.use_nvme_cli and name.startswith("nvme") and shutil.which("nvme")):
            return ""
        try:
            out = run(["nvme", "id-ctrl", "-o", "json", f"{self.dev_root}/{name}"], PROBE_TIMEOUT).stdout
            return str(json.loads(out).get("sn", "")).strip()
        except (ZonalError, ValueError, AttributeError):
            return ""

    def _sysfs_dir(self, major_minor: str) -> Path | None:
        link = self.sys_root / "dev" / "block" / major_minor
        try:
            return Path(os.path.realpath(link, strict=True))
        except OSError:
            return None

    # -- proof ----------------------------------------------------------------------------------

    def resolve(self, volume_id: str, publish_context: Mapping[str, str]) -> BlockDevice:
        if not _VOLUME_ID_RE.match(volume_id):
            # CSI NodeStageVolume: "Volume does not exist" → NOT_FOUND: no EBS volume has this id.
            raise NotFound(f"{shown(volume_id)} is not an EBS volume id")
        refused: list[str] = []
        seen: set[str] = set()
        looked: list[str] = []
        given = publish_context.get(DEVICE_PATH_KEY, "")
        hints = self._hint(given) if given else []  # a bad hint is refused even when the link proves
        for candidate in self._candidates(volume_id, hints):
            looked.append(candidate.path)
            if not os.path.lexists(candidate.path):
                continue
            real = os.path.realpath(candidate.path)
            if real in seen:
                continue
            seen.add(real)
            try:
                return self._prove(volume_id, candidate, real, publish_context)
            except FailedPrecondition as e:
                refused.append(str(e))
        if refused:
            # A stale symlink, a reused name or a wrong hint must never get another disk formatted.
            raise FailedPrecondition(
                f"no device is provably volume {volume_id}; refused: {'; '.join(refused)}"
            )
        # CSI NodeStageVolume: "Volume does not exist" → NOT_FOUND (not attached to this node).
        tried = ", ".join(shown(p) for p in looked)
        raise NotFound(f"no device of volume {volume_id} on this node (looked at {tried} and /sys/block)")

    def _candidates(self, volume_id: str, hints: list[str]) -> Iterator[_Candidate]:
        """The udev link, the hints, then the scan: the scan of /sys/block (two reads per device) runs
        only when the link and the hints prove nothing, since every Node call resolves the volume."""
        yield _Candidate(self.by_id_path(volume_id), "udev link")
        yield from (_Candidate(p, DEVICE_PATH_KEY) for p in hints)
        yield from (_Candidate(p, "scan") for p in self._scan(volume_id))

    def _prove(
        self, volume_id: str, candidate: _Candidate, real: str, publish_context: Mapping[str, str]
    ) -> BlockDevice:
        named = (
            shown(candidate.path) if candidate.path == real else f"{shown(candidate.path)} ({shown(real)})"
        )
        if not self._under_dev(real):
            raise FailedPrecondition(f"{named} is outside {self.dev_root}")
        try:
            st = os.stat(real)
        except OSError as e:
            raise FailedPrecondition(f"{named}: {e.strerror}") from e
        if not stat.S_ISBLK(st.st_mode):
            raise FailedPrecondition(f"{named} is not a block device")
        number = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        block = self._sysfs_dir(number)
        if block is None:
            raise FailedPrecondition(f"{named} (device {number}) has no entry in {self.sys_root}/dev/block")
        if (block / "partition").exists():
            raise FailedPrecondition(f"{named} is a partition, not a whole EBS volume")
        name = block.name
        proof = self._proof(volume_id, candidate, named, name, block, publish_context)
        size = _int(_read(block / "size")) * 512  # sysfs counts 512-byte sectors
        return BlockDevice(
            path=real,
            major_minor=number,
            size=size,
            proof=proof,
            partitions=self._partitions(block),
            holders=tuple(sorted(_listdir(block / "holders"))),
            appearance=self._appearance(block),
        )

    def _appearance(self, block: Path) -> str:
        """The boot id and the disk's sequence number (Linux ≥ 5.15 gives each disk that appears a
        new one), or "" when either is unknown."""
        seq = _read(block / "diskseq")
        boot = _read(self.proc_root / "sys" / "kernel" / "random" / "boot_id")
        return f"{boot}/{seq}" if seq and boot else ""

    def _proof(
        self,
        volume_id: str,
        candidate: _Candidate,
        named: str,
        name: str,
        block: Path,
        publish_context: Mapping[str, str],
    ) -> str:
        want = normalize_serial(volume_id)
        backing = self._backing_file(block)
        if backing or name.startswith("loop"):
            folder = os.path.dirname(os.path.realpath(backing)) if backing else ""
            allowed = self.loop_dirs is None or folder in self.loop_dirs
            if backing and os.path.basename(backing) == volume_id and allowed:
                return f"loop device {name} backed by {backing}"
            raise FailedPrecondition(
                f"{named} is a loop device backed by {shown(backing or '(nothing)')}, not by the "
                f"embedded cloud's file of {volume_id}"
            )
        serial = self._sysfs_serial(block) or self._nvme_serial(name)
        if serial:
            if normalize_serial(serial) == want:
                return f"{name} has serial {serial}"
            raise FailedPrecondition(f"{named} has serial {shown(serial)}, not {want}")
        if candidate.via == "udev link":
            return f"{name} is linked by udev as {candidate.path}"
        if candidate.via == DEVICE_PATH_KEY and self.xen():
            return self._xen_proof(volume_id, named, name, block, publish_context)
        raise FailedPrecondition(f"{named} has no serial: nothing shows it is {volume_id}")

    def _xen_proof(
        self, volume_id: str, named: str, name: str, block: Path, publish_context: Mapping[str, str]
    ) -> str:
        expected = _int(publish_context.get(VOLUME_SIZE_KEY, ""))
        if expected <= 0:
            raise FailedPrecondition(
                f"{named} has no serial and publish_context carries no {VOLUME_SIZE_KEY} to check it "
                f"against (a Xen instance names disks only by attachment order)"
            )
        size = _int(_read(block / "size")) * 512
        if size < expected:
            raise FailedPrecondition(
                f"{named} is {size} bytes, smaller than volume {volume_id}'s {expected}: not that volume"
            )
        return f"{name} named by the attachment of {volume_id} on Xen, {size} bytes (volume {expected})"

    def _partitions(self, block: Path) -> tuple[tuple[str, str], ...]:
        out = []
        for entry in sorted(_listdir(block)):
            child = block / entry
            if (child / "partition").exists():
                out.append((entry, _read(child / "dev")))
        return tuple(out)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _int(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() else 0
