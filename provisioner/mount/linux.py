"""The Linux mounter: the one place in zonal that runs OS commands (mkfs, mount, blkid, resize2fs…).

Every command goes through :func:`run`, which applies a timeout and turns a failure into a domain
error whose message carries the command's stderr. Mount state is read from /proc/self/mountinfo and
sizes and stats come from the kernel directly, not from parsing tool output. This module must not
decide policy (whether to format, what to mount where): :class:`provisioner.node.NodeCore` does.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from provisioner.errors import DeadlineExceeded, Internal, InvalidArgument, NotFound
from provisioner.ports.node import FormatOptions, FsStats, MountInfo

log = logging.getLogger(__name__)

MKFS_TIMEOUT = 300.0
MOUNT_TIMEOUT = 60.0
PROBE_TIMEOUT = 30.0
RESIZE_TIMEOUT = 300.0


class CommandFailed(Internal):
    """An OS command exited non-zero; ``returncode`` and ``stderr`` say how."""

    def __init__(self, message: str, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def run(
    cmd: Sequence[str], timeout: float, ok_codes: Sequence[int] = (0,)
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (never through a shell) and return it; CommandFailed (with stderr) or
    DeadlineExceeded otherwise. ``ok_codes`` lists exit codes the caller handles itself."""
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        raise DeadlineExceeded(f"{' '.join(cmd)} did not finish within {timeout:g}s") from e
    except FileNotFoundError as e:
        raise CommandFailed(f"{cmd[0]} is not installed (needed for {' '.join(cmd)})", 127, str(e)) from e
    if proc.returncode not in ok_codes:
        stderr = (proc.stderr or proc.stdout).strip()
        raise CommandFailed(
            f"{' '.join(cmd)} failed with exit code {proc.returncode}: {stderr or '(no output)'}",
            proc.returncode,
            stderr,
        )
    return proc


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as octal (\040 …).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountInfo]:
    """All mounts in /proc/self/mountinfo order (later lines are mounted on top of earlier ones)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        mounts.append(
            MountInfo(
                target=_unescape(fields[4]),
                source=_unescape(tail[1]),
                fs_type=tail[0],
                major_minor=fields[2],
                root=_unescape(fields[3]),
                options=tuple(fields[5].split(",")),
            )
        )
    return mounts


def ext_args(fs_type: str, o: FormatOptions) -> list[str]:
    # -F: no interactive prompt on a whole device; -m0: no root-reserved blocks on a data volume.
    args = ["-F", "-m0"]
    if o.block_size:
        args += ["-b", str(o.block_size)]
    if o.inode_size:
        args += ["-I", str(o.inode_size)]
    if o.bytes_per_inode:
        args += ["-i", str(o.bytes_per_inode)]
    if o.number_of_inodes:
        args += ["-N", str(o.number_of_inodes)]
    if o.ext4_bigalloc:
        args += ["-O", "bigalloc"]
    if o.ext4_cluster_size:
        args += ["-C", str(o.ext4_cluster_size)]
    if o.ext4_encrypt:
        args += ["-O", "encrypt"]  # ext4EncryptionSupport: fscrypt-capable filesystem
    return args


def xfs_args(o: FormatOptions) -> list[str]:
    # No -f: mkfs.xfs itself refuses to overwrite a filesystem it recognises (a second safety net).
    args: list[str] = []
    if o.block_size:
        args += ["-b", f"size={o.block_size}"]
    if o.inode_size:
        args += ["-i", f"size={o.inode_size}"]
    return args


class LinuxMounter:
    """Implements :class:`provisioner.ports.node.Mounter` with util-linux, e2fsprogs and xfsprogs."""

    def __init__(self, mountinfo_path: str = "/proc/self/mountinfo") -> None:
        self.mountinfo_path = mountinfo_path

    def format(self, device: str, fs_type: str, options: FormatOptions) -> None:
        if fs_type in ("ext3", "ext4"):
            cmd = [f"mkfs.{fs_type}", *ext_args(fs_type, options), device]
        elif fs_type == "xfs":
            cmd = ["mkfs.xfs", *xfs_args(options), device]
        else:
            raise InvalidArgument(f"cannot format {fs_type}")
        run(cmd, MKFS_TIMEOUT)

    def mount(self, device: str, target: str, fs_type: str, options: tuple[str, ...]) -> None:
        cmd = ["mount", "-t", fs_type]
        if options:
            cmd += ["-o", ",".join(options)]
        run([*cmd, device, target], MOUNT_TIMEOUT)

    def bind_mount(self, source: str, target: str, read_only: bool, options: tuple[str, ...]) -> None:
        run(["mount", "--bind", source, target], MOUNT_TIMEOUT)
        remount = [o for o in options if o != "nouuid"]  # fs-level option; meaningless on a bind remount
        if read_only:
            remount.append("ro")
        if remount:
            # A bind mount takes per-mount flags (ro, noexec…) only on a remount.
            try:
                run(["mount", "-o", ",".join(["remount", "bind", *remount]), target], MOUNT_TIMEOUT)
            except Exception:
                run(["umount", target], MOUNT_TIMEOUT)
                raise

    def unmount(self, target: str) -> None:
        run(["umount", target], MOUNT_TIMEOUT)

    def mount_info(self, path: str) -> MountInfo | None:
        real = os.path.realpath(path)
        found = None
        for m in parse_mountinfo(Path(self.mountinfo_path).read_text()):
            if m.target == real:
                found = m  # the last one is on top
        return found

    def fs_type(self, device: str) -> str:
        if not os.path.exists(device):
            raise NotFound(f"device {device} does not exist")
        # -p probes the device itself (no cache); exit 2 means nothing was found on it.
        proc = run(["blkid", "-p", "-o", "export", device], PROBE_TIMEOUT, ok_codes=(0, 2))
        if proc.returncode == 2:
            return ""
        values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        if values.get("TYPE"):
            return values["TYPE"]
        if values.get("PTTYPE"):
            return f"partition-table:{values['PTTYPE']}"
        return "unknown-content"

    def filesystem_size(self, device: str, mount_path: str, fs_type: str) -> int:
        if fs_type in ("ext3", "ext4"):
            out = run(["dumpe2fs", "-h", device], PROBE_TIMEOUT).stdout
            fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}
            return int(fields["Block count"]) * int(fields["Block size"])
        if fs_type == "xfs" and mount_path:
            out = run(["xfs_info", mount_path], PROBE_TIMEOUT).stdout
            for line in out.splitlines():
                if line.startswith("data"):
                    words = dict(w.split("=", 1) for w in line.replace(",", " ").split() if "=" in w)
                    return int(words["bsize"]) * int(words["blocks"])
            raise Internal(f"xfs_info {mount_path} printed no data section")
        raise InvalidArgument(f"cannot measure a {fs_type} filesystem")

    def resize_fs(self, device: str, mount_path: str, fs_type: str) -> None:
        if fs_type in ("ext3", "ext4"):
            if not mount_path:
                # resize2fs insists on a freshly checked filesystem when offline; exit 1/2 = fixed.
                run(["e2fsck", "-f", "-p", device], RESIZE_TIMEOUT, ok_codes=(0, 1, 2))
            try:
                run(["resize2fs", device], RESIZE_TIMEOUT)
            except CommandFailed as e:
                if "Permission denied" in e.stderr and mount_path:
                    raise Internal(f"{e.message} (online ext resize needs CAP_SYS_RESOURCE)") from e
                raise
        elif fs_type == "xfs" and mount_path:
            run(["xfs_growfs", "-d", mount_path], RESIZE_TIMEOUT)
        else:
            raise InvalidArgument(f"cannot grow a {fs_type} filesystem")

    def fs_stats(self, path: str) -> FsStats:
        try:
            s = os.statvfs(path)
        except FileNotFoundError as e:
            raise NotFound(f"{path} does not exist") from e
        return FsStats(
            total_bytes=s.f_blocks * s.f_frsize,
            available_bytes=s.f_bavail * s.f_frsize,
            used_bytes=(s.f_blocks - s.f_bfree) * s.f_frsize,
            total_inodes=s.f_files,
            free_inodes=s.f_ffree,
            used_inodes=s.f_files - s.f_ffree,
        )

    def device_size(self, device: str) -> int:
        try:
            fd = os.open(device, os.O_RDONLY)
        except FileNotFoundError as e:
            raise NotFound(f"device {device} does not exist") from e
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)

    def device_number(self, path: str) -> str | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISBLK(st.st_mode):
            return None
        return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"

    def device_serial(self, device: str) -> str:
        from provisioner.mount.devices import read_serial

        return read_serial(device)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def make_dir(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def make_file(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            with open(path, "a"):
                pass

    def remove(self, path: str) -> None:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.remove(path)
        except FileNotFoundError:
            return
