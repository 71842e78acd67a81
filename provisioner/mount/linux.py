"""The Linux mounter: mkfs, mount, blkid, fsck and resize on paths walked without following symlinks.

Commands run through :func:`provisioner.mount.commands.run` (bounded by the RPC's deadline, in their
own process group, killed on stop). Paths reach a command as ``/proc/self/fd/N`` of a descriptor
opened by :mod:`provisioner.mount.paths`, so ``mount``/``umount`` act on exactly the directory or
file that was checked. Mount state is read from /proc/self/mountinfo and /proc/swaps; sizes and stats
come from the kernel directly. A command that fails becomes FailedPrecondition carrying its stderr
(the operator's clue; never INTERNAL). This module must not decide policy (whether to format, what
to mount where): :class:`provisioner.node.NodeCore` does.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from provisioner.errors import FailedPrecondition, Internal, InvalidArgument, NotFound, shown
from provisioner.mount import paths
from provisioner.mount.commands import CommandFailed, run
from provisioner.ports.node import FormatOptions, FsStats, MountInfo, PathKind, PathState

__all__ = ["CommandFailed", "LinuxMounter", "ext_args", "parse_mountinfo", "run", "xfs_args"]

log = logging.getLogger(__name__)

MKFS_TIMEOUT = 300.0
MOUNT_TIMEOUT = 60.0
PROBE_TIMEOUT = 30.0
RESIZE_TIMEOUT = 300.0
_MIB = 1024 * 1024
# Flags a bind mount takes on its remount; filesystem options already came with the staging mount.
_PER_MOUNT_FLAGS = frozenset(
    {"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime"}
    | {"nodiratime", "diratime", "relatime", "norelatime", "strictatime", "nostrictatime"}
)


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
    # -F: no interactive prompt on a whole device; -m0: no root-reserved blocks on a data volume;
    # nodiscard: the device was just proven blank, and discarding a large EBS volume can take longer
    # than the caller's deadline, which would kill every try.
    args = ["-F", "-m0", "-E", "nodiscard"]
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
    # No -f unless redoing zonal's own format: mkfs.xfs refuses to overwrite a filesystem it knows.
    # -K: no discard, as for ext above.
    args: list[str] = ["-K"]
    if o.block_size:
        args += ["-b", f"size={o.block_size}"]
    if o.inode_size:
        args += ["-i", f"size={o.inode_size}"]
    return args


def brief(text: str, lines: int = 3, limit: int = 300) -> str:
    """The first lines of a command's stderr for a message (mkfs prints its whole usage on errors)."""
    head = "; ".join([line.strip() for line in text.splitlines() if line.strip()][:lines])
    return head if len(head) <= limit else head[:limit] + "…"


def _checked(
    cmd: Sequence[str],
    timeout: float,
    what: str,
    ok_codes: Sequence[int] = (0,),
    pass_fds: Sequence[int] = (),
) -> str:
    try:
        return run(cmd, timeout, ok_codes, pass_fds).stdout
    except CommandFailed as e:
        raise FailedPrecondition(f"{what} failed: {brief(e.stderr or e.message)}") from e


def _path_errors(path: str, e: OSError) -> FailedPrecondition:
    return FailedPrecondition(f"{shown(path)}: {e.strerror or e}")


