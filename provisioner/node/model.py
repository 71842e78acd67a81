"""The node service's settings and answers: plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner.ports.node import NodeMetadata

DEFAULT_METADATA_SOURCES = ("imds", "kubernetes")
KNOWN_METADATA_SOURCES = frozenset(DEFAULT_METADATA_SOURCES)


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
