"""NodeCore: the CSI Node service's rules (stage, publish, their inverses, stats, expand, info).

It decides *what* to do and proves it is safe first: the device is shown to be the volume (the
resolver's proof), whole and unused (no partitions, holders, mounts or swap) and blank (blkid finds
nothing *and* its first and last MiB read as zeros) before mkfs; a path holds this volume (its
device number, proven now or recorded when zonal mounted it) before it is unmounted, measured or
grown. Paths are walked without following symlinks by the mounter. What zonal mounted where, and which
formats it started, are kept in the node state (:class:`~provisioner.ports.node.NodeState`), so a
volume whose device vanished can still be cleaned up and a format cut short by a deadline or a crash
is redone only when the device still proves to be the volume and held nothing before.

It talks to the machine only through the ports in :mod:`provisioner.ports.node`; it must not import
an adapter, run a command, touch a path itself or know about gRPC. It raises domain errors that one
table maps to CSI codes.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.errors import AlreadyExists, FailedPrecondition, NotFound, ZonalError
from provisioner.model import EBS_ZONE_KEY, ZONE_KEY, AccessType, VolumeCapability
from provisioner.node import inputs
from provisioner.node.model import InFlight, NodeCapability, NodeConfig, NodeInfo, VolumeStats
from provisioner.node.state import MemoryNodeState
from provisioner.node_metadata import max_volumes
from provisioner.ports.clock import Clock
from provisioner.ports.node import (
    SUPPORTED_FS_TYPES,
    BlockDevice,
    DeviceResolver,
    FormatMarker,
    FormatOptions,
    Mounter,
    NodeMetadata,
    NodeState,
    PathKind,
    PathRecord,
    PathState,
)

# ext3/ext4 grow before mounting at stage (no online-resize privilege needed, nothing writing);
# xfs grows only while mounted.
_OFFLINE_GROWABLE = frozenset({"ext3", "ext4"})
_UNREACHABLE = (PathKind.BLOCKED, PathKind.SYMLINK)


@dataclass(frozen=True)
class _Ownership:
    """The device numbers that are provably a volume's at one path, and how that was shown."""

    numbers: frozenset[str]
    device: BlockDevice | None  # proven now (None when the resolver could not)
    record: PathRecord | None  # zonal's own record for the path, when it names this volume
    why_not: str  # the resolver's reason, for messages when nothing matches


def _unreachable(what: str, here: PathState) -> FailedPrecondition:
    reason = here.blocker or f"{here.path} is a symlink"
    return FailedPrecondition(
        f"{what} {here.path} cannot be used: {reason}; zonal never follows symlinks in CSI paths"
    )


