"""Real block devices for the embedded cloud: a sparse file per volume on a loop device.

With ``--cloud embedded`` an attached volume must be something NodeStage can format and mount, so
the embedded EC2 calls :class:`LoopBacker` on attach (``back``), detach (``detach``), delete
(``release``) and resize (``resize``). The file is named exactly after the volume id inside
``state_dir``; :mod:`provisioner.mount.devices` reads that name back from
``/sys/block/loopN/loop/backing_file`` as the device's serial, which is how a loop device proves which
volume it holds. Snapshots are sparse copies of that file named after the snapshot id in the same
folder (``snapshot``/``restore``/``drop_snapshot``); they are never attached to a loop device. Needs
root (losetup) for devices; the copies do not. It does not format or mount anything.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted
from provisioner.mount.linux import CommandFailed, run

if TYPE_CHECKING:
    from provisioner.embedded.ledger import Ledger

log = logging.getLogger(__name__)

LOSETUP_TIMEOUT = 30.0
_VOLUME_ID_RE = re.compile(r"^vol-[0-9A-Za-z]+$")
_SNAPSHOT_ID_RE = re.compile(r"^snap-[0-9A-Za-z]+$")
_CHUNK = 64 * 1024 * 1024  # most bytes asked of one copy_file_range / read call
# copy_file_range refuses some pairs of files (old kernels across filesystems, special files).
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF})


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of every region of ``fd`` that may hold data; holes are left out. A
    filesystem that cannot tell (no SEEK_DATA) reports the whole file as one region."""
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole from here to the end
                break
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return [(0, size)] if size else []
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end > start:
            extents.append((start, end - start))
        offset = end
    return extents


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Copy ``length`` bytes at ``offset`` from ``src`` to the same offset of ``dst``."""
    done = 0
    use_kernel = True
    while done < length:
        want = min(_CHUNK, length - done)
        pos = offset + done
        if use_kernel:
            try:
                n = os.copy_file_range(src, dst, want, pos, pos)
            except OSError as e:
                if e.errno not in _NO_COPY_RANGE:
                    raise
                use_kernel = False
                continue
        else:
            chunk = os.pread(src, want, pos)
            n = os.pwrite(dst, chunk, pos) if chunk else 0
        if n == 0:
            raise OSError(errno.EIO, f"source ended {length - done} bytes early at offset {pos}")
        done += n


def sparse_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> int:
    """Copy ``source`` to a new file ``target`` (same size, holes kept as holes) and fsync it; return
    the number of data bytes copied. Written under a temporary name and renamed, so ``target`` is
    either absent or complete. Raises FileExistsError if ``target`` exists."""
    target = Path(target)
    partial = target.with_name(f".{target.name}.partial")
    copied = 0
    with open(source, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        with open(partial, "wb") as dst:
            try:
                for offset, length in _data_extents(src.fileno(), size):
                    _copy_range(src.fileno(), dst.fileno(), offset, length)
                    copied += length
                dst.truncate(size)  # a trailing hole: the size without the blocks
                os.fsync(dst.fileno())
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
                raise
    try:
        os.link(partial, target)  # unlike rename, never replaces an existing target
    finally:
        partial.unlink()
    return copied


class LoopBacker:
    """Implements :class:`provisioner.ports.node.BlockBacker` with ``losetup`` over sparse files."""

    def __init__(self, state_dir: str | os.PathLike[str], ledger: Ledger | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.ledger = ledger  # every file and loop device made here is recorded in it first

    def path(self, volume_id: str) -> Path:
        if not _VOLUME_ID_RE.match(volume_id):
            raise InvalidArgument(f"{volume_id!r} is not a volume id")
        return self.state_dir / volume_id

    def snapshot_path(self, snapshot_id: str) -> Path:
        if not _SNAPSHOT_ID_RE.match(snapshot_id):
            raise InvalidArgument(f"{snapshot_id!r} is not a snapshot id")
        return self.state_dir / snapshot_id

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
        if self.ledger is not None:
            self.ledger.file_made(path)  # before losetup: a crash in between still finds the device
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
        if self.ledger is not None:
            self.ledger.loop_made(device, path)
        log.info("volume %s backed by %s (%s)", volume_id, device, path)
        return device

    def detach(self, volume_id: str) -> None:
        for device in self.devices(volume_id):
            try:
                run(["losetup", "--detach", device], LOSETUP_TIMEOUT)
            except CommandFailed as e:
                if "no such device" not in e.stderr.lower():
                    raise
            if self.ledger is not None:
                self.ledger.loop_removed(device)
            log.info("volume %s: detached %s", volume_id, device)

    def release(self, volume_id: str) -> None:
        self.detach(volume_id)
        path = self.path(volume_id)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if self.ledger is not None:
            self.ledger.file_removed(path)

    def resize(self, volume_id: str, size_bytes: int) -> None:
        path = self.path(volume_id)
        if not path.exists():
            raise NotFound(f"volume {volume_id} has no backing file")
        if size_bytes > path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(size_bytes)
        for device in self.devices(volume_id):
            run(["losetup", "--set-capacity", device], LOSETUP_TIMEOUT)  # the kernel re-reads the size

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        source = self.path(volume_id)
        target = self.snapshot_path(snapshot_id)
        if not source.exists():
            return  # never backed: all zeros, which a missing snapshot file means too
        # Crash-consistent like EBS: what the kernel holds for the loop device (and, by os.sync, a
        # mounted filesystem's written-back pages) reaches the file first. Unsynced data inside a
        # mounted filesystem is the user's to flush (fsfreeze/sync), as on EC2.
        for device in self.devices(volume_id):
            fd = os.open(device, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.sync()
        with contextlib.suppress(FileNotFoundError):
            target.unlink()  # a snapshot id is never reused: a leftover of this id is stale
        copied = sparse_copy(source, target)
        log.info("snapshot %s of volume %s: %d bytes of data (%s)", snapshot_id, volume_id, copied, target)

    def restore(self, volume_id: str, snapshot_id: str, size_bytes: int) -> None:
        target = self.path(volume_id)
        source = self.snapshot_path(snapshot_id)
        if size_bytes <= 0 or size_bytes % 512:
            raise InvalidArgument(f"size {size_bytes} must be a positive multiple of 512 bytes")
        if target.exists():
            raise AlreadyExists(f"volume {volume_id} already has a backing file")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.ledger is not None:
            self.ledger.file_made(target)
        try:
            snapshot_size = source.stat().st_size
        except FileNotFoundError:
            snapshot_size = 0  # the snapshot kept nothing: the volume starts as zeros
        if size_bytes < snapshot_size:
            raise InvalidArgument(
                f"size {size_bytes} is below snapshot {snapshot_id}'s {snapshot_size} bytes"
            )
        if snapshot_size:
            sparse_copy(source, target)
            with open(target, "r+b") as f:
                f.truncate(size_bytes)  # the new volume may be bigger than its snapshot
        else:
            with open(target, "xb") as f:
                f.truncate(size_bytes)
        log.info("volume %s restored from snapshot %s (%d bytes)", volume_id, snapshot_id, size_bytes)

    def drop_snapshot(self, snapshot_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.snapshot_path(snapshot_id).unlink()
