"""The driver's vocabulary: plain, immutable values shared by cores, adapters and the CSI layer.

Nothing here performs I/O or knows about gRPC, boto3 or Kubernetes. Sizes are in bytes or GiB as the
field name says; times are seconds (monotonic for deadlines, epoch for timestamps).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

GIB = 1024**3

# Topology keys. NodeGetInfo reports the first two; CreateVolume accepts all of them.
ZONE_KEY = "topology.kubernetes.io/zone"
EBS_ZONE_KEY = "topology.ebs.csi.aws.com/zone"
LEGACY_ZONE_KEY = "failure-domain.beta.kubernetes.io/zone"
ZONE_ID_KEY = "topology.k8s.aws/zone-id"
ZONE_KEYS = (ZONE_KEY, EBS_ZONE_KEY, LEGACY_ZONE_KEY)

# Tags written on every volume and snapshot the driver creates.
TAG_VOLUME_NAME = "CSIVolumeName"
TAG_SNAPSHOT_NAME = "CSIVolumeSnapshotName"
TAG_CLUSTER_PREFIX = "kubernetes.io/cluster/"
TAG_DRIVER = "ebs.csi.aws.com/cluster"  # aws-ebs-csi-driver's ownership tag, kept for compatibility
TAG_ZONAL_DRIVER = "zonal.dev/driver"  # which driver name created the object


# EC2 resource ids: a prefix and 8 (older) or 17 lower-case hex digits. A string of another shape cannot
# name an EBS volume, snapshot or instance, so it is treated as one that does not exist and never sent
# to EC2 (which would answer *.Malformed, or choke on control characters in its own error message).
_VOLUME_ID = re.compile(r"vol-[0-9a-f]{8,17}")
_SNAPSHOT_ID = re.compile(r"snap-[0-9a-f]{8,17}")
_INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")


def is_volume_id(value: str) -> bool:
    return _VOLUME_ID.fullmatch(value) is not None


def is_snapshot_id(value: str) -> bool:
    return _SNAPSHOT_ID.fullmatch(value) is not None


def is_instance_id(value: str) -> bool:
    return _INSTANCE_ID.fullmatch(value) is not None


Segment = Mapping[str, str]
"""One topology segment: a set of key → value labels (e.g. {zone key: "us-east-1a"})."""


@dataclass(frozen=True)
class TopologyRequirement:
    """CSI ``TopologyRequirement``: requisite and preferred segments, preferred in priority order."""

    requisite: tuple[Segment, ...] = ()
    preferred: tuple[Segment, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requisite and not self.preferred


class AccessType(enum.Enum):
    MOUNT = "mount"
    BLOCK = "block"


class AccessMode(enum.IntEnum):
    """CSI ``VolumeCapability.AccessMode.Mode`` with the spec's numbers."""

    UNKNOWN = 0
    SINGLE_NODE_WRITER = 1
    SINGLE_NODE_READER_ONLY = 2
    MULTI_NODE_READER_ONLY = 3
    MULTI_NODE_SINGLE_WRITER = 4
    MULTI_NODE_MULTI_WRITER = 5
    SINGLE_NODE_SINGLE_WRITER = 6
    SINGLE_NODE_MULTI_WRITER = 7


@dataclass(frozen=True)
class VolumeCapability:
    access_type: AccessType
    access_mode: AccessMode
    fs_type: str = ""
    mount_flags: tuple[str, ...] = ()
    volume_mount_group: str = ""


@dataclass(frozen=True)
class CapacityRange:
    required_bytes: int = 0
    limit_bytes: int = 0


@dataclass(frozen=True)
class ContentSource:
    """Where a new volume's data comes from: exactly one of the two ids is set."""

    snapshot_id: str = ""
    volume_id: str = ""


@dataclass(frozen=True)
class Zone:
    name: str
    zone_id: str
    state: str = "available"


class VolumeState(enum.Enum):
    CREATING = "creating"
    AVAILABLE = "available"
    IN_USE = "in-use"
    DELETING = "deleting"
    DELETED = "deleted"
    ERROR = "error"


@dataclass(frozen=True)
class Attachment:
    volume_id: str
    instance_id: str
    device: str
    state: str  # attaching | attached | detaching | detached | busy


@dataclass(frozen=True)
class Volume:
    """An EBS volume as EC2 reports it."""

    volume_id: str
    size_gib: int
    zone: str
    state: VolumeState
    volume_type: str = "gp3"
    iops: int | None = None
    throughput: int | None = None
    encrypted: bool = False
    kms_key_id: str = ""
    multi_attach: bool = False
    snapshot_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()

    @property
    def name(self) -> str:
        return self.tags.get(TAG_VOLUME_NAME, "")


@dataclass(frozen=True)
class VolumeSpec:
    """What to create: the result of validating a CreateVolume request's parameters."""

    name: str
    size_gib: int
    volume_type: str = "gp3"
    iops: int | None = None
    throughput: int | None = None
    encrypted: bool = False
    kms_key_id: str = ""
    multi_attach: bool = False
    snapshot_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    initialization_rate: int | None = None  # MiB/s (EC2's VolumeInitializationRate), with snapshot_id only


@dataclass(frozen=True)
class Instance:
    instance_id: str
    zone: str
    instance_type: str = ""
    state: str = "running"
    # device name → volume id, from the instance's block-device mappings
    block_devices: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    source_volume_id: str
    size_gib: int
    state: str  # pending | completed | error
    created_at: float = 0.0  # epoch seconds
    tags: Mapping[str, str] = field(default_factory=dict)
    progress: int = 0  # percent EC2 reports done (``Progress``); 100 once completed

    @property
    def ready(self) -> bool:
        return self.state == "completed"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_token`` is empty on the last page."""

    items: tuple[T, ...]
    next_token: str = ""
