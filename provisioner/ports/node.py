"""The node's I/O boundaries: the mounter, device discovery, the node's own state, instance metadata
and (for the embedded cloud) a block-device backer.

:class:`provisioner.node.NodeCore` talks to the machine only through these protocols, so every rule of
NodeStage/NodePublish is tested against the stateful ``FakeMounter`` without root. The Linux adapters
live in :mod:`provisioner.mount`; the metadata sources in :mod:`provisioner.aws.imds` and
:mod:`provisioner.kube.nodeinfo`. This module performs no I/O and names no OS command.

Every method may raise :class:`~provisioner.errors.DeadlineExceeded` when the command behind it
outlives the caller's deadline; the docstrings list the other errors.
"""

from __future__ import annotations

import enum
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

    def describe(self) -> str:
        source = self.source if len(self.source) <= 100 else self.source[:100] + "…"
        return f"{source} ({self.fs_type}, device {self.major_minor})"


class PathKind(enum.Enum):
    MISSING = "missing"
    DIRECTORY = "directory"
    FILE = "regular file"
    BLOCK_DEVICE = "block device node"
    SYMLINK = "symlink"
    OTHER = "special file"
    BLOCKED = "unreachable path"  # a component on the way is a symlink or not a directory


@dataclass(frozen=True)
class PathState:
    """What is at a path, found without following any symlink on the way (see Mounter.inspect)."""

    path: str
    kind: PathKind
    mounts: tuple[MountInfo, ...] = ()  # mounted exactly at ``path``, bottom first
    entries: int = 0  # DIRECTORY: number of entries; FILE: size in bytes
    rdev: str = ""  # BLOCK_DEVICE: "major:minor" of the device node (or of the device bound here)
    file_id: str = ""  # "st_dev:st_ino" of the path itself, to recognise a file the plugin made
    blocker: str = ""  # BLOCKED: the component that stops the walk and why

    @property
    def top(self) -> MountInfo | None:
        return self.mounts[-1] if self.mounts else None


