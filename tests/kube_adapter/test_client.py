"""The KubeApi adapter through the official client against an HTTP fake API server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from provisioner.kube.client import KubeClient, RequestLimit, k8s
from provisioner.ports.kube import (
    Kind,
    KubeAlreadyExists,
    KubeConflict,
    KubeNotFound,
    ResourceGone,
    WatchEvent,
)
from provisioner.provisioning.informer import Informer
from tests.fakes.kube import FakeKube, claim, csinode, node, storage_class
from tests.fakes.kube_http import FakeApiServer

DRIVER = "zonal.csi.dev"


@pytest.fixture
def cluster() -> Iterator[tuple[FakeKube, KubeClient]]:
    kube = FakeKube()
    server = FakeApiServer(kube).start()
    cfg: Any = k8s.Configuration()
    cfg.host = server.url
    client = KubeClient(cfg, qps=0)
    try:
        yield kube, client
    finally:
        client.close()
        server.stop()


def test_create_get_list_round_trip_through_the_models(cluster: tuple[FakeKube, KubeClient]) -> None:
    kube, api = cluster
    api.create(Kind.NODE, node("n1", "us-east-1a"))
    api.create(Kind.CSINODE, csinode("n1", DRIVER))
    api.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER, allowed_zones=("us-east-1a",), type="gp3"))
    created = api.create(Kind.CLAIM, claim("data-0", "fast", DRIVER, node_name="n1", namespace="apps"))
    assert created["metadata"]["namespace"] == "apps" and created["metadata"]["uid"]
    got = api.get(Kind.CLAIM, "data-0", "apps")
    assert got["spec"]["resources"] == {"requests": {"storage": "4Gi"}}
    assert got["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "n1"
    sc = api.get(Kind.STORAGE_CLASS, "fast")
    assert sc["allowedTopologies"][0]["matchLabelExpressions"][0]["values"] == ["us-east-1a"]
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    cn = api.list(Kind.CSINODE)
    assert cn.items[0]["spec"]["drivers"][0]["topologyKeys"] == ["topology.kubernetes.io/zone"]
    listing = api.list(Kind.CLAIM)
    assert [o["metadata"]["name"] for o in listing.items] == ["data-0"]
    assert listing.resource_version == kube.resource_version


def test_pv_with_node_affinity_and_finalizer(cluster: tuple[FakeKube, KubeClient]) -> None:
    kube, api = cluster
    pv: dict[str, Any] = {
        "metadata": {"name": "pvc-1", "finalizers": ["external-provisioner.volume.kubernetes.io/finalizer"]},
        "spec": {
            "capacity": {"storage": "4Gi"},
            "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": DRIVER, "volumeHandle": "vol-1", "fsType": "ext4"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b"]}
                            ]
                        }
                    ]
                }
            },
        },
    }
    api.create(Kind.PV, pv)
    stored = kube.find(Kind.PV, "pvc-1")
    assert stored is not None
    assert stored["spec"]["nodeAffinity"] == pv["spec"]["nodeAffinity"]
    assert stored["spec"]["csi"]["volumeHandle"] == "vol-1"
    api.delete(Kind.PV, "pvc-1")  # the finalizer holds it
    current = api.get(Kind.PV, "pvc-1")
    assert current["metadata"]["deletionTimestamp"]
    current["metadata"]["finalizers"] = []
    api.replace(Kind.PV, current)
    with pytest.raises(KubeNotFound):
        api.get(Kind.PV, "pvc-1")


def test_errors_become_the_ports_error_tree(cluster: tuple[FakeKube, KubeClient]) -> None:
    _, api = cluster
    with pytest.raises(KubeNotFound):
        api.get(Kind.NODE, "missing")
    api.create(Kind.NODE, node("n1", "a"))
    with pytest.raises(KubeAlreadyExists):
        api.create(Kind.NODE, node("n1", "a"))
    stale = api.get(Kind.NODE, "n1")
    api.patch(Kind.NODE, "n1", "", {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(KubeConflict):
        api.replace(Kind.NODE, stale)


def test_merge_patch_removes_the_selected_node(cluster: tuple[FakeKube, KubeClient]) -> None:
    _, api = cluster
    api.create(Kind.CLAIM, claim("c", "fast", DRIVER, node_name="n1"))
    patched = api.patch(
        Kind.CLAIM,
        "c",
        "default",
        {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": None}}},
    )
    assert "volume.kubernetes.io/selected-node" not in patched["metadata"]["annotations"]


def test_events_and_leases(cluster: tuple[FakeKube, KubeClient]) -> None:
    kube, api = cluster
    api.create(
        Kind.EVENT,
        {
            "metadata": {"name": "c.1", "namespace": "default"},
            "involvedObject": {"kind": "PersistentVolumeClaim", "name": "c", "namespace": "default"},
            "reason": "Provisioning",
            "message": "hello",
            "type": "Normal",
            "count": 1,
            "firstTimestamp": "2024-01-01T00:00:00Z",
        },
    )
    assert kube.objects(Kind.EVENT)[0]["reason"] == "Provisioning"
    lease = api.create(
        Kind.LEASE,
        {
            "metadata": {"name": "zonal", "namespace": "default"},
            "spec": {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "renewTime": "2024-01-01T00:00:00.000000Z",
            },
        },
    )
    assert lease["spec"]["holderIdentity"] == "a"


def test_watch_streams_events_and_reports_410(cluster: tuple[FakeKube, KubeClient]) -> None:
    kube, api = cluster
    start = api.list(Kind.NODE).resource_version
    api.create(Kind.NODE, node("n1", "a"))
    api.patch(Kind.NODE, "n1", "", {"metadata": {"labels": {"x": "1"}}})
    api.delete(Kind.NODE, "n1")
    events: list[WatchEvent] = list(api.watch(Kind.NODE, start, timeout_seconds=1))
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "n1"),
        ("MODIFIED", "n1"),
        ("DELETED", "n1"),
    ]
    assert events[1].object["metadata"]["labels"]["x"] == "1"
    kube.compact()
    with pytest.raises(ResourceGone):
        list(api.watch(Kind.NODE, start, timeout_seconds=1))


def test_informer_relists_after_410_through_the_client(cluster: tuple[FakeKube, KubeClient]) -> None:
    kube, api = cluster
    seen: list[tuple[str, str]] = []
    informer = Informer(
        api, Kind.NODE, lambda t, o, n: seen.append((t, (n or o or {})["metadata"]["name"])), watch_timeout=1
    )
    stop = threading.Event()
    informer.start(stop)
    try:
        assert informer.synced.wait(5)
        kube.create(Kind.NODE, node("n1", "a"))
        _wait(lambda: informer.get("n1") is not None)
        kube.compact()  # the running watch ends with 410; the informer lists again
        kube.create(Kind.NODE, node("n2", "b"))
        _wait(lambda: informer.get("n2") is not None)
        assert informer.relists >= 2
        assert ("ADDED", "n1") in seen and ("ADDED", "n2") in seen
    finally:
        stop.set()


def test_the_request_limit_allows_a_burst_then_paces() -> None:
    from tests.fakes.clock import FakeClock

    clock = FakeClock()
    limit = RequestLimit(qps=50, burst=3, clock=clock)
    for _ in range(6):
        limit.take()
    assert clock.sleeps == pytest.approx([0.0, 0.0, 0.0, 0.02, 0.02, 0.02], abs=1e-6)  # 3 at once, then 50/s


def _wait(predicate: Any, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_the_loop_provisions_through_the_real_client(cluster: tuple[FakeKube, KubeClient]) -> None:
    from provisioner.ports.clock import SystemClock
    from provisioner.provisioning.loop import ProvisionerLoop, discover_driver
    from provisioner.provisioning.settings import ProvisionerConfig
    from tests.fakes.csi_client import FakeCsiClient

    kube, api = cluster
    for i, zone in enumerate(("us-east-1a", "us-east-1b", "us-east-1c")):
        kube.create(Kind.NODE, node(f"n{i}", zone))
        kube.create(Kind.CSINODE, csinode(f"n{i}", DRIVER))
    kube.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER))
    c = kube.create(Kind.CLAIM, claim("data-0", "fast", DRIVER, node_name="n1"))
    csi = FakeCsiClient(name=DRIVER)
    config = ProvisionerConfig(
        worker_threads=2, retry_interval_start=0.01, retry_interval_max=0.05, watch_timeout=1
    )
    loop = ProvisionerLoop(api, csi, config, discover_driver(csi, SystemClock(), threading.Event()))
    loop.start(sync_timeout=5)
    try:
        _wait(lambda: any(e["reason"] == "ProvisioningSucceeded" for e in kube.objects(Kind.EVENT)))
    finally:
        loop.stop()
    pv = kube.find(Kind.PV, f"pvc-{c['metadata']['uid']}")
    assert pv is not None
    expr = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert expr == {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"]}
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == DRIVER
