"""A stateful in-memory Kubernetes API: resourceVersions, watch history, 409 on stale updates, 410 Gone.

Implements :class:`provisioner.ports.kube.KubeApi` for the loop's tests and for ``zonal demo`` (its
in-memory cluster), and is the state behind the HTTP fake (:mod:`provisioner.embedded.kube.fakeapi`) that the
official client talks to. It imports no Kubernetes client. Semantics kept from the real API
server: one cluster-wide resourceVersion counter; ``replace`` with a stale resourceVersion → conflict;
``delete`` of an object with finalizers only sets ``deletionTimestamp``, and the object disappears once
its last finalizer is removed; JSON merge patch; ``compact()`` expires old watch positions (410).
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from provisioner.ports.kube import (
    Kind,
    KubeAlreadyExists,
    KubeConflict,
    KubeError,
    KubeNotFound,
    Obj,
    ObjectList,
    ResourceGone,
    WatchEvent,
)

Key = tuple[Kind, str, str]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class MemoryKube:
    def __init__(self) -> None:
        self._objects: dict[Key, Obj] = {}
        self._history: list[tuple[int, Kind, WatchEvent]] = []
        self._rv = 100
        self._compacted = 0
        self._generation = 0  # bumped by compact(): running watches end with 410 Gone
        self._cond = threading.Condition()
        self.calls: list[tuple[str, Kind, str]] = []
        self.fail_next: dict[str, KubeError] = {}  # verb → error raised once
        # Kinds whose API is not served (CRDs not installed): every verb answers 404, as the API server does.
        self.unserved: set[Kind] = set()

    # --- helpers for tests ------------------------------------------------------------------------------

    def _key(self, kind: Kind, name: str, namespace: str) -> Key:
        return (kind, namespace if kind.namespaced else "", name)

    def _bump(self, kind: Kind, type_: str, obj: Obj) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._history.append((self._rv, kind, WatchEvent(type_, copy.deepcopy(obj))))
        self._cond.notify_all()

    def _check_fault(self, verb: str, kind: Kind | None = None) -> None:
        if kind in self.unserved:
            raise KubeNotFound("the server could not find the requested resource")
        err = self.fail_next.pop(verb, None)
        if err is not None:
            raise err

    def compact(self) -> None:
        """Forget watch history: running watches and any watch from an older resourceVersion get 410 Gone."""
        with self._cond:
            self._compacted = self._rv
            self._generation += 1
            self._history.clear()
            self._cond.notify_all()

    def objects(self, kind: Kind) -> list[Obj]:
        with self._cond:
            return [copy.deepcopy(o) for (k, _, _), o in self._objects.items() if k is kind]

    def find(self, kind: Kind, name: str, namespace: str = "") -> Obj | None:
        with self._cond:
            obj = self._objects.get(self._key(kind, name, namespace))
            return copy.deepcopy(obj) if obj else None

    def set_status(self, kind: Kind, name: str, namespace: str, status: dict[str, Any]) -> Obj:
        with self._cond:
            obj = self._objects[self._key(kind, name, namespace)]
            obj["status"] = {**obj.get("status", {}), **status}
            self._bump(kind, "MODIFIED", obj)
            return copy.deepcopy(obj)

    @property
    def resource_version(self) -> str:
        with self._cond:
            return str(self._rv)

    # --- KubeApi ------------------------------------------------------------------------------------------

    def list(self, kind: Kind, namespace: str = "") -> ObjectList:
        with self._cond:
            self.calls.append(("list", kind, namespace))
            self._check_fault("list", kind)
            items = tuple(
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self._objects.items(), key=lambda kv: kv[0][1:])
                if k is kind and (not namespace or ns == namespace)
            )
            return ObjectList(items, str(self._rv))

    def watch(self, kind: Kind, resource_version: str, timeout_seconds: float) -> Iterator[WatchEvent]:
        since = int(resource_version or 0)
        deadline = time.monotonic() + timeout_seconds
        with self._cond:
            generation = self._generation
        while True:
            with self._cond:
                if since < self._compacted or generation != self._generation:
                    raise ResourceGone(f"too old resource version: {since} ({self._compacted})")
                pending = [(rv, e) for rv, k, e in self._history if k is kind and rv > since]
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._cond.wait(remaining)
                    continue
            for rv, event in pending:
                since = rv
                yield WatchEvent(event.type, copy.deepcopy(event.object))

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj:
        with self._cond:
            self.calls.append(("get", kind, name))
            self._check_fault("get", kind)
            obj = self._objects.get(self._key(kind, name, namespace))
            if obj is None:
                raise KubeNotFound(f'{kind.plural} "{name}" not found')
            return copy.deepcopy(obj)

    def create(self, kind: Kind, obj: Obj) -> Obj:
        with self._cond:
            self._check_fault("create", kind)
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            if kind.namespaced:
                meta.setdefault("namespace", "default")
            else:
                meta.pop("namespace", None)
            key = self._key(kind, meta["name"], meta.get("namespace", ""))
            self.calls.append(("create", kind, meta["name"]))
            if key in self._objects:
                raise KubeAlreadyExists(f'{kind.plural} "{meta["name"]}" already exists')
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            obj.setdefault("apiVersion", kind.api_version)
            obj.setdefault("kind", kind.kind_name)
            self._objects[key] = obj
            self._bump(kind, "ADDED", obj)
            return copy.deepcopy(obj)

    def _store_update(self, kind: Kind, key: Key, obj: Obj) -> Obj:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self._objects[key]
            self._bump(kind, "DELETED", obj)
        else:
            self._objects[key] = obj
            self._bump(kind, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def replace(self, kind: Kind, obj: Obj) -> Obj:
        with self._cond:
            self._check_fault("replace", kind)
            meta = obj["metadata"]
            key = self._key(kind, meta["name"], meta.get("namespace", ""))
            self.calls.append(("replace", kind, meta["name"]))
            current = self._objects.get(key)
            if current is None:
                raise KubeNotFound(f'{kind.plural} "{meta["name"]}" not found')
            if (
                meta.get("resourceVersion")
                and meta["resourceVersion"] != current["metadata"]["resourceVersion"]
            ):
                raise KubeConflict(
                    f'Operation cannot be fulfilled on {kind.plural} "{meta["name"]}": '
                    "the object has been modified; please apply your changes to the latest version"
                )
            new = copy.deepcopy(obj)
            for fixed in ("uid", "creationTimestamp", "deletionTimestamp"):
                if fixed in current["metadata"]:
                    new["metadata"][fixed] = current["metadata"][fixed]
            return self._store_update(kind, key, new)

    def patch(self, kind: Kind, name: str, namespace: str, patch: Obj) -> Obj:
        with self._cond:
            self._check_fault("patch", kind)
            key = self._key(kind, name, namespace)
            self.calls.append(("patch", kind, name))
            current = self._objects.get(key)
            if current is None:
                raise KubeNotFound(f'{kind.plural} "{name}" not found')
            return self._store_update(kind, key, merge_patch(current, patch))

    def delete(self, kind: Kind, name: str, namespace: str = "", uid: str = "") -> None:
        with self._cond:
            self._check_fault("delete", kind)
            key = self._key(kind, name, namespace)
            self.calls.append(("delete", kind, name))
            current = self._objects.get(key)
            if current is None:
                raise KubeNotFound(f'{kind.plural} "{name}" not found')
            if uid and current["metadata"].get("uid") != uid:
                # The API server answers a failed precondition with 409 Conflict.
                raise KubeConflict(
                    f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                    f"{current['metadata'].get('uid')}"
                )
            if current["metadata"].get("finalizers"):
                if not current["metadata"].get("deletionTimestamp"):
                    current["metadata"]["deletionTimestamp"] = time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
                    )
                    self._bump(kind, "MODIFIED", current)
                return
            del self._objects[key]
            self._bump(kind, "DELETED", current)


# --- object builders for tests ----------------------------------------------------------------------------

ZONE = "topology.kubernetes.io/zone"


def node(name: str, zone: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": {ZONE: zone, **labels}}}


def csinode(name: str, driver: str, keys: tuple[str, ...] = (ZONE,)) -> Obj:
    drivers = [{"name": driver, "nodeID": f"i-{name}", "topologyKeys": list(keys)}] if driver else []
    return {"metadata": {"name": name}, "spec": {"drivers": drivers}}


def storage_class(
    name: str,
    driver: str,
    binding: str = "WaitForFirstConsumer",
    allowed_zones: tuple[str, ...] = (),
    **params: str,
) -> Obj:
    sc: Obj = {
        "metadata": {"name": name},
        "provisioner": driver,
        "volumeBindingMode": binding,
        "reclaimPolicy": "Delete",
        "parameters": dict(params),
    }
    if allowed_zones:
        sc["allowedTopologies"] = [{"matchLabelExpressions": [{"key": ZONE, "values": list(allowed_zones)}]}]
    return sc


def claim(
    name: str, sc: str, driver: str, size: str = "4Gi", node_name: str = "", namespace: str = "default"
) -> Obj:
    ann = {"volume.kubernetes.io/storage-provisioner": driver}
    if node_name:
        ann["volume.kubernetes.io/selected-node"] = node_name
    return {
        "metadata": {"name": name, "namespace": namespace, "annotations": ann},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": sc,
            "resources": {"requests": {"storage": size}},
            "volumeMode": "Filesystem",
        },
        "status": {"phase": "Pending"},
    }


def three_zone_cluster(
    kube: MemoryKube, driver: str, zones: tuple[str, ...] = ("us-east-1a", "us-east-1b", "us-east-1c")
) -> None:
    for i, zone in enumerate(zones):
        kube.create(Kind.NODE, node(f"node-{i}", zone))
        kube.create(Kind.CSINODE, csinode(f"node-{i}", driver))
