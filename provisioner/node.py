"""NodeCore: the CSI Node service's rules (stage, publish, their inverses, stats, expand, info).

It decides *what* to do — validate input, find the device, format only blank devices, mount, bind,
grow — and talks to the machine only through the ports in :mod:`provisioner.ports.node`, so every rule
is unit-tested with a stateful fake mounter. It must not import an adapter, run a command, touch a
path itself or know about gRPC; it raises domain errors that one table maps to CSI codes.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OperationInProgress,
)
from provisioner.model import EBS_ZONE_KEY, ZONE_KEY, AccessMode, AccessType, VolumeCapability
from provisioner.node_metadata import max_volumes
from provisioner.ports.clock import Clock
from provisioner.ports.node import (
    DEFAULT_FS_TYPE,
    SUPPORTED_FS_TYPES,
    DeviceResolver,
    FormatOptions,
    Mounter,
    MountInfo,
    NodeMetadata,
)

DEFAULT_METADATA_SOURCES = ("imds", "kubernetes")
KNOWN_METADATA_SOURCES = frozenset(DEFAULT_METADATA_SOURCES)

_SINGLE_NODE_MODES = frozenset(
    {
        AccessMode.SINGLE_NODE_WRITER,
        AccessMode.SINGLE_NODE_READER_ONLY,
        AccessMode.SINGLE_NODE_SINGLE_WRITER,
        AccessMode.SINGLE_NODE_MULTI_WRITER,
    }
)
_READ_ONLY_MODES = frozenset({AccessMode.SINGLE_NODE_READER_ONLY, AccessMode.MULTI_NODE_READER_ONLY})

# volume_context keys carrying mkfs options (the names aws-ebs-csi-driver's StorageClasses use).
_FORMAT_KEYS = {
    "blocksize": ("block_size", {"ext3", "ext4", "xfs"}),
    "inodesize": ("inode_size", {"ext3", "ext4", "xfs"}),
    "bytesperinode": ("bytes_per_inode", {"ext3", "ext4"}),
    "numberofinodes": ("number_of_inodes", {"ext3", "ext4"}),
    "ext4clustersize": ("ext4_cluster_size", {"ext4"}),
}
_BIGALLOC_KEY = "ext4bigalloc"
# Boolean ext4 features: volume_context key → FormatOptions field.
_EXT4_FEATURES = {_BIGALLOC_KEY: "ext4_bigalloc", "ext4encryptionsupport": "ext4_encrypt"}

# ext3/ext4 grow before mounting at stage (no online-resize privilege needed, nothing writing);
# xfs grows only while mounted.
_OFFLINE_GROWABLE = frozenset({"ext3", "ext4"})


@dataclass(frozen=True)
class NodeConfig:
    """Settings of the node service, filled in by the CLI (``--node-id`` … ``--metadata-sources``)."""

    node_id: str = ""  # overrides the instance id from metadata
    zone: str = ""  # overrides the availability zone from metadata
    instance_type: str = ""  # overrides the instance type from metadata
    volume_attach_limit: int | None = None  # overrides the computed max_volumes_per_node
    reserved_volume_attachments: int | None = None  # replaces the devices counted at start
    metadata_sources: tuple[str, ...] = DEFAULT_METADATA_SOURCES

    def __post_init__(self) -> None:
        unknown = [s for s in self.metadata_sources if s not in KNOWN_METADATA_SOURCES]
        if unknown:
            raise ValueError(
                f"unknown metadata source(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(KNOWN_METADATA_SOURCES))}"
            )
        if self.volume_attach_limit is not None and self.volume_attach_limit < 1:
            raise ValueError("volume attach limit must be at least 1")

    def overrides(self) -> NodeMetadata:
        return NodeMetadata(instance_id=self.node_id, zone=self.zone, instance_type=self.instance_type)


class NodeCapability(enum.Enum):
    STAGE_UNSTAGE_VOLUME = "STAGE_UNSTAGE_VOLUME"
    GET_VOLUME_STATS = "GET_VOLUME_STATS"
    EXPAND_VOLUME = "EXPAND_VOLUME"


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    max_volumes_per_node: int
    segments: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeStats:
    """Usage of a volume: bytes always; inodes only for filesystems (None for block volumes)."""

    total_bytes: int
    available_bytes: int | None = None
    used_bytes: int | None = None
    total_inodes: int | None = None
    available_inodes: int | None = None
    used_inodes: int | None = None


class InFlight:
    """Names of the volumes an operation is running on; a second concurrent call is refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[str] = set()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._lock:
            if key in self._held:
                # CSI: "Operation pending for volume" → ABORTED; the CO retries later.
                raise OperationInProgress(f"an operation on volume {key} is already in progress")
            self._held.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(key)


