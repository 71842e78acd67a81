"""The CSI vocabulary both sides of the wire share, and the CSI client port.

Why it exists: the controller core answers CreateVolume, the provisioner loop asks for it through a
client, the servicers and the client convert to and from protobuf — and all of them must mean the same
thing by a created volume, a capability or "an operation on this volume is already running". So each
of those has one definition here:

* :class:`CreateVolumeRequest` and :class:`CreatedVolume` (CreateVolume in model terms), :class:`PluginInfo`;
* the capability sets as enums spelled as the CSI spec spells them (:class:`PluginCapability`,
  :class:`ControllerCapability`, :class:`NodeCapability`); the proto conversion lives in
  :mod:`provisioner.csi.convert`;
* :class:`InFlight`, the per-volume in-flight guard of the controller and the node, which reports how
  many operations it holds to an :class:`~provisioner.ports.observers.InFlightObserver`;
* :class:`CsiClient`, what the provisioner loop asks of a CSI driver (the gRPC adapter is
  :class:`provisioner.csi.client.GrpcCsiClient`).

Errors raised by :class:`CsiClient` are the domain errors of :mod:`provisioner.errors` chosen by gRPC code:
INVALID_ARGUMENT → InvalidArgument, NOT_FOUND → NotFound, ALREADY_EXISTS → AlreadyExists,
ABORTED → OperationInProgress, RESOURCE_EXHAUSTED → ResourceExhausted, OUT_OF_RANGE → OutOfRange,
FAILED_PRECONDITION → FailedPrecondition, UNAVAILABLE → Unavailable, DEADLINE_EXCEEDED → DeadlineExceeded,
CANCELLED → :class:`Cancelled`, UNIMPLEMENTED → Unimplemented, PERMISSION_DENIED/UNAUTHENTICATED →
PermissionDenied, anything else → Internal.

This module defines values, one small guard and protocols; it performs no I/O and knows no protobuf.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from provisioner.errors import OperationInProgress, ZonalError
from provisioner.model import CapacityRange, ContentSource, Segment, TopologyRequirement, VolumeCapability
from provisioner.ports.observers import InFlightObserver

# --- CreateVolume -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateVolumeRequest:
    """CSI ``CreateVolumeRequest`` in model terms."""

    name: str
    capacity: CapacityRange
    capabilities: tuple[VolumeCapability, ...]
    parameters: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    content_source: ContentSource | None = None
    requirement: TopologyRequirement | None = None


@dataclass(frozen=True)
class CreatedVolume:
    """CSI ``Volume`` as CreateVolume returns it."""

    volume_id: str
    capacity_bytes: int = 0
    volume_context: Mapping[str, str] = field(default_factory=dict)
    accessible_topology: tuple[Segment, ...] = ()
    content_source: ContentSource | None = None


@dataclass(frozen=True)
class PluginInfo:
    name: str
    vendor_version: str = ""


# --- capabilities (the CSI enums' names) ---------------------------------------------------------------


class PluginCapability(enum.Enum):
    """CSI ``PluginCapability``: the ``Service.Type`` names, and ``VolumeExpansion.Type`` prefixed."""

    CONTROLLER_SERVICE = "CONTROLLER_SERVICE"
    VOLUME_ACCESSIBILITY_CONSTRAINTS = "VOLUME_ACCESSIBILITY_CONSTRAINTS"
    GROUP_CONTROLLER_SERVICE = "GROUP_CONTROLLER_SERVICE"
    VOLUME_EXPANSION_ONLINE = "VOLUME_EXPANSION_ONLINE"
    VOLUME_EXPANSION_OFFLINE = "VOLUME_EXPANSION_OFFLINE"


class ControllerCapability(enum.Enum):
    """CSI ``ControllerServiceCapability.RPC.Type`` names."""

    CREATE_DELETE_VOLUME = "CREATE_DELETE_VOLUME"
    PUBLISH_UNPUBLISH_VOLUME = "PUBLISH_UNPUBLISH_VOLUME"
    LIST_VOLUMES = "LIST_VOLUMES"
    GET_CAPACITY = "GET_CAPACITY"
    CREATE_DELETE_SNAPSHOT = "CREATE_DELETE_SNAPSHOT"
    LIST_SNAPSHOTS = "LIST_SNAPSHOTS"
    CLONE_VOLUME = "CLONE_VOLUME"
    PUBLISH_READONLY = "PUBLISH_READONLY"
    EXPAND_VOLUME = "EXPAND_VOLUME"
    LIST_VOLUMES_PUBLISHED_NODES = "LIST_VOLUMES_PUBLISHED_NODES"
    VOLUME_CONDITION = "VOLUME_CONDITION"
    GET_VOLUME = "GET_VOLUME"
    SINGLE_NODE_MULTI_WRITER = "SINGLE_NODE_MULTI_WRITER"
    MODIFY_VOLUME = "MODIFY_VOLUME"
    GET_SNAPSHOT = "GET_SNAPSHOT"


class NodeCapability(enum.Enum):
    """CSI ``NodeServiceCapability.RPC.Type`` names."""

    STAGE_UNSTAGE_VOLUME = "STAGE_UNSTAGE_VOLUME"
    GET_VOLUME_STATS = "GET_VOLUME_STATS"
    EXPAND_VOLUME = "EXPAND_VOLUME"
    VOLUME_CONDITION = "VOLUME_CONDITION"
    SINGLE_NODE_MULTI_WRITER = "SINGLE_NODE_MULTI_WRITER"
    VOLUME_MOUNT_GROUP = "VOLUME_MOUNT_GROUP"


# --- the in-flight guard ---------------------------------------------------------------------------------


class InFlight:
    """Keys of the operations running now; a second call for a key that is held is refused, not queued.

    CSI: "Operation pending for volume" → ABORTED; the caller retries later and then finds the first
    call's result (aws-ebs-csi-driver's in-flight guard). A key is released however the operation ends
    (error, deadline, a killed command), so a retry is never refused because of a call that is over.
    ``kind`` names the guard (``controller``, ``node``) to the observer.
    """

    def __init__(self, kind: str = "", observer: InFlightObserver | None = None) -> None:
        self.kind = kind
        self._observer = observer
        self._lock = threading.Lock()
        self._held: set[str] = set()

    @contextmanager
    def hold(self, key: str, what: str) -> Iterator[None]:
        """Hold ``key`` for the block; ``what`` names the operation in the refusal's message."""
        with self._lock:
            if key in self._held:
                raise OperationInProgress(f"{what} is already in progress; retry later")
            self._held.add(key)
            self._report()
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(key)
                self._report()

    def held(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._held)

    def _report(self) -> None:
        # Under the lock, so the observer sees the counts in the order they happened.
        if self._observer is not None:
            self._observer.inflight_changed(self.kind, len(self._held))


# --- the client port --------------------------------------------------------------------------------------


class Cancelled(ZonalError):
    """The call was cancelled before it finished (gRPC CANCELLED); it may still be running."""


class CsiClient(Protocol):
    """What the loop asks of a CSI driver. Every call is bounded by the client's per-call timeout."""

    def probe(self) -> bool:
        """True when ready. Raises FailedPrecondition when unhealthy, Unavailable when unreachable."""
        ...

    def plugin_info(self) -> PluginInfo: ...

    def plugin_capabilities(self) -> frozenset[PluginCapability]: ...

    def controller_capabilities(self) -> frozenset[ControllerCapability]:
        """Empty when the driver serves no Controller service (UNIMPLEMENTED)."""
        ...

    def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume: ...

    def delete_volume(self, volume_id: str, secrets: Mapping[str, str] | None = None) -> None: ...
