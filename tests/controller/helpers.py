"""Small builders shared by the controller-core tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from provisioner.controller import ControllerCore
from provisioner.model import (
    GIB,
    ZONE_KEY,
    AccessMode,
    AccessType,
    CapacityRange,
    ContentSource,
    TopologyRequirement,
    VolumeCapability,
)
from provisioner.ports.clock import Deadline
from provisioner.ports.csi import CreatedVolume

MOUNT_RWO = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, "ext4")
BLOCK_RWO = VolumeCapability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)
BLOCK_RWX = VolumeCapability(AccessType.BLOCK, AccessMode.MULTI_NODE_MULTI_WRITER)
MOUNT_RWX = VolumeCapability(AccessType.MOUNT, AccessMode.MULTI_NODE_MULTI_WRITER, "ext4")
MOUNT_ROX = VolumeCapability(AccessType.MOUNT, AccessMode.MULTI_NODE_READER_ONLY, "ext4")


def zones(*names: str) -> tuple[Mapping[str, str], ...]:
    return tuple({ZONE_KEY: n} for n in names)


def create(
    core: ControllerCore,
    name: str = "pvc-1",
    size_gib: int = 10,
    parameters: Mapping[str, str] | None = None,
    requirement: TopologyRequirement | None = None,
    capabilities: Sequence[VolumeCapability] = (MOUNT_RWO,),
    deadline: Deadline | None = None,
    mutable: Mapping[str, str] | None = None,
    source: ContentSource | None = None,
    limit_gib: int = 0,
) -> CreatedVolume:
    return core.create_volume(
        name,
        CapacityRange(size_gib * GIB, limit_gib * GIB),
        capabilities,
        parameters or {},
        mutable or {},
        requirement or TopologyRequirement(),
        source,
        deadline,
    )
