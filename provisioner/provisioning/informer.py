"""Informers: list, then watch from the list's resourceVersion, re-list on 410 Gone; a local cache.

Why it exists: the loop reads claims, classes, nodes and CSINodes from memory instead of asking the API
server each time, and reacts to changes as they stream in. It works over the KubeApi port, so the same
code runs against the official client and the in-memory fake. It must not block the caller: each
informer runs in its own daemon thread until its stop event is set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from provisioner.ports.kube import Kind, KubeApi, KubeError, Obj, ResourceGone

log = logging.getLogger(__name__)

Handler = Callable[[str, Obj | None, Obj | None], None]
"""(event type, old object, new object): ADDED (old None), MODIFIED, DELETED (new None)."""


def object_key(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


class Informer:
    def __init__(
        self,
        api: KubeApi,
        kind: Kind,
        handler: Handler | None = None,
        *,
        watch_timeout: float = 300.0,
        error_backoff: float = 1.0,
    ) -> None:
        self.api = api
        self.kind = kind
        self.handler = handler
        self.watch_timeout = watch_timeout
        self.error_backoff = error_backoff
        self.synced = threading.Event()
        self.relists = 0
        self._store: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- the cache --------------------------------------------------------------------------------------

    def get(self, name: str, namespace: str = "") -> Obj | None:
        key = f"{namespace}/{name}" if namespace and self.kind.namespaced else name
        with self._lock:
            return self._store.get(key)

    def list(self) -> list[Obj]:
        with self._lock:
            return list(self._store.values())

    # --- the loop -----------------------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> threading.Thread:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name=f"informer-{self.kind.plural}", daemon=True
        )
        self._thread.start()
        return self._thread

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                version = self._relist()
                self.synced.set()
                while not stop.is_set():
                    version = self._watch(version, stop)
            except ResourceGone:
                log.info("%s: watch expired (410 Gone); listing again", self.kind.plural)
            except KubeError as e:
                log.warning("%s: %s; listing again in %.1fs", self.kind.plural, e, self.error_backoff)
                stop.wait(self.error_backoff)

    def _relist(self) -> str:
        listing = self.api.list(self.kind)
        self.relists += 1
        fresh = {object_key(o): o for o in listing.items}
        with self._lock:
            old = self._store
            self._store = dict(fresh)
        for key, obj in old.items():
            if key not in fresh:
                self._emit("DELETED", obj, None)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._emit("ADDED", None, obj)
            elif _version(before) != _version(obj):
                self._emit("MODIFIED", before, obj)
        return listing.resource_version

    def _watch(self, version: str, stop: threading.Event) -> str:
        for event in self.api.watch(self.kind, version, self.watch_timeout):
            obj = event.object
            version = _version(obj) or version
            if event.type == "BOOKMARK":
                continue
            key = object_key(obj)
            with self._lock:
                before = self._store.get(key)
                if event.type == "DELETED":
                    self._store.pop(key, None)
                else:
                    self._store[key] = obj
            if event.type == "DELETED":
                self._emit("DELETED", before or obj, None)
            else:
                self._emit("MODIFIED" if before is not None else "ADDED", before, obj)
            if stop.is_set():
                break
        return version

    def _emit(self, type_: str, old: Obj | None, new: Obj | None) -> None:
        if self.handler is None:
            return
        try:
            self.handler(type_, old, new)
        except Exception:
            log.exception("%s: event handler failed", self.kind.plural)


def _version(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


class Stores:
    """The informers' caches behind the core's Lister protocol."""

    def __init__(self, informers: dict[Kind, Informer]) -> None:
        self.informers = informers

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj | None:
        return self.informers[kind].get(name, namespace)

    def list(self, kind: Kind) -> list[Obj]:
        return self.informers[kind].list()

    def wait_synced(self, timeout: float) -> bool:
        return all(i.synced.wait(timeout) for i in self.informers.values())
