"""The node service's settings and answers: plain data, plus the per-volume in-flight guard."""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from provisioner.errors import OperationInProgress, shown
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
    """Names of the volumes an operation is running on; a second concurrent call is refused.

    The guard is released however the operation ends (error, deadline, a killed command), so a
    retry is never refused because of a call that is over."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[str] = set()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._lock:
            if key in self._held:
                # CSI: "Operation pending for volume" → ABORTED; the CO retries later.
                raise OperationInProgress(f"an operation on volume {shown(key)} is already in progress")
            self._held.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(key)

    def held(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._held)
