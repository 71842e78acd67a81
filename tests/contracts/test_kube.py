"""The KubeApi port's contract: the same scenarios over MemoryKube and the official client against the
HTTP fake.

The loop's, doctor's and relocate's tests run against ``MemoryKube``; production runs
:class:`~provisioner.kube.client.KubeClient` (the official ``kubernetes`` client) against an API server.
Each scenario here runs over ``MemoryKube`` directly and over ``KubeClient`` talking HTTP to the fake API
server in front of another ``MemoryKube``, and asserts only what :class:`~provisioner.ports.kube.KubeApi`
promises: optimistic concurrency on resourceVersion, 409s, 404s, finalizers holding a deletion, delete
preconditions, merge patches, and watches that end in 410 Gone and recover by a fresh list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from provisioner.embedded.kube.memory import MemoryKube, claim, node
from provisioner.ports.kube import (
    Kind,
    KubeAlreadyExists,
    KubeApi,
    KubeConflict,
    KubeNotFound,
    ResourceGone,
    WatchEvent,
)
from tests.fakes.kube_http import official_client

DRIVER = "zonal.csi.dev"
FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"


@dataclass
class Cluster:
    api: KubeApi
    backend: MemoryKube  # the state behind the API, for what only a cluster does (compacting history)


@pytest.fixture(params=["memory", "official-client"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    backend = MemoryKube()
    if request.param == "memory":
        yield Cluster(backend, backend)
        return
    with official_client(backend) as client:
        yield Cluster(client, backend)


def pv(name: str, finalizers: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": name, **({"finalizers": list(finalizers)} if finalizers else {})},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "csi": {"driver": DRIVER, "volumeHandle": f"vol-{name}"},
        },
    }


def drain(api: KubeApi, kind: Kind, since: str, want: int) -> list[WatchEvent]:
    """Events after ``since`` until ``want`` arrived or a short watch window closed."""
    events: list[WatchEvent] = []
    for event in api.watch(kind, since, 1.0):
        if event.type != "BOOKMARK":
            events.append(event)
        if len(events) >= want:
            break
    return events


# --- create, get, list ----------------------------------------------------------------------------


def test_create_fills_in_the_servers_fields_and_a_second_create_conflicts(cluster: Cluster) -> None:
    api = cluster.api
    created = api.create(Kind.CLAIM, claim("data", "gp3", DRIVER, namespace="apps"))
    meta = created["metadata"]
    assert meta["namespace"] == "apps" and meta["uid"] and meta["resourceVersion"]
    assert meta["creationTimestamp"]
    assert (created["apiVersion"], created["kind"]) == ("v1", "PersistentVolumeClaim")
    with pytest.raises(KubeAlreadyExists):
        api.create(Kind.CLAIM, claim("data", "gp3", DRIVER, namespace="apps"))
    assert api.get(Kind.CLAIM, "data", "apps")["metadata"]["uid"] == meta["uid"]
    with pytest.raises(KubeNotFound):
        api.get(Kind.CLAIM, "data", "other")


def test_list_answers_a_namespace_or_all_and_the_collections_resource_version(cluster: Cluster) -> None:
    api = cluster.api
    api.create(Kind.CLAIM, claim("a", "gp3", DRIVER, namespace="one"))
    last = api.create(Kind.CLAIM, claim("b", "gp3", DRIVER, namespace="two"))
    everything = api.list(Kind.CLAIM)
    assert sorted(o["metadata"]["name"] for o in everything.items) == ["a", "b"]
    assert int(everything.resource_version) >= int(last["metadata"]["resourceVersion"])
    assert [o["metadata"]["name"] for o in api.list(Kind.CLAIM, "two").items] == ["b"]
    assert api.list(Kind.PV).items == ()


# --- updates --------------------------------------------------------------------------------------


def test_replace_with_a_stale_resource_version_conflicts(cluster: Cluster) -> None:
    api = cluster.api
    first = api.create(Kind.NODE, node("n1", "us-east-1a"))
    first["metadata"]["labels"]["role"] = "a"
    second = api.replace(Kind.NODE, first)
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    first["metadata"]["labels"]["role"] = "b"  # still carries the old resourceVersion
    with pytest.raises(KubeConflict):
        api.replace(Kind.NODE, first)
    assert api.get(Kind.NODE, "n1")["metadata"]["labels"]["role"] == "a"
    gone = node("missing", "us-east-1a")
    gone["metadata"]["resourceVersion"] = "1"
    with pytest.raises(KubeNotFound):
        api.replace(Kind.NODE, gone)


def test_a_merge_patch_sets_and_removes_keys(cluster: Cluster) -> None:
    api = cluster.api
    api.create(Kind.CLAIM, claim("data", "gp3", DRIVER, node_name="n1"))
    patched = api.patch(
        Kind.CLAIM,
        "data",
        "default",
        {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": None, "zonal.dev/x": "1"}}},
    )
    annotations = patched["metadata"]["annotations"]
    assert "volume.kubernetes.io/selected-node" not in annotations and annotations["zonal.dev/x"] == "1"
    assert annotations["volume.kubernetes.io/storage-provisioner"] == DRIVER  # untouched keys stay
    with pytest.raises(KubeNotFound):
        api.patch(Kind.CLAIM, "missing", "default", {"metadata": {"labels": {"a": "b"}}})


# --- deletes --------------------------------------------------------------------------------------


def test_a_finalizer_holds_the_delete_until_it_is_removed(cluster: Cluster) -> None:
    api = cluster.api
    api.create(Kind.PV, pv("pv-1", (FINALIZER,)))
    api.delete(Kind.PV, "pv-1")
    held = api.get(Kind.PV, "pv-1")
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == [FINALIZER]
    api.delete(Kind.PV, "pv-1")  # deleting again changes nothing
    assert api.get(Kind.PV, "pv-1")["metadata"]["deletionTimestamp"] == held["metadata"]["deletionTimestamp"]
    api.patch(Kind.PV, "pv-1", "", {"metadata": {"finalizers": None}})
    with pytest.raises(KubeNotFound):
        api.get(Kind.PV, "pv-1")
    with pytest.raises(KubeNotFound):
        api.delete(Kind.PV, "pv-1")


def test_a_delete_guarded_by_a_uid_deletes_only_that_object(cluster: Cluster) -> None:
    api = cluster.api
    old = api.create(Kind.PV, pv("pv-2"))
    api.delete(Kind.PV, "pv-2", uid=old["metadata"]["uid"])
    new = api.create(Kind.PV, pv("pv-2"))
    with pytest.raises(KubeConflict):  # the API server answers a failed precondition with 409
        api.delete(Kind.PV, "pv-2", uid=old["metadata"]["uid"])
    assert api.get(Kind.PV, "pv-2")["metadata"]["uid"] == new["metadata"]["uid"]


# --- watch ----------------------------------------------------------------------------------------


def test_a_watch_from_a_list_sees_every_change_in_order(cluster: Cluster) -> None:
    api = cluster.api
    listing = api.list(Kind.PV)
    api.create(Kind.PV, pv("pv-w", (FINALIZER,)))
    api.patch(Kind.PV, "pv-w", "", {"metadata": {"labels": {"a": "1"}}})
    api.delete(Kind.PV, "pv-w")  # held by the finalizer: a MODIFIED with deletionTimestamp
    api.patch(Kind.PV, "pv-w", "", {"metadata": {"finalizers": None}})
    events = drain(api, Kind.PV, listing.resource_version, 4)
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    assert all(e.object["metadata"]["name"] == "pv-w" for e in events)
    assert events[2].object["metadata"]["deletionTimestamp"]
    versions = [int(e.object["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(listing.resource_version)


def test_a_watch_from_an_expired_version_is_gone_and_a_fresh_list_recovers(cluster: Cluster) -> None:
    api = cluster.api
    stale = api.list(Kind.PV).resource_version
    api.create(Kind.PV, pv("pv-a"))
    cluster.backend.compact()  # the server forgot the history the stale version points into
    with pytest.raises(ResourceGone):
        drain(api, Kind.PV, stale, 1)
    fresh = api.list(Kind.PV)
    assert [o["metadata"]["name"] for o in fresh.items] == ["pv-a"]
    api.create(Kind.PV, pv("pv-b"))
    events = drain(api, Kind.PV, fresh.resource_version, 1)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "pv-b")]