def _require(value: str, what: str) -> str:
    if not value:
        # CSI: a missing required field → INVALID_ARGUMENT, checked before anything else.
        raise InvalidArgument(f"{what} is required")
    return value


def _require_path(path: str, what: str) -> str:
    _require(path, what)
    if not path.startswith("/"):
        raise InvalidArgument(f"{what} {path!r} must be an absolute path")
    if ".." in path.split("/"):
        raise InvalidArgument(f"{what} {path!r} must not contain '..'")
    return path


def _require_capability(capability: VolumeCapability | None) -> VolumeCapability:
    if capability is None:
        raise InvalidArgument("volume capability is required")
    if capability.access_mode == AccessMode.UNKNOWN:
        raise InvalidArgument("volume capability access mode is required")
    multi_attach_block = (
        capability.access_type == AccessType.BLOCK
        and capability.access_mode == AccessMode.MULTI_NODE_MULTI_WRITER
    )
    if capability.access_mode not in _SINGLE_NODE_MODES and not multi_attach_block:
        # CSI NodeStage/NodePublish: "Exceeds capabilities" → FAILED_PRECONDITION.
        raise FailedPrecondition(
            f"access mode {capability.access_mode.name} is not supported "
            f"for {capability.access_type.value} volumes"
        )
    return capability


def _fs_type(capability: VolumeCapability) -> str:
    fs_type = (capability.fs_type or DEFAULT_FS_TYPE).lower()
    if fs_type not in SUPPORTED_FS_TYPES:
        raise InvalidArgument(
            f"fs type {fs_type!r} is not supported; use one of {', '.join(SUPPORTED_FS_TYPES)}"
        )
    return fs_type


def _mount_options(capability: VolumeCapability, fs_type: str) -> tuple[str, ...]:
    options = list(dict.fromkeys(capability.mount_flags))
    # xfs refuses two filesystems with the same UUID (a volume and its clone or restored snapshot).
    if fs_type == "xfs" and "nouuid" not in options:
        options.append("nouuid")
    return tuple(options)


def format_options(fs_type: str, volume_context: Mapping[str, str]) -> FormatOptions:
    """mkfs options from ``volume_context``; an option the fs type cannot take → InvalidArgument."""
    values: dict[str, int | bool] = {}
    for key, (attr, fs_types) in _FORMAT_KEYS.items():
        raw = volume_context.get(key)
        if raw is None:
            continue
        # Re-checked here although the controller validated it: these reach a command line.
        if not raw.isdigit() or int(raw) <= 0:
            raise InvalidArgument(f"{key} must be a positive integer, not {raw!r}")
        if fs_type not in fs_types:
            raise InvalidArgument(f"{key} cannot be used with fs type {fs_type}")
        values[attr] = int(raw)
    for key, attr in _EXT4_FEATURES.items():
        raw_flag = volume_context.get(key)
        if raw_flag is None:
            continue
        if raw_flag.lower() not in ("true", "false"):
            raise InvalidArgument(f"{key} must be true or false, not {raw_flag!r}")
        if raw_flag.lower() == "true":
            if fs_type != "ext4":
                raise InvalidArgument(f"{key} cannot be used with fs type {fs_type}")
            values[attr] = True
    if "ext4_cluster_size" in values and not values.get("ext4_bigalloc"):
        raise InvalidArgument("ext4clustersize needs ext4bigalloc=true")
    return FormatOptions(**values)  # type: ignore[arg-type]