class NodeCore:
    """The Node service over a :class:`Mounter`, a :class:`DeviceResolver` and a :class:`NodeState`."""

    def __init__(
        self,
        mounter: Mounter,
        resolver: DeviceResolver,
        metadata: NodeMetadata,
        config: NodeConfig,
        clock: Clock,
        logger: logging.Logger | None = None,
        state: NodeState | None = None,
    ) -> None:
        self.mounter = mounter
        self.resolver = resolver
        self.metadata = metadata
        self.config = config
        self.clock = clock
        self.log = logger or logging.getLogger(__name__)
        self.state: NodeState = state if state is not None else MemoryNodeState()
        self.inflight = InFlight()
        # Computed once: the devices attached at start are part of the rule.
        self._max_volumes = max_volumes(metadata, config.volume_attach_limit)

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

    # -- shared checks --------------------------------------------------------------------------

    def _ownership(self, volume_id: str, path: str, publish_context: Mapping[str, str]) -> _Ownership:
        numbers: set[str] = set()
        record = self.state.recall(path)
        if record is not None and record.volume_id != volume_id:
            record = None
        if record is not None:
            numbers.add(record.major_minor)
        device, why_not = None, ""
        try:
            device = self.resolver.resolve(volume_id, publish_context)
            numbers.add(device.major_minor)
        except (NotFound, FailedPrecondition) as e:
            why_not = f" ({e})"
        return _Ownership(frozenset(numbers), device, record, why_not)

    def _check_free(self, volume_id: str, device: BlockDevice) -> None:
        """Refuse a device that is partitioned, held, mounted anywhere or used as swap."""
        problems = []
        if device.partitions:
            problems.append(f"has partitions {', '.join(name for name, _ in device.partitions)}")
        if device.holders:
            problems.append(f"is held by {', '.join(device.holders)} (device mapper, RAID or LVM)")
        mounted = [m.target for m in self.mounter.mounts() if m.major_minor in device.numbers]
        if mounted:
            more = f" and {len(mounted) - 3} more" if len(mounted) > 3 else ""
            problems.append(f"is mounted at {', '.join(mounted[:3])}{more}")
        if device.numbers & self.mounter.swap_devices():
            problems.append("is in use as swap")
        if problems:
            raise FailedPrecondition(
                f"device {device.path} of volume {volume_id} ({device.proof}) {'; '.join(problems)}: "
                "zonal formats, mounts and binds only a whole, unused device"
            )

    def _empty_or_missing_dir(self, what: str, here: PathState) -> None:
        if here.kind in _UNREACHABLE:
            raise _unreachable(what, here)
        if here.kind not in (PathKind.MISSING, PathKind.DIRECTORY):
            raise FailedPrecondition(f"{what} {here.path} is a {here.kind.value}, not a directory")
        if here.kind is PathKind.DIRECTORY and here.entries:
            raise FailedPrecondition(
                f"{what} {here.path} is not empty and nothing is mounted there; zonal mounts only on "
                "an empty directory, so nothing in it is hidden"
            )

    def _undo(self, path: str, created_dirs: tuple[str, ...], created_file: str = "") -> None:
        """After a failed stage/publish: remove what this call created, if still empty and unmounted."""
        try:
            here = self.mounter.inspect(path)
            if here.mounts:
                return  # the mount happened after all (e.g. killed mid-way): the record stays
            self.state.forget(path)
            if created_file:
                self.mounter.remove_file(path, created_file)
            for directory in reversed(created_dirs):
                there = self.mounter.inspect(directory)
                if there.kind is PathKind.DIRECTORY and not there.mounts and not there.entries:
                    self.mounter.remove_dir(directory)
        except ZonalError as e:
            self.log.warning("could not undo what a failed call created at %s: %s", path, e)

    # -- stage / unstage ------------------------------------------------------------------------

    def stage(
        self,
        volume_id: str,
        staging_path: str,
        capability: VolumeCapability | None,
        publish_context: Mapping[str, str],
        volume_context: Mapping[str, str],
    ) -> None:
        volume_id = inputs.volume_id(volume_id)
        staging_path = inputs.path(staging_path, "staging_target_path")
        cap = inputs.capability(capability)
        if cap.access_type == AccessType.BLOCK:
            return  # Block access: nothing to stage; NodePublish binds the device itself.
        fs_type = inputs.fs_type(cap)
        options = inputs.mount_options(cap, fs_type)
        mkfs_options = inputs.format_options(fs_type, volume_context)
        with self.inflight.hold(volume_id):
            device = self.resolver.resolve(volume_id, publish_context)
            here = self.mounter.inspect(staging_path)
            top = here.top
            if top is not None and here.kind not in _UNREACHABLE:
                if top.major_minor == device.major_minor and top.root == "/" and top.fs_type == fs_type:
                    return  # CSI: NodeStageVolume repeated with the same arguments → OK, no remount.
                # CSI NodeStageVolume: "Volume published but is incompatible" → ALREADY_EXISTS.
                raise AlreadyExists(
                    f"staging target path {staging_path} already has {top.describe()} mounted, "
                    f"not volume {volume_id} ({device.path}) as {fs_type}"
                )
            self._empty_or_missing_dir("staging_target_path", here)
            self._check_free(volume_id, device)
            action = self._format_action(volume_id, device, fs_type)
            created = self.mounter.make_dirs(staging_path) if here.kind is PathKind.MISSING else ()
            try:
                if action != "use":
                    self._format(volume_id, device, fs_type, mkfs_options, redo=action == "redo")
                elif fs_type in _OFFLINE_GROWABLE:
                    self._grow_if_needed(volume_id, device.path, "", fs_type)
                self.state.remember(
                    PathRecord(volume_id, staging_path, "staging", device.major_minor, device.path, created)
                )
                self.log.info("mounting %s (volume %s) at %s", device.path, volume_id, staging_path)
                self.mounter.mount(device.path, staging_path, fs_type, options)
            except BaseException:
                self._undo(staging_path, created)
                raise
            if action == "use" and fs_type not in _OFFLINE_GROWABLE:
                self._grow_if_needed(volume_id, device.path, staging_path, fs_type)

    def _format_action(self, volume_id: str, device: BlockDevice, fs_type: str) -> str:
        """ "format" (proven blank), "redo" (zonal's own unfinished format) or "use" (holds fs_type)."""
        content = self.mounter.probe(device.path)
        marker = self.state.format_started(volume_id)
        if marker is not None and content in ("", marker.fs_type, fs_type):
            # Zonal proved this volume blank, started mkfs and never saw it finish (deadline, crash):
            # whatever is there now is that unfinished format, and the device is proven again above.
            self.log.warning(
                "volume %s: redoing the %s format started on %s and never finished (now %s)",
                volume_id,
                marker.fs_type,
                marker.device,
                content or "no signature",
            )
            return "redo"
        if content == "":
            region = self.mounter.nonzero_region(device.path)
            if region:
                raise FailedPrecondition(
                    f"device {device.path} of volume {volume_id} has no filesystem signature blkid knows, "
                    f"but its {region} is not zeros: refusing to format what may be data"
                )
            return "format"
        if content != fs_type:
            # Never format a device that holds something: it may be the user's data.
            raise FailedPrecondition(
                f"device {device.path} of volume {volume_id} holds {content}, not {fs_type}; "
                "refusing to reformat it"
            )
        return "use"

    def _format(
        self, volume_id: str, device: BlockDevice, fs_type: str, options: FormatOptions, redo: bool
    ) -> None:
        self.state.begin_format(
            FormatMarker(volume_id, device.path, device.major_minor, device.proof, fs_type)
        )
        self.log.info(
            "formatting %s (volume %s, %s) as %s%s",
            device.path,
            volume_id,
            device.proof,
            fs_type,
            " again" if redo else "",
        )
        self.mounter.format(device.path, fs_type, options, force=redo)
        self.state.end_format(volume_id)

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
        volume_id = inputs.volume_id(volume_id)
        staging_path = inputs.path(staging_path, "staging_target_path")
        with self.inflight.hold(volume_id):
            self._clean(volume_id, staging_path, "staging_target_path")
            # The volume leaves this node's custody: a format marker must not outlive it.
            self.state.end_format(volume_id)

    def _clean(self, volume_id: str, path: str, what: str) -> None:
        """Unmount what of ``volume_id`` is at ``path``, then remove what zonal created there."""
        here = self.mounter.inspect(path)
        record = self.state.recall(path)
        if here.kind is PathKind.MISSING:
            self.state.forget(path)
            return  # CSI: NodeUnstage/NodeUnpublish when nothing is there → OK.
        if here.kind in _UNREACHABLE:
            raise _unreachable(what, here)
        if here.mounts:
            ours = self._ownership(volume_id, path, {})
            while (top := here.top) is not None:
                held = here.rdev if here.kind is PathKind.BLOCK_DEVICE else top.major_minor
                if held not in ours.numbers:
                    raise FailedPrecondition(
                        f"{what} {path} has {top.describe()} mounted, which is not provably volume "
                        f"{volume_id}{ours.why_not}; it was left alone"
                    )
                self.log.info("unmounting %s (volume %s)", path, volume_id)
                self.mounter.unmount(path)
                here = self.mounter.inspect(path)
        self._remove_leftover(volume_id, here, record if record and record.volume_id == volume_id else None)
        self.state.forget(path)

    def _remove_leftover(self, volume_id: str, here: PathState, record: PathRecord | None) -> None:
        path = here.path
        if here.kind is PathKind.DIRECTORY and not here.entries:
            # CSI NodeUnpublishVolume: the SP deletes the target path it published to.
            self.mounter.remove_dir(path)
        elif here.kind is PathKind.FILE and record is not None and record.created_file == here.file_id:
            self.mounter.remove_file(path, record.created_file)
        elif here.kind is not PathKind.MISSING:
            # Not this volume and not zonal's: nothing of the volume is here, so the call is done,
            # but a user's file or a non-empty directory is never deleted.
            self.log.warning(
                "%s (volume %s): left in place: a %s%s that zonal did not create",
                path,
                volume_id,
                "non-empty " if here.entries else "",
                here.kind.value,
            )
            return
        if record is not None:
            for directory in reversed(record.created_dirs):
                if directory == path:
                    continue
                there = self.mounter.inspect(directory)
                if there.kind is PathKind.DIRECTORY and not there.mounts and not there.entries:
                    self.mounter.remove_dir(directory)

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
        volume_id = inputs.volume_id(volume_id)
        target_path = inputs.path(target_path, "target_path")
        staging_path = inputs.path(staging_path, "staging_target_path")
        cap = inputs.capability(capability)
        read_only = readonly or cap.access_mode in inputs.READ_ONLY_MODES
        if cap.access_type == AccessType.BLOCK:
            with self.inflight.hold(volume_id):
                self._publish_block(volume_id, target_path, read_only, publish_context)
            return
        options = inputs.mount_options(cap, inputs.fs_type(cap))
        with self.inflight.hold(volume_id):
            self._publish_mount(volume_id, staging_path, target_path, read_only, options, publish_context)

    def _publish_mount(
        self,
        volume_id: str,
        staging_path: str,
        target_path: str,
        read_only: bool,
        options: tuple[str, ...],
        publish_context: Mapping[str, str],
    ) -> None:
        staged = self.mounter.inspect(staging_path)
        if staged.kind in _UNREACHABLE:
            raise _unreachable("staging_target_path", staged)
        source = staged.top
        if source is None:
            # CSI NodePublishVolume: "Staging target path not set" → FAILED_PRECONDITION.
            raise FailedPrecondition(f"volume {volume_id} is not staged at {staging_path}")
        ours = self._ownership(volume_id, staging_path, publish_context)
        if source.major_minor not in ours.numbers:
            raise FailedPrecondition(
                f"staging target path {staging_path} holds {source.describe()}, not volume "
                f"{volume_id}{ours.why_not}"
            )
        here = self.mounter.inspect(target_path)
        current = here.top
        if current is not None and here.kind not in _UNREACHABLE:
            same = (current.major_minor, current.root) == (source.major_minor, source.root)
            self._check_published(volume_id, target_path, same, current.read_only, read_only)
            return  # CSI: NodePublishVolume repeated with the same arguments → OK.
        self._empty_or_missing_dir("target_path", here)
        created = self.mounter.make_dirs(target_path) if here.kind is PathKind.MISSING else ()
        try:
            self.state.remember(PathRecord(volume_id, target_path, "target", source.major_minor, "", created))
            self.log.info(
                "binding %s at %s (volume %s, read_only=%s)", staging_path, target_path, volume_id, read_only
            )
            self.mounter.bind_mount(staging_path, target_path, read_only, options)
        except BaseException:
            self._undo(target_path, created)
            raise

    def _publish_block(
        self, volume_id: str, target_path: str, read_only: bool, publish_context: Mapping[str, str]
    ) -> None:
        device = self.resolver.resolve(volume_id, publish_context)
        here = self.mounter.inspect(target_path)
        current = here.top
        if current is not None and here.kind not in _UNREACHABLE:
            same = here.kind is PathKind.BLOCK_DEVICE and here.rdev == device.major_minor
            self._check_published(volume_id, target_path, same, current.read_only, read_only)
            return  # CSI: NodePublishVolume repeated with the same arguments → OK.
        if here.kind in _UNREACHABLE:
            raise _unreachable("target_path", here)
        if here.kind is not PathKind.MISSING and not (here.kind is PathKind.FILE and not here.entries):
            kind = f"non-empty {here.kind.value}" if here.entries else here.kind.value
            raise FailedPrecondition(
                f"target_path {target_path} is a {kind}; a block volume is published on a new or empty file"
            )
        self._check_free(volume_id, device)
        created_dirs: tuple[str, ...] = ()
        created_file = ""
        if here.kind is PathKind.MISSING:
            parent = posixpath.dirname(target_path)
            created_dirs = self.mounter.make_dirs(parent) if parent != "/" else ()
            created_file = self.mounter.make_file(target_path)
        try:
            self.state.remember(
                PathRecord(
                    volume_id,
                    target_path,
                    "block",
                    device.major_minor,
                    device.path,
                    created_dirs,
                    created_file,
                )
            )
            self.log.info(
                "binding device %s at %s (volume %s, read_only=%s)",
                device.path,
                target_path,
                volume_id,
                read_only,
            )
            self.mounter.bind_mount(device.path, target_path, read_only, ())
        except BaseException:
            self._undo(target_path, created_dirs, created_file)
            raise

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
        volume_id = inputs.volume_id(volume_id)
        target_path = inputs.path(target_path, "target_path")
        with self.inflight.hold(volume_id):
            self._clean(volume_id, target_path, "target_path")

    # -- stats / expand -------------------------------------------------------------------------

    def _mounted_here(self, volume_id: str, path: str) -> tuple[PathState, _Ownership]:
        """What is at ``path`` when it is this volume's; NotFound otherwise (CSI: "Volume does not
        exist" at that path → NOT_FOUND)."""
        here = self.mounter.inspect(path)
        if here.kind is PathKind.MISSING:
            raise NotFound(f"volume path {path} does not exist")
        if here.kind in _UNREACHABLE:
            raise NotFound(
                f"volume path {path} cannot be reached without following a symlink: {here.blocker}"
            )
        top = here.top
        if top is None:
            raise NotFound(f"volume {volume_id} is not mounted at {path}")
        ours = self._ownership(volume_id, path, {})
        held = here.rdev if here.kind is PathKind.BLOCK_DEVICE else top.major_minor
        if held not in ours.numbers:
            raise NotFound(f"volume path {path} holds {top.describe()}, not volume {volume_id}{ours.why_not}")
        return here, ours

    def get_volume_stats(self, volume_id: str, volume_path: str) -> VolumeStats:
        volume_id = inputs.volume_id(volume_id)
        volume_path = inputs.path(volume_path, "volume_path", relative_is_not_found=True)
        here, ours = self._mounted_here(volume_id, volume_path)
        if here.kind is PathKind.BLOCK_DEVICE:
            return VolumeStats(
                total_bytes=self.mounter.device_size(self._device_path(volume_id, ours, here.rdev))
            )
        s = self.mounter.fs_stats(volume_path)
        return VolumeStats(
            total_bytes=s.total_bytes,
            available_bytes=s.available_bytes,
            used_bytes=s.used_bytes,
            total_inodes=s.total_inodes,
            available_inodes=s.free_inodes,
            used_inodes=s.used_inodes,
        )

    def _device_path(self, volume_id: str, ours: _Ownership, held: str) -> str:
        """The device node holding ``held`` (the device number mounted at the path) now: the one the
        resolver proved, or the recorded one if it still has that number (e.g. a Xen disk, found only
        through its attachment record)."""
        if ours.device is not None and ours.device.major_minor == held:
            return ours.device.path
        record = ours.record
        if record is not None and record.device and record.major_minor == held:
            there = self.mounter.inspect(record.device)
            if there.kind is PathKind.BLOCK_DEVICE and there.rdev == held:
                return record.device
        raise FailedPrecondition(
            f"cannot find the device of volume {volume_id} (device {held}){ours.why_not}"
        )

    def expand(self, volume_id: str, volume_path: str, capability: VolumeCapability | None) -> int:
        """Grow the filesystem at ``volume_path`` to its device; returns the device's size in bytes.
        What is mounted at the path decides (``capability`` is optional in CSI and not needed)."""
        volume_id = inputs.volume_id(volume_id)
        volume_path = inputs.path(volume_path, "volume_path", relative_is_not_found=True)
        with self.inflight.hold(volume_id):
            here, ours = self._mounted_here(volume_id, volume_path)
            top = here.top
            assert top is not None
            if here.kind is PathKind.BLOCK_DEVICE:
                # Block access: the device already has its new size; nothing to grow.
                return self.mounter.device_size(self._device_path(volume_id, ours, here.rdev))
            device = self._device_path(volume_id, ours, top.major_minor)
            if top.fs_type not in SUPPORTED_FS_TYPES:
                raise FailedPrecondition(f"cannot grow {top.fs_type} at {volume_path}")
            self.log.info("growing %s on %s at %s (volume %s)", top.fs_type, device, volume_path, volume_id)
            self.mounter.resize_fs(device, volume_path, top.fs_type)
            return self.mounter.device_size(device)
