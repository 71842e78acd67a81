"""Checks of a request that several controller RPCs share: access modes, multi-attach, the tag count.

Pure functions over model values; they raise InvalidArgument naming the cause.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.errors import InvalidArgument, shown
from provisioner.model import AccessMode, AccessType, VolumeCapability
from provisioner.ports.node import SUPPORTED_FS_TYPES

# EC2: at most 50 user tags on one resource.
MAX_TAGS = 50


def check_capability(capability: VolumeCapability) -> None:
    """SINGLE_NODE_WRITER for mount and block; MULTI_NODE_MULTI_WRITER for block only (EBS
    multi-attach), as aws-ebs-csi-driver. Raises InvalidArgument otherwise."""
    mode = capability.access_mode
    if mode is AccessMode.SINGLE_NODE_WRITER:
        return
    if mode is AccessMode.MULTI_NODE_MULTI_WRITER:
        if capability.access_type is AccessType.BLOCK:
            return
        raise InvalidArgument("access mode MULTI_NODE_MULTI_WRITER is supported for block volumes only")
    raise InvalidArgument(f"access mode {mode.name} is not supported")


def check_fs_type(capability: VolumeCapability) -> None:
    """A mount capability's fs type must be one the node can make and mount (empty: the default).
    CSI: an unsupported field → INVALID_ARGUMENT; a volume no node could stage is not confirmed."""
    fs_type = capability.fs_type.lower()
    if capability.access_type is AccessType.MOUNT and fs_type and fs_type not in SUPPORTED_FS_TYPES:
        supported = ", ".join(SUPPORTED_FS_TYPES)
        raise InvalidArgument(f"fs type {shown(capability.fs_type)} is not supported; use one of {supported}")


def check_tag_count(tags: Mapping[str, str], what: str) -> None:
    """EC2 allows at most 50 tags on a volume or snapshot. Counted before the call, so too many
    tagSpecification_N is INVALID_ARGUMENT naming the cause, not EC2's TagLimitExceeded after it."""
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(
            f"the {what} would carry {len(tags)} tags (the driver's own, --extra-tags and "
            f"tagSpecification_N); EC2 allows at most {MAX_TAGS}"
        )


def wants_multi_attach(capability: VolumeCapability) -> bool:
    return capability.access_mode is AccessMode.MULTI_NODE_MULTI_WRITER
