"""explain_pod against the in-memory cluster: the stuck-pod scenarios and their usual causes."""

from __future__ import annotations

import pytest

from provisioner.errors import NotFound
from provisioner.explain import explain_pod
from provisioner.explain.report import CONFLICT, IN_TREE_LABELS_ONLY, OK, PENDING, UNKNOWN_KEY
from provisioner.model import EBS_ZONE_KEY
from provisioner.ports.kube import Kind
from tests.explain.scenarios import (
    DRIVER,
    add_claim,
    bound_claim_with_pv,
    cloud_with,
    cluster,
    csi_pv,
    in_tree_pv,
    pod,
    provision,
)
from tests.fakes.kube import FakeKube, claim, storage_class


def test_immediate_binding_landed_in_a_zone_without_nodes() -> None:
    kube = cluster()
    bound_claim_with_pv(
        kube, "data-web-0", csi_pv("pv-1", "data-web-0", ("us-east-1d",)), binding="Immediate"
    )
    kube.create(Kind.POD, pod("web-0", {"data": "data-web-0"}))
    report = explain_pod(kube, "default", "web-0")
    assert report.volume_affinity_conflict
    assert report.verdict.code == CONFLICT
    assert "Immediate binding" in report.verdict.reason and "us-east-1d" in report.verdict.reason
    assert "WaitForFirstConsumer" in report.verdict.action
    assert report.candidate_nodes == []
    (vol,) = report.volumes
    assert vol.pv is not None and vol.pv.pv == "pv-1" and vol.pv.zones == ["us-east-1d"]
    assert [n.zone for n in report.nodes] == ["us-east-1a", "us-east-1b", "us-east-1c"]


def test_in_tree_pv_with_zone_labels_only() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", in_tree_pv("pv-old", "data-0", "us-east-1b"))
    kube.create(Kind.POD, pod("app", {"data": "data-0"}))
    report = explain_pod(kube, "default", "app")
    assert report.verdict.code == IN_TREE_LABELS_ONLY
    assert "zonal translate pv" in report.verdict.action
    assert EBS_ZONE_KEY in report.verdict.reason
    assert report.candidate_nodes == ["node-1"]
    assert report.volumes[0].pv is not None and report.volumes[0].pv.pinned_by == "zone-labels"


def test_unknown_key_on_an_unbound_immediate_claim() -> None:
    kube = cluster()
    sc = storage_class("legacy", DRIVER, binding="Immediate")
    sc["allowedTopologies"] = [{"matchLabelExpressions": [{"key": EBS_ZONE_KEY, "values": ["us-east-1a"]}]}]
    kube.create(Kind.STORAGE_CLASS, sc)
    kube.create(Kind.CLAIM, claim("data-0", "legacy", DRIVER))
    kube.create(
        Kind.POD, pod("app", {"data": "data-0"}, message="pod has unbound immediate PersistentVolumeClaims")
    )
    report = explain_pod(kube, "default", "app")
    assert not report.volume_affinity_conflict
    assert report.verdict.code == UNKNOWN_KEY
    assert "topology.kubernetes.io/zone" in report.verdict.action


def test_volumes_pinned_to_different_zones() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "a", csi_pv("pv-a", "a", ("us-east-1a",), handle="vol-0000000000000000a"))
    bound_claim_with_pv(kube, "b", csi_pv("pv-b", "b", ("us-east-1b",), handle="vol-0000000000000000b"))
    kube.create(Kind.POD, pod("app", {"one": "a", "two": "b"}))
    report = explain_pod(kube, "default", "app")
    assert report.verdict.code == CONFLICT
    assert "different zones" in report.verdict.reason
    assert [v.satisfying_nodes for v in report.volumes] == [["node-0"], ["node-1"]]
    assert report.candidate_nodes == []


def test_ebs_zone_disagreeing_with_the_affinity_is_a_cause() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1a",)))
    kube.create(Kind.POD, pod("app", {"data": "data-0"}))
    report = explain_pod(kube, "default", "app", cloud=cloud_with("vol-0123456789abcdef0", "us-east-1c"))
    assert report.verdict.code == CONFLICT and "us-east-1c" in report.verdict.reason


def test_running_pod_is_ok_and_lists_candidates() -> None:
    kube = cluster()
    add_claim(kube, "data-0", node_name="node-2")
    provision(kube, "data-0")
    kube.create(Kind.POD, pod("app", {"data": "data-0"}, node_name="node-2"))
    report = explain_pod(kube, "default", "app")
    assert report.verdict.code == OK
    assert report.candidate_nodes == ["node-2"]


