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

import contextlib
import logging
import posixpath
from collections.abc import Mapping

from provisioner.errors import AlreadyExists, FailedPrecondition, shown
from provisioner.model import EBS_ZONE_KEY, ZONE_KEY, AccessType, VolumeCapability
from provisioner.node import inputs
from provisioner.node.custody import UNREACHABLE, Custody, unreachable
from provisioner.node.model import NodeConfig, NodeInfo, VolumeStats
from provisioner.node.state import MemoryNodeState
from provisioner.node_metadata import max_volumes
from provisioner.ports.clock import Clock
from provisioner.ports.csi import InFlight, NodeCapability
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
)

# ext3/ext4 grow before mounting at stage (no online-resize privilege needed, nothing writing);
# xfs grows only while mounted.
_OFFLINE_GROWABLE = frozenset({"ext3", "ext4"})


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
        inflight: InFlight | None = None,
    ) -> None:
        self.mounter = mounter
        self.resolver = resolver
        self.metadata = metadata
        self.config = config
        self.clock = clock
        self.log = logger or logging.getLogger(__name__)
        self.state: NodeState = state if state is not None else MemoryNodeState()
        self.inflight = inflight if inflight is not None else InFlight("node")
        self.custody = Custody(mounter, resolver, self.state, self.log)
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

    def _hold(self, volume_id: str) -> contextlib.AbstractContextManager[None]:
        # CSI: "Operation pending for volume" → ABORTED; the CO retries later.
        return self.inflight.hold(volume_id, f"an operation on volume {shown(volume_id)}")

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
            # Block access: nothing to stage; NodePublish binds the device itself. A filesystem
            # mounted there is a stage of another kind: CSI "Volume published but is incompatible"
            # → ALREADY_EXISTS.
            here = self.mounter.inspect(staging_path)
            if here.top is not None and here.kind not in UNREACHABLE:
                raise AlreadyExists(
                    f"staging target path {shown(staging_path)} has {here.top.describe()} mounted; "
                    f"volume {shown(volume_id)} is not staged there for block access"
                )
            return
        fs_type = inputs.fs_type(cap)
        options = inputs.mount_options(cap, fs_type)
        mkfs_options = inputs.format_options(fs_type, volume_context)
        with self._hold(volume_id):
            device = self.resolver.resolve(volume_id, publish_context)
            here = self.mounter.inspect(staging_path)
            top = here.top
            if top is not None and here.kind not in UNREACHABLE:
                if top.major_minor == device.major_minor and top.root == "/" and top.fs_type == fs_type:
                    return  # CSI: NodeStageVolume repeated with the same arguments → OK, no remount.
                # CSI NodeStageVolume: "Volume published but is incompatible" → ALREADY_EXISTS.
                raise AlreadyExists(
                    f"staging target path {shown(staging_path)} already has {top.describe()} mounted, "
                    f"not volume {shown(volume_id)} ({device.path}) as {fs_type}"
                )
            self.custody.empty_or_missing_dir("staging_target_path", here)
            self.custody.check_free(volume_id, device)
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
                self.custody.undo(staging_path, created)
                raise
            if action == "use" and fs_type not in _OFFLINE_GROWABLE:
                self._grow_if_needed(volume_id, device.path, staging_path, fs_type)

    def _format_action(self, volume_id: str, device: BlockDevice, fs_type: str) -> str:
        """ "format" (proven blank), "redo" (zonal's own unfinished format) or "use" (holds fs_type)."""
        content = self.mounter.probe(device.path)
        marker = self.state.format_started(volume_id)
        if marker is not None and not (marker.appearance and marker.appearance == device.appearance):
            # A marker from an earlier attachment of the volume (or a disk the kernel gives no sequence
            # number): since then the volume may have been used elsewhere, so what is on it now is
            # judged like any other content, never formatted again on the marker's word.
            self.log.warning(
                "volume %s: ignoring the %s format marker of %s from another attachment (%s, now %s)",
                volume_id,
                marker.fs_type,
                marker.device,
                marker.appearance or "unknown",
                device.appearance or "unknown",
            )
            self.state.end_format(volume_id)
            marker = None
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
                    f"device {device.path} of volume {shown(volume_id)} has no filesystem signature blkid "
                    "knows, "
                    f"but its {region} is not zeros: refusing to format what may be data"
                )
            return "format"
        if content != fs_type:
            # Never format a device that holds something: it may be the user's data.
            raise FailedPrecondition(
                f"device {device.path} of volume {shown(volume_id)} holds {content}, not {fs_type}; "
                "refusing to reformat it"
            )
        return "use"

    def _format(
        self, volume_id: str, device: BlockDevice, fs_type: str, options: FormatOptions, redo: bool
    ) -> None:
        self.state.begin_format(
            FormatMarker(volume_id, device.path, device.major_minor, device.proof, fs_type, device.appearance)
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
        with self._hold(volume_id):
            self.custody.clean(volume_id, staging_path, "staging_target_path")
            # The volume leaves this node's custody: a format marker must not outlive it.
            self.state.end_format(volume_id)

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
        cap = inputs.capability(capability)
        if not staging_path:
            # CSI NodePublishVolume: "Staging target path not set" → FAILED_PRECONDITION.
            raise FailedPrecondition(
                "staging_target_path is not set; this plugin stages volumes (STAGE_UNSTAGE_VOLUME) first"
            )
        staging_path = inputs.path(staging_path, "staging_target_path")
        inputs.apart(target_path, staging_path)
        read_only = readonly or cap.access_mode in inputs.READ_ONLY_MODES
        if cap.access_type == AccessType.BLOCK:
            with self._hold(volume_id):
                self._publish_block(volume_id, target_path, read_only, publish_context)
            return
        options = inputs.mount_options(cap, inputs.fs_type(cap))
        with self._hold(volume_id):
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
        if staged.kind in UNREACHABLE:
            raise unreachable("staging_target_path", staged)
        source = staged.top
        if source is None:
            # CSI NodePublishVolume: "Staging target path not set" → FAILED_PRECONDITION.
            raise FailedPrecondition(f"volume {shown(volume_id)} is not staged at {shown(staging_path)}")
        ours = self.custody.ownership(volume_id, staging_path, publish_context)
        if source.major_minor not in ours.numbers:
            raise FailedPrecondition(
                f"staging target path {shown(staging_path)} holds {source.describe()}, not volume "
                f"{shown(volume_id)}{ours.why_not}"
            )
        here = self.mounter.inspect(target_path)
        current = here.top
        if current is not None and here.kind not in UNREACHABLE:
            same = (current.major_minor, current.root) == (source.major_minor, source.root)
            self._check_published(volume_id, target_path, same, current.read_only, read_only)
            return  # CSI: NodePublishVolume repeated with the same arguments → OK.
        self.custody.empty_or_missing_dir("target_path", here)
        created = self.mounter.make_dirs(target_path) if here.kind is PathKind.MISSING else ()
        try:
            self.state.remember(PathRecord(volume_id, target_path, "target", source.major_minor, "", created))
            self.log.info(
                "binding %s at %s (volume %s, read_only=%s)", staging_path, target_path, volume_id, read_only
            )
            self.mounter.bind_mount(staging_path, target_path, read_only, options)
        except BaseException:
            self.custody.undo(target_path, created)
            raise

    def _publish_block(
        self, volume_id: str, target_path: str, read_only: bool, publish_context: Mapping[str, str]
    ) -> None:
        device = self.resolver.resolve(volume_id, publish_context)
        here = self.mounter.inspect(target_path)
        current = here.top
        if current is not None and here.kind not in UNREACHABLE:
            same = here.kind is PathKind.BLOCK_DEVICE and here.rdev == device.major_minor
            self._check_published(volume_id, target_path, same, current.read_only, read_only)
            return  # CSI: NodePublishVolume repeated with the same arguments → OK.
        if here.kind in UNREACHABLE:
            raise unreachable("target_path", here)
        if here.kind is not PathKind.MISSING and not (here.kind is PathKind.FILE and not here.entries):
            kind = f"non-empty {here.kind.value}" if here.entries else here.kind.value
            raise FailedPrecondition(
                f"target_path {shown(target_path)} is a {kind}; a block volume is published on a new "
                "or empty file"
            )
        self.custody.check_free(volume_id, device, raw_block=True)
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
            self.custody.undo(target_path, created_dirs, created_file)
            raise

    @staticmethod
    def _check_published(volume_id: str, target: str, same: bool, is_ro: bool, want_ro: bool) -> None:
        if not same:
            # CSI NodePublishVolume: "Volume published but is incompatible" → ALREADY_EXISTS.
            raise AlreadyExists(
                f"target path {shown(target)} already has another volume mounted, not {shown(volume_id)}"
            )
        if is_ro != want_ro:
            raise AlreadyExists(
                f"volume {shown(volume_id)} is already published at {shown(target)} with "
                f"read_only={is_ro}, not {want_ro}"
            )

    def unpublish(self, volume_id: str, target_path: str) -> None:
        volume_id = inputs.volume_id(volume_id)
        target_path = inputs.path(target_path, "target_path")
        with self._hold(volume_id):
            self.custody.clean(volume_id, target_path, "target_path")

    # -- stats / expand -------------------------------------------------------------------------

    def get_volume_stats(self, volume_id: str, volume_path: str) -> VolumeStats:
        volume_id = inputs.volume_id(volume_id)
        volume_path = inputs.path(volume_path, "volume_path", relative_is_not_found=True)
        here, ours = self.custody.mounted_here(volume_id, volume_path)
        if here.kind is PathKind.BLOCK_DEVICE:
            return VolumeStats(
                total_bytes=self.mounter.device_size(self.custody.device_path(volume_id, ours, here.rdev))
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

    def expand(self, volume_id: str, volume_path: str, capability: VolumeCapability | None) -> int:
        """Grow the filesystem at ``volume_path`` to its device; returns the device's size in bytes.
        What is mounted at the path decides (``capability`` is optional in CSI and not needed)."""
        volume_id = inputs.volume_id(volume_id)
        volume_path = inputs.path(volume_path, "volume_path", relative_is_not_found=True)
        with self._hold(volume_id):
            here, ours = self.custody.mounted_here(volume_id, volume_path)
            top = here.top
            assert top is not None
            if here.kind is PathKind.BLOCK_DEVICE:
                # Block access: the device already has its new size; nothing to grow.
                return self.mounter.device_size(self.custody.device_path(volume_id, ours, here.rdev))
            device = self.custody.device_path(volume_id, ours, top.major_minor)
            if top.fs_type not in SUPPORTED_FS_TYPES:
                raise FailedPrecondition(f"cannot grow {top.fs_type} at {shown(volume_path)}")
            self.log.info("growing %s on %s at %s (volume %s)", top.fs_type, device, volume_path, volume_id)
            self.mounter.resize_fs(device, volume_path, top.fs_type)
            return self.mounter.device_size(device)