class LinuxMounter:
    """Implements :class:`provisioner.ports.node.Mounter` with util-linux, e2fsprogs and xfsprogs."""

    def __init__(self, mountinfo_path: str = "/proc/self/mountinfo", swaps_path: str = "/proc/swaps") -> None:
        self.mountinfo_path = mountinfo_path
        self.swaps_path = swaps_path

    # -- what is where ----------------------------------------------------------------------------

    def mounts(self) -> tuple[MountInfo, ...]:
        return tuple(parse_mountinfo(Path(self.mountinfo_path).read_text()))

    def inspect(self, path: str, table: tuple[MountInfo, ...] | None = None) -> PathState:
        try:
            found = paths.look(path)
        except paths.Blocked as e:
            return PathState(path, PathKind.BLOCKED, blocker=f"{shown(e.component)} is {e.why}")
        except paths.Missing:
            return PathState(path, PathKind.MISSING)
        except OSError as e:
            raise _path_errors(path, e) from e
        mounts = tuple(m for m in (self.mounts() if table is None else table) if m.target == path)
        return PathState(path, found.kind, mounts, found.entries, found.rdev, found.file_id)

    def swap_devices(self) -> frozenset[str]:
        numbers = set()
        try:
            lines = Path(self.swaps_path).read_text().splitlines()[1:]
        except OSError:
            return frozenset()
        for line in lines:
            name = _unescape(line.split()[0]) if line.split() else ""
            try:
                st = os.stat(name)
            except OSError:
                continue
            if stat.S_ISBLK(st.st_mode):
                numbers.add(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
        return frozenset(numbers)

    # -- the tree -------------------------------------------------------------------------------

    def make_dirs(self, path: str) -> tuple[str, ...]:
        try:
            return paths.make_dirs(path)
        except OSError as e:
            raise _path_errors(path, e) from e

    def make_file(self, path: str) -> str:
        try:
            return paths.make_file(path)
        except OSError as e:
            raise _path_errors(path, e) from e

    def remove_dir(self, path: str) -> None:
        try:
            paths.remove_dir(path)
        except OSError as e:
            raise _path_errors(path, e) from e

    def remove_file(self, path: str, file_id: str) -> None:
        try:
            paths.remove_file(path, file_id)
        except OSError as e:
            raise _path_errors(path, e) from e

    # -- devices --------------------------------------------------------------------------------

    def probe(self, device: str) -> str:
        # -p probes the device itself (no cache). Exit 2 with nothing on stderr is "no signature";
        # exit 2 *with* an error (EPERM, ENOENT…) or any other code means blkid could not tell.
        try:
            proc = run(["blkid", "-p", "-o", "export", device], PROBE_TIMEOUT, ok_codes=(0, 2))
        except CommandFailed as e:
            raise FailedPrecondition(
                f"cannot tell what {device} holds: blkid: {brief(e.stderr or e.message)}"
            ) from e
        if proc.returncode == 2:
            if proc.stderr.strip():
                raise FailedPrecondition(f"cannot tell what {device} holds: blkid: {brief(proc.stderr)}")
            return ""
        values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        if values.get("TYPE"):
            return values["TYPE"]
        if values.get("PTTYPE"):
            return f"partition-table:{values['PTTYPE']}"
        return "unknown-content"

    def nonzero_region(self, device: str) -> str:
        try:
            fd = os.open(device, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise FailedPrecondition(f"cannot read {device}: {e.strerror}") from e
        try:
            if not stat.S_ISBLK(os.fstat(fd).st_mode):
                raise FailedPrecondition(f"{device} is not a block device")
            size = os.lseek(fd, 0, os.SEEK_END)
            head = os.pread(fd, min(_MIB, size), 0)
            if head.strip(b"\0"):
                return "first MiB"
            tail_at = max(0, size - _MIB)
            if os.pread(fd, size - tail_at, tail_at).strip(b"\0"):
                return "last MiB"
            return ""
        except OSError as e:
            raise FailedPrecondition(f"cannot read {device}: {e.strerror}") from e
        finally:
            os.close(fd)

    def device_size(self, device: str) -> int:
        try:
            fd = os.open(device, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise NotFound(f"device {device} does not exist") from e
        except OSError as e:
            raise FailedPrecondition(f"cannot open {device}: {e.strerror}") from e
        try:
            if not stat.S_ISBLK(os.fstat(fd).st_mode):
                raise NotFound(f"{device} is not a block device")
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)

    # -- filesystems ----------------------------------------------------------------------------

    def format(self, device: str, fs_type: str, options: FormatOptions, force: bool = False) -> None:
        if fs_type in ("ext3", "ext4"):
            # mke2fs overwrites what it finds unless a terminal answers its question; mkfs.xfs refuses
            # without -f. Without ``force`` neither may: what blkid recognises is refused here.
            found = "" if force else self.probe(device)
            if found:
                raise FailedPrecondition(
                    f"mkfs.{fs_type} on {device}: it holds {found}; not formatting over it"
                )
            cmd = [f"mkfs.{fs_type}", *ext_args(fs_type, options), device]
        elif fs_type == "xfs":
            cmd = ["mkfs.xfs", *(["-f"] if force else []), *xfs_args(options), device]
        else:
            raise InvalidArgument(f"cannot format {fs_type}")
        _checked(cmd, MKFS_TIMEOUT, f"mkfs.{fs_type} on {device}")

    def filesystem_size(self, device: str, mount_path: str, fs_type: str) -> int:
        if fs_type in ("ext3", "ext4"):
            out = _checked(
                ["dumpe2fs", "-h", device], PROBE_TIMEOUT, f"reading the ext superblock of {device}"
            )
            fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}
            try:
                return int(fields["Block count"]) * int(fields["Block size"])
            except (KeyError, ValueError) as e:
                raise FailedPrecondition(f"dumpe2fs {device} printed no block count and size") from e
        if fs_type == "xfs" and mount_path:
            out = _checked(["xfs_info", mount_path], PROBE_TIMEOUT, f"xfs_info {mount_path}")
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
                _checked(["e2fsck", "-f", "-p", device], RESIZE_TIMEOUT, f"e2fsck of {device}", (0, 1, 2))
            try:
                run(["resize2fs", device], RESIZE_TIMEOUT)
            except CommandFailed as e:
                hint = (
                    " (online ext resize needs CAP_SYS_RESOURCE)" if "Permission denied" in e.stderr else ""
                )
                raise FailedPrecondition(
                    f"resize2fs {device} failed: {brief(e.stderr or e.message)}{hint}"
                ) from e
        elif fs_type == "xfs" and mount_path:
            _checked(["xfs_growfs", "-d", mount_path], RESIZE_TIMEOUT, f"xfs_growfs {mount_path}")
        else:
            raise InvalidArgument(f"cannot grow a {fs_type} filesystem")

    def fs_stats(self, path: str) -> FsStats:
        try:
            with paths.opened(path, PathKind.DIRECTORY) as fd:
                s = os.statvfs(fd)
        except paths.Missing as e:
            raise NotFound(f"{shown(path)} does not exist") from e
        except OSError as e:
            raise _path_errors(path, e) from e
        return FsStats(
            total_bytes=s.f_blocks * s.f_frsize,
            available_bytes=s.f_bavail * s.f_frsize,
            used_bytes=(s.f_blocks - s.f_bfree) * s.f_frsize,
            total_inodes=s.f_files,
            free_inodes=s.f_ffree,
            used_inodes=s.f_files - s.f_ffree,
        )

    # -- mounts ---------------------------------------------------------------------------------

    def mount(self, device: str, target: str, fs_type: str, options: tuple[str, ...]) -> None:
        cmd = ["mount", "-n", "-c", "-t", fs_type]
        if options:
            cmd += ["-o", ",".join(options)]
        with paths.opened(target, PathKind.DIRECTORY) as fd:
            _checked(
                [*cmd, device, paths.fd_path(fd)],
                MOUNT_TIMEOUT,
                f"mounting {device} at {shown(target)}",
                pass_fds=(fd,),
            )

    def bind_mount(self, source: str, target: str, read_only: bool, options: tuple[str, ...]) -> None:
        source_kind = paths.look(source).kind
        if source_kind not in (PathKind.DIRECTORY, PathKind.BLOCK_DEVICE):
            raise FailedPrecondition(f"cannot bind {shown(source)}: it is a {source_kind.value}")
        target_kind = PathKind.DIRECTORY if source_kind is PathKind.DIRECTORY else PathKind.FILE
        with paths.opened(source, source_kind) as src, paths.opened(target, target_kind) as dst:
            _checked(
                ["mount", "-n", "-c", "--bind", paths.fd_path(src), paths.fd_path(dst)],
                MOUNT_TIMEOUT,
                f"binding {shown(source)} at {shown(target)}",
                pass_fds=(src, dst),
            )
        flags = [o for o in options if o in _PER_MOUNT_FLAGS and o != "rw"]
        if read_only:
            flags.append("ro")
        if not flags:
            return
        # A bind mount takes per-mount flags (ro, noexec…) only on a remount of the new mount itself:
        # opened again, the path now leads to the root of that mount.
        try:
            with paths.opened(target, source_kind) as fd:
                _checked(
                    ["mount", "-n", "-c", "-o", ",".join(["remount", "bind", *flags]), paths.fd_path(fd)],
                    MOUNT_TIMEOUT,
                    f"remounting {shown(target)} {','.join(flags)}",
                    pass_fds=(fd,),
                )
        except BaseException:
            self.unmount(target)
            raise

    def unmount(self, target: str) -> None:
        # Through the parent's descriptor: one held on the mount itself would keep it busy.
        with paths.parent_of(target) as parent:
            _checked(
                ["umount", "-n", "-c", paths.fd_path(parent.fd, parent.name)],
                MOUNT_TIMEOUT,
                f"unmounting {shown(target)}",
                pass_fds=(parent.fd,),
            )
