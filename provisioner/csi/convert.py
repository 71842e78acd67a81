"""Conversions between CSI protobuf messages and the driver's model values, shared by servicers.

Every function here is pure. ``*_from_pb`` functions validate what the model cannot represent and
raise :class:`~provisioner.errors.InvalidArgument` with the offending field named.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from provisioner.csi._proto import csi_pb2
from provisioner.errors import InvalidArgument
from provisioner.model import (
    AccessMode,
    AccessType,
    CapacityRange,
    ContentSource,
    Segment,
    TopologyRequirement,
    VolumeCapability,
)
from provisioner.ports.csi import PluginCapability

E = TypeVar("E", bound=enum.Enum)


def require(value: object, field: str) -> None:
    """CSI: a missing required field → INVALID_ARGUMENT (checked before anything else)."""
    if not value:
        raise InvalidArgument(f"{field} is required")


def capability_from_pb(cap: csi_pb2.VolumeCapability, field: str = "volume_capability") -> VolumeCapability:
    kind = cap.WhichOneof("access_type")
    if kind is None:
        raise InvalidArgument(f"{field}: access_type (block or mount) is required")
    if not cap.HasField("access_mode"):
        raise InvalidArgument(f"{field}: access_mode is required")
    try:
        mode = AccessMode(cap.access_mode.mode)
    except ValueError as e:
        raise InvalidArgument(f"{field}: unknown access mode {cap.access_mode.mode}") from e
    if mode is AccessMode.UNKNOWN:
        raise InvalidArgument(f"{field}: access mode is UNKNOWN")
    if kind == "block":
        return VolumeCapability(AccessType.BLOCK, mode)
    return VolumeCapability(
        AccessType.MOUNT,
        mode,
        fs_type=cap.mount.fs_type,
        mount_flags=tuple(cap.mount.mount_flags),
        volume_mount_group=cap.mount.volume_mount_group,
    )


def capabilities_from_pb(caps: Iterable[csi_pb2.VolumeCapability]) -> tuple[VolumeCapability, ...]:
    return tuple(capability_from_pb(c, f"volume_capabilities[{i}]") for i, c in enumerate(caps))


def capability_to_pb(cap: VolumeCapability) -> csi_pb2.VolumeCapability:
    mode = csi_pb2.VolumeCapability.AccessMode(mode=int(cap.access_mode))  # type: ignore[arg-type]
    if cap.access_type is AccessType.BLOCK:
        return csi_pb2.VolumeCapability(block=csi_pb2.VolumeCapability.BlockVolume(), access_mode=mode)
    return csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(
            fs_type=cap.fs_type,
            mount_flags=list(cap.mount_flags),
            volume_mount_group=cap.volume_mount_group,
        ),
        access_mode=mode,
    )


def capacity_from_pb(msg: csi_pb2.CapacityRange | None) -> CapacityRange:
    if msg is None:
        return CapacityRange()
    if msg.required_bytes < 0 or msg.limit_bytes < 0:
        raise InvalidArgument("capacity_range: byte counts must not be negative")
    return CapacityRange(required_bytes=msg.required_bytes, limit_bytes=msg.limit_bytes)


def segment_to_pb(segment: Mapping[str, str]) -> csi_pb2.Topology:
    return csi_pb2.Topology(segments=dict(segment))


def segments_from_pb(topologies: Iterable[csi_pb2.Topology]) -> tuple[Segment, ...]:
    return tuple(dict(t.segments) for t in topologies)


def requirement_from_pb(msg: csi_pb2.TopologyRequirement | None) -> TopologyRequirement:
    if msg is None:
        return TopologyRequirement()
    return TopologyRequirement(
        requisite=segments_from_pb(msg.requisite), preferred=segments_from_pb(msg.preferred)
    )


def requirement_to_pb(req: TopologyRequirement) -> csi_pb2.TopologyRequirement:
    return csi_pb2.TopologyRequirement(
        requisite=[segment_to_pb(s) for s in req.requisite],
        preferred=[segment_to_pb(s) for s in req.preferred],
    )


def content_source_from_pb(msg: csi_pb2.VolumeContentSource | None) -> ContentSource | None:
    if msg is None:
        return None
    kind = msg.WhichOneof("type")
    if kind == "snapshot":
        require(msg.snapshot.snapshot_id, "volume_content_source.snapshot.snapshot_id")
        return ContentSource(snapshot_id=msg.snapshot.snapshot_id)
    if kind == "volume":
        require(msg.volume.volume_id, "volume_content_source.volume.volume_id")
        return ContentSource(volume_id=msg.volume.volume_id)
    raise InvalidArgument("volume_content_source: neither snapshot nor volume is set")


def content_source_to_pb(src: ContentSource | None) -> csi_pb2.VolumeContentSource | None:
    if src is None:
        return None
    if src.snapshot_id:
        return csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=src.snapshot_id)
        )
    return csi_pb2.VolumeContentSource(
        volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=src.volume_id)
    )


def segments_to_pb(segments: Sequence[Mapping[str, str]]) -> list[csi_pb2.Topology]:
    return [segment_to_pb(s) for s in segments]


# Capabilities: the enums of provisioner.ports.csi carry the proto enums' names.
_PluginCap = csi_pb2.PluginCapability
_EXPANSION = "VOLUME_EXPANSION_"


def plugin_capability_to_pb(cap: PluginCapability) -> csi_pb2.PluginCapability:
    # protobuf takes an enum field's value by its name.
    if cap.value.startswith(_EXPANSION):
        return _PluginCap(
            volume_expansion=_PluginCap.VolumeExpansion(type=cap.value.removeprefix(_EXPANSION))
        )
    return _PluginCap(service=_PluginCap.Service(type=cap.value))


def plugin_capability_name(cap: csi_pb2.PluginCapability) -> str:
    """The capability's name as :class:`PluginCapability` spells it (``UNKNOWN`` for neither kind)."""
    if cap.HasField("service"):
        return _PluginCap.Service.Type.Name(cap.service.type)
    if cap.HasField("volume_expansion"):
        return _EXPANSION + _PluginCap.VolumeExpansion.Type.Name(cap.volume_expansion.type)
    return "UNKNOWN"


def controller_capability_name(cap: csi_pb2.ControllerServiceCapability) -> str:
    return csi_pb2.ControllerServiceCapability.RPC.Type.Name(cap.rpc.type)


def node_capability_name(cap: csi_pb2.NodeServiceCapability) -> str:
    return csi_pb2.NodeServiceCapability.RPC.Type.Name(cap.rpc.type)


def known(enum_type: type[E], names: Iterable[str]) -> frozenset[E]:
    """The members of ``enum_type`` among ``names``; names this driver does not know are left out."""
    values = {m.value: m for m in enum_type}
    return frozenset(values[n] for n in names if n in values)
