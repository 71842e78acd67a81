"""The node's I/O boundaries: the mounter, device discovery, instance metadata and (for the embedded
cloud) a block-device backer.

:class:`provisioner.node.NodeCore` talks to the machine only through these protocols, so every rule of
NodeStage/NodePublish is tested against the stateful ``FakeMounter`` without root. The Linux adapters
live in :mod:`provisioner.mount`; the metadata sources in :mod:`provisioner.aws.imds` and
:mod:`provisioner.kube.nodeinfo`. This module performs no I/O and names no OS command.

Every method may raise :class:`~provisioner.errors.Internal` when the OS command behind it fails
(the message carries the command's stderr) and :class:`~provisioner.errors.DeadlineExceeded` when it
times out; the docstrings list only the other errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

SUPPORTED_FS_TYPES = ("ext4", "ext3", "xfs")
DEFAULT_FS_TYPE = "ext4"


@dataclass(frozen=True)
class MountInfo:
    """One mount as the kernel reports it (the topmost one when mounts are stacked on a path)."""

    target: str
    source: str  # what the kernel names as the source: a device path for disk filesystems
    fs_type: str
    major_minor: str  # "major:minor" of the mounted filesystem's device
    root: str = "/"  # the directory of the filesystem mounted here ("/" unless a subdirectory bind)
    options: tuple[str, ...] = ()

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


@dataclass(frozen=True)
class FsStats:
    """``statvfs`` of a mounted filesystem, in bytes and inodes."""

    total_bytes: int
    available_bytes: int
    used_bytes: int
    total_inodes: int
    free_inodes: int
    used_inodes: int


@dataclass(frozen=True)
class FormatOptions:
    """mkfs tuning taken from ``volume_context`` (all optional; validated by the node core)."""

    block_size: int | None = None
    inode_size: int | None = None
    bytes_per_inode: int | None = None  # ext only
    number_of_inodes: int | None = None  # ext only
    ext4_bigalloc: bool = False  # ext4 only
    ext4_cluster_size: int | None = None  # ext4 only, needs bigalloc
    ext4_encrypt: bool = False  # ext4 only: mkfs -O encrypt (ext4EncryptionSupport)


class Mounter(Protocol):
    """Filesystems, mounts and paths on this machine."""

    def format(self, device: str, fs_type: str, options: FormatOptions) -> None:
        """Create a ``fs_type`` filesystem on ``device``. Callers check :meth:`fs_type` first; the
        adapter never forces over an existing filesystem it can detect."""
        ...

    def mount(self, device: str, target: str, fs_type: str, options: tuple[str, ...]) -> None:
        """Mount ``device`` at the existing directory ``target``."""
        ...

    def bind_mount(self, source: str, target: str, read_only: bool, options: tuple[str, ...]) -> None:
        """Bind ``source`` (a directory or a device node) onto the existing ``target``."""
        ...

    def unmount(self, target: str) -> None:
        """Unmount the topmost mount at ``target``."""
        ...

    def mount_info(self, path: str) -> MountInfo | None:
        """The mount whose mount point is exactly ``path`` (symlinks resolved), or None."""
        ...

    def fs_type(self, device: str) -> str:
        """What ``device`` holds: ``""`` when blank, else a filesystem name (``ext4``, ``xfs``…) or a
        description of other content (``partition-table:gpt``). Raises NotFound if no such device."""
        ...

    def filesystem_size(self, device: str, mount_path: str, fs_type: str) -> int:
        """Bytes the filesystem on ``device`` spans; ``mount_path`` is where it is mounted, or ``""``
        when it is not (xfs can only be measured mounted: InvalidArgument then)."""
        ...

    def resize_fs(self, device: str, mount_path: str, fs_type: str) -> None:
        """Grow the filesystem to fill ``device``: online when ``mount_path`` is set, offline (after a
        forced fsck) when it is ``""`` (ext only; xfs raises InvalidArgument). No-op when it fills it."""
        ...

    def fs_stats(self, path: str) -> FsStats:
        """Usage of the filesystem holding ``path``. Raises NotFound if ``path`` does not exist."""
        ...

    def device_size(self, device: str) -> int:
        """Size of a block device in bytes. Raises NotFound if no such device."""
        ...

    def device_number(self, path: str) -> str | None:
        """``"major:minor"`` if ``path`` is (or is bind-mounted to) a block device node, else None."""
        ...

    def device_serial(self, device: str) -> str:
        """The device's serial (NVMe: ``vol0123…``; loop: the backing file's name); ``""`` if it has none."""
        ...

    def exists(self, path: str) -> bool: ...

    def make_dir(self, path: str) -> None:
        """Create a directory and its parents; an existing directory is fine."""
        ...

    def make_file(self, path: str) -> None:
        """Create an empty file (and its parent directories); an existing file is fine."""
        ...

    def remove(self, path: str) -> None:
        """Remove an empty directory or a file; a missing path is fine. Never recursive."""
        ...


class DeviceResolver(Protocol):
    def resolve(self, volume_id: str, publish_context: Mapping[str, str]) -> str:
        """The block device (a real path under /dev, symlinks resolved) that holds ``volume_id``.

        Raises InvalidArgument (``devicePath`` outside /dev or with ``..``), NotFound (no device for
        the volume on this node), FailedPrecondition (a device exists but its serial names another
        volume: refusing it keeps a stale symlink from getting the wrong disk formatted).
        """
        ...


@dataclass(frozen=True)
class NodeMetadata:
    """What a metadata source knows about this machine; empty/None means "this source does not know"."""

    instance_id: str = ""
    zone: str = ""
    instance_type: str = ""
    region: str = ""
    # Block devices attached at launch, the root volume included (None: unknown).
    block_device_count: int | None = None
    # Network interfaces attached (None: unknown); they share the attachment budget on Nitro.
    eni_count: int | None = None
    source: str = ""  # which source(s) the values came from, for logs and errors


class Metadata(Protocol):
    """One source of :class:`NodeMetadata` (IMDS, the Kubernetes Node object…)."""

    name: str

    def fetch(self) -> NodeMetadata:
        """Read what this source knows. Raises Unavailable (unreachable, timed out), NotFound (e.g. no
        Node object), FailedPrecondition (source not configured, e.g. CSI_NODE_NAME unset)."""
        ...


class BlockBacker(Protocol):
    """Gives a volume of the embedded cloud a real block device (a loop device over a sparse file)."""

    def back(self, volume_id: str, size_bytes: int) -> str:
        """Return the device holding ``volume_id``, creating its backing file of ``size_bytes`` and
        attaching it if needed (idempotent: the same device while attached). Raises
        ResourceExhausted (no free loop device), Internal (losetup failed)."""
        ...

    def detach(self, volume_id: str) -> None:
        """Release the device but keep the data, so a later :meth:`back` brings it back. Idempotent."""
        ...

    def release(self, volume_id: str) -> None:
        """Release the device and delete the data (volume deleted). Idempotent."""
        ...

    def resize(self, volume_id: str, size_bytes: int) -> None:
        """Grow the backing storage (never shrinks) and make the kernel see the new size. Raises
        NotFound if the volume was never backed."""
        ...

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """Keep a point-in-time copy of the volume's data as ``snapshot_id`` (what was written to an
        attached device is flushed first: crash-consistent, like EBS). A volume never backed is all
        zeros, so nothing is kept. Raises InvalidArgument (malformed ids)."""
        ...

    def restore(self, volume_id: str, snapshot_id: str, size_bytes: int) -> None:
        """Create the backing storage of a NEW volume as a copy of ``snapshot_id``'s data grown to
        ``size_bytes`` (zeros if the snapshot kept nothing). Raises InvalidArgument (malformed ids,
        a size below the snapshot's), AlreadyExists (the volume already has backing storage)."""
        ...

    def drop_snapshot(self, snapshot_id: str) -> None:
        """Delete the snapshot's data. Idempotent."""
        ...
