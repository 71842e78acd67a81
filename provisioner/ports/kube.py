"""The Kubernetes port: the API verbs the loop, doctor and relocate use, and the informers' read cache.

Why it exists: :mod:`provisioner.provisioning` must run against the official Kubernetes client
(:mod:`provisioner.kube`) in production and against stateful in-memory fakes in tests (its other port,
the CSI client, is :mod:`provisioner.ports.csi`). Objects cross this port as plain dicts in the API's
JSON shape (camelCase, as ``kubectl get -o json`` shows them), so fakes, adapters and the core agree on
one form.
This module defines shapes and errors only; it performs no I/O.

Errors raised by :class:`KubeApi` (adapters translate their client's exceptions into these)::

    ZonalError
    └── KubeError                      any failed API call
        ├── KubeNotFound (NotFound)    404
        ├── KubeAlreadyExists (AlreadyExists)  409 on create
        ├── KubeConflict               409 on update: the resourceVersion is stale
        ├── ResourceGone               410 on watch: re-list
        ├── KubeForbidden (PermissionDenied)   401/403
        └── KubeUnavailable (Unavailable)      5xx, 429, connection failures
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from provisioner.errors import AlreadyExists, NotFound, PermissionDenied, Unavailable, ZonalError

Obj = dict[str, Any]
"""One Kubernetes object in its JSON shape."""


class Kind(enum.Enum):
    """The resources the loop touches: (group, version, plural, namespaced, kind)."""

    CLAIM = ("", "v1", "persistentvolumeclaims", True, "PersistentVolumeClaim")
    PV = ("", "v1", "persistentvolumes", False, "PersistentVolume")
    NODE = ("", "v1", "nodes", False, "Node")
    SECRET = ("", "v1", "secrets", True, "Secret")
    EVENT = ("", "v1", "events", True, "Event")
    POD = ("", "v1", "pods", True, "Pod")
    STORAGE_CLASS = ("storage.k8s.io", "v1", "storageclasses", False, "StorageClass")
    CSINODE = ("storage.k8s.io", "v1", "csinodes", False, "CSINode")
    VOLUME_ATTACHMENT = ("storage.k8s.io", "v1", "volumeattachments", False, "VolumeAttachment")
    LEASE = ("coordination.k8s.io", "v1", "leases", True, "Lease")
    VOLUME_SNAPSHOT = ("snapshot.storage.k8s.io", "v1", "volumesnapshots", True, "VolumeSnapshot")
    VOLUME_SNAPSHOT_CONTENT = (
        "snapshot.storage.k8s.io",
        "v1",
        "volumesnapshotcontents",
        False,
        "VolumeSnapshotContent",
    )

    def __init__(self, group: str, version: str, plural: str, namespaced: bool, kind: str) -> None:
        self.group = group
        self.version = version
        self.plural = plural
        self.namespaced = namespaced
        self.kind_name = kind

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class KubeError(ZonalError):
    """A Kubernetes API call failed."""


class KubeNotFound(KubeError, NotFound):
    pass


class KubeAlreadyExists(KubeError, AlreadyExists):
    pass


class KubeConflict(KubeError):
    """The object changed since it was read (stale resourceVersion); read it again and retry."""


class ResourceGone(KubeError):
    """The watch's resourceVersion is too old (410 Gone): list again, then watch from the new version."""


class KubeForbidden(KubeError, PermissionDenied):
    pass


class KubeUnavailable(KubeError, Unavailable):
    pass


@dataclass(frozen=True)
class ObjectList:
    items: tuple[Obj, ...]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK
    object: Obj


class KubeApi(Protocol):
    """The verbs the loop needs. Cluster-scoped kinds ignore ``namespace``."""

    def list(self, kind: Kind, namespace: str = "") -> ObjectList:
        """All objects of a kind (every namespace when ``namespace`` is empty)."""
        ...

    def watch(self, kind: Kind, resource_version: str, timeout_seconds: float) -> Iterator[WatchEvent]:
        """Changes after ``resource_version`` until the server ends the stream.

        Raises ResourceGone when the version is too old.
        """
        ...

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj:
        """Raises KubeNotFound."""
        ...

    def create(self, kind: Kind, obj: Obj) -> Obj:
        """Raises KubeAlreadyExists."""
        ...

    def replace(self, kind: Kind, obj: Obj) -> Obj:
        """Update with optimistic concurrency on ``metadata.resourceVersion``; raises KubeConflict."""
        ...

    def patch(self, kind: Kind, name: str, namespace: str, patch: Obj) -> Obj:
        """JSON merge patch (RFC 7386; ``None`` values delete keys). Raises KubeNotFound."""
        ...

    def delete(self, kind: Kind, name: str, namespace: str = "", uid: str = "") -> None:
        """Raises KubeNotFound. With ``uid``, only the object with that UID is deleted (the API server's
        ``preconditions.uid``): another object of the same name raises KubeConflict."""
        ...


class Lister(Protocol):
    """Read access to the informers' caches (what the loop last saw of each kind)."""

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj | None: ...

    def list(self, kind: Kind) -> list[Obj]: ...
