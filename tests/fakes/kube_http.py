"""The HTTP fake API server (:mod:`provisioner.embedded.kube.fakeapi`) and the official client before it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from provisioner.embedded.kube.fakeapi import FakeApiServer
from provisioner.embedded.kube.memory import MemoryKube
from provisioner.kube.client import KubeClient, k8s

__all__ = ["FakeApiServer", "official_client"]


@contextmanager
def official_client(kube: MemoryKube) -> Iterator[KubeClient]:
    """:class:`KubeClient` (the official ``kubernetes`` client, unthrottled) talking HTTP to a fake API
    server whose state is ``kube``; both are closed afterwards."""
    server = FakeApiServer(kube).start()
    cfg: Any = k8s.Configuration()
    cfg.host = server.url
    client = KubeClient(cfg, qps=0)
    try:
        yield client
    finally:
        client.close()
        server.stop()