class NodeCore:
    """The Node service over a :class:`Mounter` and a :class:`DeviceResolver`."""

    def __init__(
        self,
        mounter: Mounter,
        resolver: DeviceResolver,
        metadata: NodeMetadata,
        config: NodeConfig,
        clock: Clock,
        logger: logging.Logger | None = None,
    ) -> None:
        self.mounter = mounter
        self.resolver = resolver
        self.metadata = metadata
        self.config = config
        self.clock = clock
        self.log = logger or logging.getLogger(__name__)
        self.inflight = InFlight()
        # Computed once: the devices attached at start are part of the rule.
        self._max_volumes = max_volumes(
            metadata, config.volume_attach_limit, config.reserved_volume_attachments
        )

    # -- info ---------------------------------------------------------------------------------

    def get_info(self) -> NodeInfo:
        zone = self.metadata.zone
        # Both keys on every node, so StorageClasses written for either keep working.
        return NodeInfo(
            node_id=self.metadata.instance_id,
            max_volumes_per_node=self._max_volumes,
            segments={ZONE_KEY: zone, EBS_ZONE_KEY: zone},
        )

    def capabilities(self) -> tuple[NodeCapability, ...]:
        return (
            NodeCapability.STAGE_UNSTAGE_VOLUME,
            NodeCapability.GET_VOLUME_STATS,
            NodeCapability.EXPAND_VOLUME,
        )

    # -- stage / unstage ------------------------------------------------------------------------

    def stage(
        self,
        volume_id: str,
        staging_path: str,
        capability: VolumeCapability | None,
        publish_context: Mapping[str, str],
        volume_context: Mapping[str, str],
    ) -> None:
        _require(volume_id, "volume id")
        _require_path(staging_path, "staging target path")
        capability = _require_capability(capability)
        if capability.access_type == AccessType.BLOCK:
            return  # Block access: nothing to stage; NodePublish binds the device itself.
        fs_type = _fs_type(capability)
        options = _mount_options(capability, fs_type)
        mkfs_options = format_options(fs_type, volume_context)
        with self.inflight.hold(volume_id):
            device = self.resolver.resolve(volume_id, publish_context)
            current = self.mounter.mount_info(staging_path)
            if current is not None:
                self._check_staged(volume_id, staging_path, device, current)
                return  # CSI: NodeStageVolume repeated with the same arguments → OK, no remount.
            self.mounter.make_dir(staging_path)
            existing = self.mounter.fs_type(device)
            if not existing:
                self.log.info("formatting %s (volume %s) as %s", device, volume_id, fs_type)
                self.mounter.format(device, fs_type, mkfs_options)
            elif existing != fs_type:
                # Never format a device that holds something: it may be the user's data.
                raise FailedPrecondition(
                    f"device {device} of volume {volume_id} holds {existing}, not {fs_type}; "
                    "refusing to reformat it"
                )
            elif fs_type in _OFFLINE_GROWABLE:
                self._grow_if_needed(volume_id, device, "", fs_type)
            self.log.info("mounting %s (volume %s) at %s", device, volume_id, staging_path)
            self.mounter.mount(device, staging_path, fs_type, options)
            if existing and fs_type not in _OFFLINE_GROWABLE:
                self._grow_if_needed(volume_id, device, staging_path, fs_type)

    def _check_staged(self, volume_id: str, staging_path: str, device: str, current: MountInfo) -> None:
        if self.mounter.device_number(device) != current.major_minor:
            # CSI NodeStageVolume: "Volume published but is incompatible" → ALREADY_EXISTS.
            raise AlreadyExists(
                f"staging path {staging_path} already has {current.source} mounted, "
                f"not volume {volume_id} ({device})"
            )

    def _grow_if_needed(self, volume_id: str, device: str, mount_path: str, fs_type: str) -> None:
        # A volume restored from a smaller snapshot carries a smaller filesystem: grow it to the device.
        # ``mount_path`` is "" when the filesystem is not mounted yet.
        device_size = self.mounter.device_size(device)
        fs_size = self.mounter.filesystem_size(device, mount_path, fs_type)
        if fs_size < device_size:
            self.log.info(
                "growing %s on %s (volume %s): %d → %d bytes",
                fs_type,
                device,
                volume_id,
                fs_size,
                device_size,
            )
            self.mounter.resize_fs(device, mount_path, fs_type)

    def unstage(self, volume_id: str, staging_path: str) -> None:
        _require(volume_id, "volume id")
        _require_path(staging_path, "staging target path")
        with self.inflight.hold(volume_id):
            self._unmount_and_remove(staging_path)

    def _unmount_and_remove(self, path: str) -> None:
        # CSI: NodeUnstage/NodeUnpublish when nothing is mounted (or the path is gone) → OK.
        if not self.mounter.exists(path):
            return
        while self.mounter.mount_info(path) is not None:
            self.log.info("unmounting %s", path)
            self.mounter.unmount(path)
        self.mounter.remove(path)

    # -- publish / unpublish --------------------------------------------------------------------

    def publish(
        self,
        volume_id: str,
        staging_path: str,
        target_path: str,
        capability: VolumeCapability | None,
        readonly: bool,
        publish_context: Mapping[str, str],
        volume_context: Mapping[str, str],
    ) -> None:
        _require(volume_id, "volume id")
        _require_path(staging_path, "staging target path")
        _require_path(target_path, "target path")
        capability = _require_capability(capability)
        read_only = readonly or capability.access_mode in _READ_ONLY_MODES
        with self.inflight.hold(volume_id):
            if capability.access_type == AccessType.BLOCK:
                self._publish_block(volume_id, target_path, read_only, publish_context)
            else:
                fs_type = _fs_type(capability)
                self._publish_mount(
                    volume_id, staging_path, target_path, read_only, _mount_options(capability, fs_type)
                )

    def _publish_mount(
        self, volume_id: str, staging_path: str, target_path: str, read_only: bool, options: tuple[str, ...]
    ) -> None:
        staged = self.mounter.mount_info(staging_path)
        if staged is None:
            # CSI NodePublishVolume: "Staging target path not set" → FAILED_PRECONDITION.
            raise FailedPrecondition(f"volume {volume_id} is not staged at {staging_path}")
        current = self.mounter.mount_info(target_path)
        if current is not None:
            same = (current.major_minor, current.root) == (staged.major_minor, staged.root)
            self._check_published(volume_id, target_path, same, current.read_only, read_only)
            return  # CSI: NodePublishVolume repeated with the same arguments → OK.
        self.mounter.make_dir(target_path)
        self.log.info(
            "binding %s at %s (volume %s, read_only=%s)", staging_path, target_path, volume_id, read_only
        )
        self.mounter.bind_mount(staging_path, target_path, read_only, options)

    def _publish_block(
        self, volume_id: str, target_path: str, read_only: bool, publish_context: Mapping[str, str]
    ) -> None:
        device = self.resolver.resolve(volume_id, publish_context)
        current = self.mounter.mount_info(target_path)
        if current is not None:
            same = self.mounter.device_number(target_path) == self.mounter.device_number(device)
            self._check_published(volume_id, target_path, same, current.read_only, read_only)
            return  # CSI: NodePublishVolume repeated with the same arguments → OK.
        self.mounter.make_file(target_path)
        self.log.info(
            "binding device %s at %s (volume %s, read_only=%s)", device, target_path, volume_id, read_only
        )
        self.mounter.bind_mount(device, target_path, read_only, ())

    @staticmethod
    def _check_published(volume_id: str, target: str, same: bool, is_ro: bool, want_ro: bool) -> None:
        if not same:
            # CSI NodePublishVolume: "Volume published but is incompatible" → ALREADY_EXISTS.
            raise AlreadyExists(f"target path {target} already has another volume mounted, not {volume_id}")
        if is_ro != want_ro:
            raise AlreadyExists(
                f"volume {volume_id} is already published at {target} with read_only={is_ro}, not {want_ro}"
            )

    def unpublish(self, volume_id: str, target_path: str) -> None:
        _require(volume_id, "volume id")
        _require_path(target_path, "target path")
        with self.inflight.hold(volume_id):
            self._unmount_and_remove(target_path)

    # -- stats / expand -------------------------------------------------------------------------

    def get_volume_stats(self, volume_id: str, volume_path: str) -> VolumeStats:
        _require(volume_id, "volume id")
        _require_path(volume_path, "volume path")
        if not self.mounter.exists(volume_path):
            # CSI NodeGetVolumeStats: "Volume does not exist" → NOT_FOUND.
            raise NotFound(f"volume path {volume_path} does not exist")
        if self.mounter.device_number(volume_path) is not None:
            return VolumeStats(total_bytes=self.mounter.device_size(volume_path))
        s = self.mounter.fs_stats(volume_path)
        return VolumeStats(
            total_bytes=s.total_bytes,
            available_bytes=s.available_bytes,
            used_bytes=s.used_bytes,
            total_inodes=s.total_inodes,
            available_inodes=s.free_inodes,
            used_inodes=s.used_inodes,
        )

    def expand(self, volume_id: str, volume_path: str, capability: VolumeCapability | None) -> int:
        """Grow the filesystem at ``volume_path`` to its device; returns the device's size in bytes."""
        _require(volume_id, "volume id")
        _require_path(volume_path, "volume path")
        with self.inflight.hold(volume_id):
            if not self.mounter.exists(volume_path):
                raise NotFound(f"volume path {volume_path} does not exist")
            if self.mounter.device_number(volume_path) is not None or (
                capability is not None and capability.access_type == AccessType.BLOCK
            ):
                # Block access: the device already has its new size; nothing to grow.
                return self.mounter.device_size(volume_path) if self.mounter.device_number(volume_path) else 0
            mount = self.mounter.mount_info(volume_path)
            if mount is None:
                raise NotFound(f"nothing is mounted at {volume_path}")
            if mount.fs_type not in SUPPORTED_FS_TYPES:
                raise FailedPrecondition(f"cannot grow {mount.fs_type} at {volume_path}")
            device = mount.source
            self.log.info("growing %s on %s at %s (volume %s)", mount.fs_type, device, volume_path, volume_id)
            self.mounter.resize_fs(device, volume_path, mount.fs_type)
            return self.mounter.device_size(device)
