"""Real block devices for the embedded cloud: a sparse file per volume on a loop device.

With ``--cloud embedded`` an attached volume must be something NodeStage can format and mount, so
the embedded EC2 calls :class:`LoopBacker` on attach (``back``), detach (``detach``), delete
(``release``) and resize (``resize``). The file is named exactly after the volume id inside
``state_dir``; :mod:`provisioner.mount.devices` reads that name back from
``/sys/block/loopN/loop/backing_file`` as the device's serial, which is how a loop device proves which
volume it holds. Needs root (losetup). It does not format or mount anything.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from provisioner.errors import InvalidArgument, NotFound, ResourceExhausted
from provisioner.mount.linux import CommandFailed, run

log = logging.getLogger(__name__)

LOSETUP_TIMEOUT = 30.0
_VOLUME_ID_RE = re.compile(r"^vol-[0-9A-Za-z]+$")


class LoopBacker:
    """Implements :class:`provisioner.ports.node.BlockBacker` with ``losetup`` over sparse files."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)

    def path(self, volume_id: str) -> Path:
        if not _VOLUME_ID_RE.match(volume_id):
            raise InvalidArgument(f"{volume_id!r} is not a volume id")
        return self.state_dir / volume_id

    def devices(self, volume_id: str) -> list[str]:
        """The loop devices currently attached to the volume's file (normally zero or one)."""
        path = self.path(volume_id)
        if not path.exists():
            return []
        out = run(["losetup", "--associated", str(path), "--noheadings", "--output", "NAME"], LOSETUP_TIMEOUT)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]

    def back(self, volume_id: str, size_bytes: int) -> str:
        path = self.path(volume_id)
        if size_bytes <= 0 or size_bytes % 512:
            raise InvalidArgument(f"size {size_bytes} must be a positive multiple of 512 bytes")
        attached = self.devices(volume_id)
        if attached:
            return attached[0]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            with open(path, "wb") as f:
                f.truncate(size_bytes)  # sparse: no disk space until written
        try:
            out = run(["losetup", "--find", "--show", str(path)], LOSETUP_TIMEOUT)
        except CommandFailed as e:
            if "could not find any free loop device" in e.stderr.lower():
                raise ResourceExhausted(f"no free loop device for volume {volume_id}") from e
            raise
        device = out.stdout.strip()
        log.info("volume %s backed by %s (%s)", volume_id, device, path)
        return device

    def detach(self, volume_id: str) -> None:
        for device in self.devices(volume_id):
            try:
                run(["losetup", "--detach", device], LOSETUP_TIMEOUT)
            except CommandFailed as e:
                if "no such device" not in e.stderr.lower():
                    raise
            log.info("volume %s: detached %s", volume_id, device)

    def release(self, volume_id: str) -> None:
        self.detach(volume_id)
        try:
            self.path(volume_id).unlink()
        except FileNotFoundError:
            return

    def resize(self, volume_id: str, size_bytes: int) -> None:
        path = self.path(volume_id)
        if not path.exists():
            raise NotFound(f"volume {volume_id} has no backing file")
        if size_bytes > path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(size_bytes)
        for device in self.devices(volume_id):
            run(["losetup", "--set-capacity", device], LOSETUP_TIMEOUT)  # the kernel re-reads the size