def test_pending_pod_whose_volumes_fit_is_not_blamed_on_zones() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1a",)))
    kube.create(
        Kind.POD, pod("app", {"data": "data-0"}, message="0/3 nodes are available: 3 Insufficient cpu")
    )
    report = explain_pod(kube, "default", "app")
    assert report.verdict.code == OK and "not its volumes" in report.verdict.action


def test_cordoned_node_and_waiting_claim() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1a",)))
    kube.patch(Kind.NODE, "node-0", "", {"spec": {"unschedulable": True}})
    kube.create(Kind.POD, pod("app", {"data": "data-0"}))
    report = explain_pod(kube, "default", "app")
    assert report.verdict.code == CONFLICT
    assert [n.schedulable for n in report.nodes] == [False, True, True]
    kube.create(Kind.CLAIM, claim("later", "gp3", DRIVER))
    kube.create(Kind.POD, pod("wffc", {"data": "later"}))
    assert explain_pod(kube, "default", "wffc").verdict.code == OK


def test_unbound_immediate_claim_is_pending() -> None:
    kube = cluster()
    add_claim(kube, "data-0", binding="Immediate")
    kube.create(Kind.POD, pod("app", {"data": "data-0"}))
    assert explain_pod(kube, "default", "app").verdict.code == PENDING


def test_missing_pod_raises_not_found() -> None:
    with pytest.raises(NotFound, match="default/nope"):
        explain_pod(cluster(), "default", "nope")


def _taint(kube: FakeKube, node: str, key: str, value: str = "", effect: str = "NoSchedule") -> None:
    kube.patch(Kind.NODE, node, "", {"spec": {"taints": [{"key": key, "value": value, "effect": effect}]}})


def test_every_node_of_the_volumes_zone_tainted_against_the_pod_is_the_cause() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1a",)))
    _taint(kube, "node-0", "dedicated", "db")
    _taint(kube, "node-1", "spot", effect="PreferNoSchedule")  # soft: never filters
    kube.create(Kind.POD, pod("app", {"data": "data-0"}))
    report = explain_pod(kube, "default", "app")
    assert report.verdict.code == CONFLICT
    assert "node-0 (dedicated=db:NoSchedule)" in report.verdict.reason
    assert "toleration" in report.verdict.action
    assert report.candidate_nodes == []
    assert any("keep it off node-0 (dedicated=db:NoSchedule)" in n for n in report.notes)


@pytest.mark.parametrize(
    "toleration",
    [
        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "db"},  # Equal is the default operator; no effect: every effect
        {"key": "dedicated", "operator": "Exists"},
        {"operator": "Exists"},  # tolerates everything
    ],
)
def test_a_matching_toleration_lets_the_pod_onto_the_tainted_node(toleration: dict[str, str]) -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1a",)))
    _taint(kube, "node-0", "dedicated", "db")
    app = pod("app", {"data": "data-0"}, message="0/3 nodes are available: 3 Insufficient cpu")
    app["spec"]["tolerations"] = [toleration]
    kube.create(Kind.POD, app)
    report = explain_pod(kube, "default", "app")
    assert report.verdict.code == OK and report.candidate_nodes == ["node-0"]


@pytest.mark.parametrize(
    "toleration",
    [
        {"key": "dedicated", "value": "web"},  # another value
        {"key": "dedicated", "value": "db", "effect": "NoExecute"},  # another effect
        {"key": "other", "operator": "Exists"},  # another key
    ],
)
def test_a_toleration_that_does_not_match_leaves_the_node_out(toleration: dict[str, str]) -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1a",)))
    _taint(kube, "node-0", "dedicated", "db")
    app = pod("app", {"data": "data-0"})
    app["spec"]["tolerations"] = [toleration]
    kube.create(Kind.POD, app)
    assert explain_pod(kube, "default", "app").verdict.code == CONFLICT


def test_a_pod_already_on_a_node_tainted_later_is_ok() -> None:
    kube = cluster()
    add_claim(kube, "data-0", node_name="node-2")
    provision(kube, "data-0")
    _taint(kube, "node-2", "maintenance", effect="NoSchedule")
    kube.create(Kind.POD, pod("app", {"data": "data-0"}, node_name="node-2"))
    report = explain_pod(kube, "default", "app")
    assert report.verdict.code == OK and report.candidate_nodes == ["node-2"]
