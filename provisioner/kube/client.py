"""The KubeApi port over the official ``kubernetes`` client.

Why it exists: the loop's verbs (list, watch, get, create, replace, merge-patch, delete) for the handful
of kinds it touches, through the client's typed APIs so its serialization is what talks to the server.
Objects come back as the API's JSON dicts; errors come back as the port's error tree. Requests are
rate-limited client-side (``--kube-api-qps``/``--kube-api-burst``). It makes no decisions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import urllib3.exceptions
from kubernetes import client as _client
from kubernetes import watch as _watch
from kubernetes.client.exceptions import ApiException

from provisioner.kube import kubeconfig as kubeconfig_loader
from provisioner.kube.errors import network_reason, translate, translated
from provisioner.ports.clock import Clock, SystemClock
from provisioner.ports.kube import (
    Kind,
    KubeError,
    KubeUnavailable,
    Obj,
    ObjectList,
    ResourceGone,
    WatchEvent,
)
from provisioner.tokenbucket import TokenBucket

# The client is only partly typed; treat it as dynamic at this boundary.
k8s: Any = _client
k8s_watch: Any = _watch

# Kind → (API class, singular used in method names).
_TYPED: dict[Kind, tuple[type[Any], str]] = {
    Kind.CLAIM: (k8s.CoreV1Api, "persistent_volume_claim"),
    Kind.PV: (k8s.CoreV1Api, "persistent_volume"),
    Kind.NODE: (k8s.CoreV1Api, "node"),
    Kind.SECRET: (k8s.CoreV1Api, "secret"),
    Kind.EVENT: (k8s.CoreV1Api, "event"),
    Kind.POD: (k8s.CoreV1Api, "pod"),
    Kind.STORAGE_CLASS: (k8s.StorageV1Api, "storage_class"),
    Kind.CSINODE: (k8s.StorageV1Api, "csi_node"),
    Kind.VOLUME_ATTACHMENT: (k8s.StorageV1Api, "volume_attachment"),
    Kind.LEASE: (k8s.CoordinationV1Api, "lease"),
}
MERGE_PATCH = "application/merge-patch+json"


class RequestLimit:
    """Client-side rate limit: ``qps`` requests per second, ``burst`` at once, callers in arrival order
    (zonal's one :class:`~provisioner.tokenbucket.TokenBucket`); ``qps`` of 0 or less: no limit."""

    def __init__(self, qps: float, burst: int, clock: Clock | None = None) -> None:
        self.qps = qps
        self._clock: Clock = clock or SystemClock()
        self._bucket = TokenBucket(max(1, burst), max(0.0, qps), self._clock.monotonic())
        self._lock = threading.Lock()

    def take(self) -> None:
        if self.qps <= 0:
            return
        with self._lock:
            ticket = self._bucket.reserve(self._clock.monotonic())
            wait = self._bucket.due_in(ticket)
        self._clock.sleep(wait)


def load_configuration(kubeconfig: str = "", context: str = "") -> Any:
    """The client configuration (see :func:`provisioner.kube.kubeconfig.load_configuration`): the
    kubeconfig when given, else in-cluster, else ~/.kube/config. Raises KubeConfigError (a KubeError)
    naming the file and what is wrong with it."""
    return kubeconfig_loader.load_configuration(kubeconfig, context)


class KubeClient:
    """Implements :class:`provisioner.ports.kube.KubeApi`."""

    def __init__(self, configuration: Any, qps: float = 5.0, burst: int = 10) -> None:
        self.api_client: Any = k8s.ApiClient(configuration)
        self.limit = RequestLimit(qps, burst)
        self._apis: dict[type[Any], Any] = {}

    def close(self) -> None:
        self.api_client.close()

    @property
    def server(self) -> str:
        """The API server's URL, as the configuration names it."""
        return str(self.api_client.configuration.host)

    def check_access(self, timeout: float = 10.0) -> None:
        """One cheap authenticated read (a StorageClass list of at most one item), so a start-up with an
        unreachable server or refused credentials fails at once instead of in the informers.
        Raises KubeUnavailable (its message: why, in a few words) or KubeForbidden."""
        self.limit.take()
        try:
            k8s.StorageV1Api(self.api_client).list_storage_class(limit=1, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeUnavailable(network_reason(e)) from e
        except ApiException as e:
            raise translate(e, "list storageclasses") from e

    def _method(self, kind: Kind, verb: str, all_namespaces: bool = False) -> Any:
        cls, singular = _TYPED[kind]
        api = self._apis.setdefault(cls, cls(self.api_client))
        if kind.namespaced:
            name = (
                f"list_{singular}_for_all_namespaces" if all_namespaces else f"{verb}_namespaced_{singular}"
            )
        else:
            name = f"{verb}_{singular}"
        return getattr(api, name)

    def _dict(self, model: Any) -> Obj:
        data = self.api_client.sanitize_for_serialization(model)
        assert isinstance(data, dict)
        return data

    def _custom(self) -> Any:
        return self._apis.setdefault(k8s.CustomObjectsApi, k8s.CustomObjectsApi(self.api_client))

    # --- KubeApi ----------------------------------------------------------------------------------------

    def list(self, kind: Kind, namespace: str = "") -> ObjectList:
        self.limit.take()
        with translated(f"list {kind.plural}"):
            if kind not in _TYPED:
                custom = self._custom()
                raw = (
                    custom.list_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural)
                    if namespace and kind.namespaced
                    else custom.list_cluster_custom_object(kind.group, kind.version, kind.plural)
                )
                return ObjectList(
                    tuple(raw.get("items") or ()), str(raw.get("metadata", {}).get("resourceVersion", ""))
                )
            # The raw JSON, not the client's model objects: a list of 10k PVs as models costs several
            # times the memory and CPU of the dicts the loop keeps anyway.
            if kind.namespaced and namespace:
                response = self._method(kind, "list")(namespace, _preload_content=False)
            else:
                response = self._method(kind, "list", all_namespaces=kind.namespaced)(_preload_content=False)
            data = json.loads(response.data)
        items = tuple(_with_kind(kind, o) for o in data.get("items") or ())
        return ObjectList(items, str(data.get("metadata", {}).get("resourceVersion", "")))

    def watch(self, kind: Kind, resource_version: str, timeout_seconds: float) -> Iterator[WatchEvent]:
        self.limit.take()
        func = self._method(kind, "list", all_namespaces=kind.namespaced)
        w = k8s_watch.Watch()
        stream = w.stream(
            func,
            resource_version=resource_version,
            timeout_seconds=max(1, int(timeout_seconds)),
            allow_watch_bookmarks=True,
        )
        try:
            while True:
                try:
                    event = next(stream)
                except StopIteration:
                    return
                except Exception as e:
                    raise translate(e, f"watch {kind.plural}") from e
                obj = event.get("raw_object") or {}
                if event.get("type") == "ERROR":
                    code = int(obj.get("code") or 0)
                    if code == 410:
                        raise ResourceGone(str(obj.get("message") or "watch expired"))
                    raise KubeError(f"watch {kind.plural}: {obj.get('message', obj)}")
                yield WatchEvent(str(event["type"]), _with_kind(kind, obj))
        finally:
            w.stop()

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj:
        self.limit.take()
        with translated(f"get {kind.plural}/{name}"):
            if kind not in _TYPED:
                custom = self._custom()
                if kind.namespaced:
                    raw = custom.get_namespaced_custom_object(
                        kind.group, kind.version, namespace, kind.plural, name
                    )
                else:
                    raw = custom.get_cluster_custom_object(kind.group, kind.version, kind.plural, name)
                return dict(raw)
            args = (name, namespace) if kind.namespaced else (name,)
            return _with_kind(kind, self._dict(self._method(kind, "read")(*args)))

    def create(self, kind: Kind, obj: Obj) -> Obj:
        self.limit.take()
        body = {"apiVersion": kind.api_version, "kind": kind.kind_name, **obj}
        with translated("create"):
            if kind.namespaced:
                ns = obj.get("metadata", {}).get("namespace") or "default"
                result = self._method(kind, "create")(ns, body)
            else:
                result = self._method(kind, "create")(body)
            return _with_kind(kind, self._dict(result))

    def replace(self, kind: Kind, obj: Obj) -> Obj:
        self.limit.take()
        meta = obj["metadata"]
        body = {"apiVersion": kind.api_version, "kind": kind.kind_name, **obj}
        with translated(f"replace {kind.plural}/{meta['name']}"):
            args = (meta["name"], meta.get("namespace") or "default") if kind.namespaced else (meta["name"],)
            return _with_kind(kind, self._dict(self._method(kind, "replace")(*args, body)))

    def patch(self, kind: Kind, name: str, namespace: str, patch: Obj) -> Obj:
        self.limit.take()
        with translated(f"patch {kind.plural}/{name}"):
            args = (name, namespace) if kind.namespaced else (name,)
            result = self._method(kind, "patch")(*args, patch, _content_type=MERGE_PATCH)
            return _with_kind(kind, self._dict(result))

    def delete(self, kind: Kind, name: str, namespace: str = "", uid: str = "") -> None:
        self.limit.take()
        with translated(f"delete {kind.plural}/{name}"):
            args = (name, namespace) if kind.namespaced else (name,)
            if uid:
                body = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=uid))
                self._method(kind, "delete")(*args, body=body)
            else:
                self._method(kind, "delete")(*args)


def _with_kind(kind: Kind, obj: Obj) -> Obj:
    obj.setdefault("apiVersion", kind.api_version)
    obj.setdefault("kind", kind.kind_name)
    return obj