@dataclass(frozen=True)
class BlockDevice:
    """A block device proven to hold one volume, with the facts that decide whether it is free."""

    path: str  # the device node under /dev (symlinks resolved)
    major_minor: str
    size: int  # bytes
    proof: str  # how it was shown to be the volume, for logs and messages
    partitions: tuple[tuple[str, str], ...] = ()  # (name, "major:minor") of each partition on it
    holders: tuple[str, ...] = ()  # devices built on it (device mapper, md RAID…)
    # This appearance of the disk: the boot and the kernel's disk sequence number (a new one each time
    # a disk is attached); "" when the kernel does not say. Tells an attachment from a later one.
    appearance: str = ""

    @property
    def numbers(self) -> frozenset[str]:
        """``major:minor`` of the device and of every partition on it."""
        return frozenset({self.major_minor, *(n for _, n in self.partitions)})


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
    """Filesystems, mounts and paths on this machine.

    Paths reaching the mounter are absolute, normalised and validated by the core. No method
    follows a symlink in a path: a symlink anywhere on the way is reported (:meth:`inspect`) or
    refused (FailedPrecondition), never traversed. A path a call needs that does not exist (a mount
    point, the parent of a file to make) raises NotFound. Commands run under the caller's deadline
    (DeadlineExceeded past it) and a command that fails (unmounting what is not mounted, mkfs over a
    filesystem without ``force``) raises FailedPrecondition with its stderr.
    """

    def inspect(self, path: str, table: tuple[MountInfo, ...] | None = None) -> PathState:
        """What is at ``path`` and what is mounted exactly there, without changing anything.
        ``table``: the mount table the caller just read (:meth:`mounts`), read anew when None."""
        ...

    def mounts(self) -> tuple[MountInfo, ...]:
        """Every mount this process sees, in mount order."""
        ...

    def swap_devices(self) -> frozenset[str]:
        """``major:minor`` of every block device in use as swap."""
        ...

    def make_dirs(self, path: str) -> tuple[str, ...]:
        """Create ``path`` and its missing parents as directories, one component at a time without
        following symlinks; returns the directories created (outermost first). FailedPrecondition
        when a component is a symlink or not a directory."""
        ...

    def make_file(self, path: str) -> str:
        """Create an empty regular file at ``path``; returns its file id. NotFound when its parent does
        not exist, FailedPrecondition when something already exists there."""
        ...

    def remove_dir(self, path: str) -> None:
        """Remove the empty directory ``path``; never recursive, never through a symlink."""
        ...

    def remove_file(self, path: str, file_id: str) -> None:
        """Remove ``path`` only if it is an empty regular file with ``file_id``; else leave it."""
        ...

    def probe(self, device: str) -> str:
        """What ``device`` holds: ``""`` when blkid finds no signature, else a filesystem name
        (``ext4``, ``xfs``…) or ``partition-table:gpt``… FailedPrecondition when it cannot tell."""
        ...

    def nonzero_region(self, device: str) -> str:
        """``""`` when the first and last MiB of ``device`` read as zeros, else which one does not."""
        ...

    def format(self, device: str, fs_type: str, options: FormatOptions, force: bool = False) -> None:
        """Create a ``fs_type`` filesystem on ``device``. ``force`` overwrites what mkfs recognises
        (only to redo a format zonal itself started and did not finish)."""
        ...

    def mount(self, device: str, target: str, fs_type: str, options: tuple[str, ...]) -> None:
        """Mount ``device`` at the existing directory ``target``."""
        ...

    def bind_mount(self, source: str, target: str, read_only: bool, options: tuple[str, ...]) -> None:
        """Bind ``source`` (a mounted directory or a device node) onto the existing ``target``."""
        ...

    def unmount(self, target: str) -> None:
        """Unmount the topmost mount at ``target``."""
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
        """Usage of the filesystem mounted at ``path``."""
        ...

    def device_size(self, device: str) -> int:
        """Size in bytes of the block device node at ``device``. Raises NotFound if there is none."""
        ...


class DeviceResolver(Protocol):
    def resolve(self, volume_id: str, publish_context: Mapping[str, str]) -> BlockDevice:
        """The block device that is proven to hold ``volume_id`` (see :mod:`provisioner.mount.devices`
        for what counts as proof). ``publish_context["devicePath"]`` is a hint, never proof.

        Raises NotFound (no device of the volume on this node) or FailedPrecondition (devices were
        found but none is provably the volume: the message names each and why it was refused).
        """
        ...


@dataclass(frozen=True)
class PathRecord:
    """What the plugin put at a path, kept across restarts (see :class:`NodeState`)."""

    volume_id: str
    path: str
    kind: str  # "staging", "target" (a bind of the staging path) or "block" (a bound device node)
    major_minor: str  # the volume's device when it was mounted there
    device: str = ""  # the device node it was proven at
    created_dirs: tuple[str, ...] = ()  # directories the plugin created for it (outermost first)
    created_file: str = ""  # file id of the empty block target file the plugin created


@dataclass(frozen=True)
class FormatMarker:
    """Written before mkfs and removed after it: a format zonal started but never saw finish."""

    volume_id: str
    device: str
    major_minor: str
    proof: str
    fs_type: str
    appearance: str = ""  # BlockDevice.appearance when mkfs started: a redo only on that same disk


class NodeState(Protocol):
    """The node's own small persistent memory (``--state-dir``): what it mounted where, and which
    formats it started. Every write is durable before the method returns."""

    def remember(self, record: PathRecord) -> None: ...

    def recall(self, path: str) -> PathRecord | None:
        """The record for ``path``; None when there is none (or it is unreadable: logged)."""
        ...

    def forget(self, path: str) -> None: ...

    def begin_format(self, marker: FormatMarker) -> None: ...

    def format_started(self, volume_id: str) -> FormatMarker | None: ...

    def end_format(self, volume_id: str) -> None: ...


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
