"""explain_pvc against the in-memory cluster: one scenario per verdict, and agreement with the loop."""

from __future__ import annotations

import pytest

from provisioner.errors import NotFound
from provisioner.explain import explain_pvc
from provisioner.explain.report import (
    CONFLICT,
    IN_TREE_LABELS_ONLY,
    LOST,
    NO_AFFINITY,
    NO_AWS,
    NO_CLASS,
    OK,
    PENDING,
    UNKNOWN_KEY,
    VERDICTS,
    WAITING_FOR_CONSUMER,
)
from provisioner.model import EBS_ZONE_KEY, ZONE_KEY
from provisioner.ports.kube import Kind
from tests.explain.scenarios import (
    DRIVER,
    add_claim,
    bound_claim_with_pv,
    cloud_with,
    cluster,
    csi_pv,
    in_tree_pv,
    provision,
)
from tests.fakes.kube import FakeKube, claim, storage_class


def test_ok_when_volume_affinity_and_selected_node_share_a_zone() -> None:
    kube = cluster()
    add_claim(kube, "data-0", node_name="node-1")
    pv, csi = provision(kube, "data-0")
    volume_id = pv["spec"]["csi"]["volumeHandle"]
    report = explain_pvc(kube, "default", "data-0", cloud=cloud_with(volume_id, "us-east-1b"))
    assert report.verdict.code == OK
    assert "us-east-1b" in report.verdict.reason and "node-1" in report.verdict.reason
    assert report.volume is not None
    assert report.volume.ebs_zone == "us-east-1b"
    assert report.volume.pinned_by == "nodeAffinity" and report.volume.zones == ["us-east-1b"]
    assert report.volume.nodes_in_zone == ["node-1"]
    assert report.selected_node is not None and report.selected_node.zone == "us-east-1b"
    assert report.selected_node.csinode_keys == [ZONE_KEY]
    assert report.storage_class is not None and report.storage_class.binding_mode == "WaitForFirstConsumer"
    assert report.storage_class.parameters == {"type": "gp3"}
    # The requirements explain shows are those the loop sent.
    sent = csi.creates[-1].requirement
    assert sent is not None and report.requirements is not None
    assert report.requirements.requisite == [dict(s) for s in sent.requisite]
    assert report.requirements.preferred == [dict(s) for s in sent.preferred]
    assert report.zone_choice is not None and report.zone_choice.zone == "us-east-1b"
    assert report.zone_choice.source == "preferred" and report.zone_choice.index == 0


def test_ebs_zone_is_unknown_without_aws() -> None:
    kube = cluster()
    add_claim(kube, "data-0", node_name="node-2")
    provision(kube, "data-0")
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == OK
    assert report.volume is not None and report.volume.ebs_zone == NO_AWS == "unknown (no AWS access)"


def test_waiting_for_consumer_without_a_selected_node() -> None:
    kube = cluster()
    add_claim(kube, "data-0")
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == WAITING_FOR_CONSUMER
    assert report.requirements is not None and report.requirements.status == "waiting"
    assert report.selected_node is None and report.volume is None


def test_pending_with_a_selected_node_names_the_zone_the_driver_will_use() -> None:
    kube = cluster()
    add_claim(kube, "data-0", node_name="node-2")
    report = explain_pvc(kube, "default", "data-0", cloud=cloud_with("vol-0123456789abcdef0", "us-east-1a"))
    assert report.verdict.code == PENDING
    assert report.zone_choice is not None and report.zone_choice.zone == "us-east-1c"
    assert "EC2" in report.zone_choice.zones_from
    assert report.requirements is not None
    assert report.requirements.preferred[0] == {ZONE_KEY: "us-east-1c"}


def test_immediate_binding_requirements_agree_with_the_loop() -> None:
    kube = cluster()
    add_claim(kube, "data-web-2", binding="Immediate")
    before = explain_pvc(kube, "default", "data-web-2")
    assert before.verdict.code == PENDING
    assert before.requirements is not None and len(before.requirements.requisite) == 3
    _, csi = provision(kube, "data-web-2")
    sent = csi.creates[-1].requirement
    assert sent is not None
    assert before.requirements.preferred == [dict(s) for s in sent.preferred]
    assert before.zone_choice is not None
    assert before.zone_choice.zone == sent.preferred[0][ZONE_KEY]


def test_conflict_when_the_ebs_volume_is_in_another_zone() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1b",)))
    report = explain_pvc(kube, "default", "data-0", cloud=cloud_with("vol-0123456789abcdef0", "us-east-1a"))
    assert report.verdict.code == CONFLICT
    assert "us-east-1a" in report.verdict.reason and "us-east-1b" in report.verdict.reason


def test_conflict_when_the_selected_node_is_outside_the_affinity() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1a",)))
    kube.patch(
        Kind.CLAIM,
        "data-0",
        "default",
        {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "node-2"}}},
    )
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == CONFLICT
    assert "node-2" in report.verdict.reason and "us-east-1c" in report.verdict.reason


def test_conflict_when_no_node_is_in_the_affinity_zone() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1d",)), binding="Immediate")
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == CONFLICT
    assert "no schedulable node" in report.verdict.reason
    assert report.volume is not None and report.volume.nodes_in_zone == []


def test_cordoned_node_does_not_count() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ("us-east-1a",)))
    kube.patch(Kind.NODE, "node-0", "", {"spec": {"unschedulable": True}})
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == CONFLICT


def test_conflict_predicted_for_immediate_binding_into_a_zone_without_nodes() -> None:
    kube = cluster()
    add_claim(kube, "data-0", binding="Immediate", allowed_zones=("us-east-1d",))
    cloud = cloud_with("vol-0123456789abcdef0", "us-east-1a", ("us-east-1a", "us-east-1b", "us-east-1d"))
    report = explain_pvc(kube, "default", "data-0", cloud=cloud)
    assert report.verdict.code == CONFLICT
    assert "us-east-1d" in report.verdict.reason and "Immediate" in report.verdict.reason


def test_conflict_when_no_requested_zone_exists_in_the_region() -> None:
    kube = cluster()
    add_claim(kube, "data-0", binding="Immediate", allowed_zones=("us-west-2a",))
    report = explain_pvc(kube, "default", "data-0", cloud=cloud_with("vol-0123456789abcdef0", "us-east-1a"))
    assert report.verdict.code == CONFLICT
    assert report.zone_choice is not None and "us-west-2a" in report.zone_choice.error


def test_conflict_when_the_selected_node_is_not_allowed_by_the_class() -> None:
    kube = cluster()
    add_claim(kube, "data-0", node_name="node-2", allowed_zones=("us-east-1a",))
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == CONFLICT
    assert "allowedTopologies" in report.verdict.reason


def test_in_tree_labels_only() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", in_tree_pv("pv-old", "data-0", "us-east-1a"))
    report = explain_pvc(kube, "default", "data-0", cloud=cloud_with("vol-0123456789abcdef0", "us-east-1a"))
    assert report.verdict.code == IN_TREE_LABELS_ONLY
    assert "zonal translate pv" in report.verdict.action
    assert report.volume is not None and report.volume.pinned_by == "zone-labels"
    assert report.volume.volume_id == "vol-0123456789abcdef0" and report.volume.ebs_zone == "us-east-1a"


def test_unknown_key() -> None:
    kube = cluster()
    sc = storage_class("legacy", DRIVER, binding="Immediate")
    sc["allowedTopologies"] = [{"matchLabelExpressions": [{"key": EBS_ZONE_KEY, "values": ["us-east-1a"]}]}]
    kube.create(Kind.STORAGE_CLASS, sc)
    kube.create(Kind.CLAIM, claim("data-0", "legacy", DRIVER))
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == UNKNOWN_KEY
    assert EBS_ZONE_KEY in report.verdict.reason and ZONE_KEY in report.verdict.reason
    assert report.storage_class is not None and report.storage_class.unknown_keys == [EBS_ZONE_KEY]


def test_no_affinity() -> None:
    kube = cluster()
    bound_claim_with_pv(kube, "data-0", csi_pv("pv-1", "data-0", ()))
    assert explain_pvc(kube, "default", "data-0").verdict.code == NO_AFFINITY


def test_no_class_and_lost() -> None:
    kube = cluster()
    kube.create(Kind.CLAIM, claim("orphan", "missing", DRIVER))
    assert explain_pvc(kube, "default", "orphan").verdict.code == NO_CLASS
    add_claim(kube, "data-0")
    kube.patch(Kind.CLAIM, "data-0", "default", {"spec": {"volumeName": "pv-gone"}})
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == LOST and "pv-gone" in report.verdict.reason


def test_pending_when_the_selected_node_has_no_csinode() -> None:
    kube = FakeKube()
    kube.create(Kind.NODE, {"metadata": {"name": "bare", "labels": {ZONE_KEY: "us-east-1a"}}})
    add_claim(kube, "data-0", node_name="bare")
    report = explain_pvc(kube, "default", "data-0")
    assert report.verdict.code == PENDING
    assert report.requirements is not None and "CSINode" in report.requirements.error


def test_missing_claim_raises_not_found() -> None:
    with pytest.raises(NotFound, match="default/nope"):
        explain_pvc(cluster(), "default", "nope")


def test_report_is_plain_data_with_a_known_verdict() -> None:
    kube = cluster()
    add_claim(kube, "data-0", node_name="node-0")
    provision(kube, "data-0")
    data = explain_pvc(kube, "default", "data-0").to_dict()
    assert data["verdict"]["code"] in VERDICTS
    assert data["volume"]["node_affinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0][
        "values"
    ] == ["us-east-1a"]


def test_requirements_recorded_on_the_pv_are_shown_as_sent() -> None:
    from provisioner.embedded.kube.memory import MemoryKube, claim, storage_class, three_zone_cluster
    from provisioner.explain import explain_pvc
    from provisioner.model import TopologyRequirement
    from provisioner.ports.kube import Kind
    from provisioner.provisioning.pv import encode_requirement
    from provisioner.provisioning.settings import ANN_REQUIREMENTS

    kube = MemoryKube()
    three_zone_cluster(kube, "zonal.csi.dev")
    kube.create(Kind.STORAGE_CLASS, storage_class("gp3", "zonal.csi.dev"))
    c = kube.create(Kind.CLAIM, claim("data", "gp3", "zonal.csi.dev", node_name="node-1"))
    sent = TopologyRequirement(
        requisite=({"topology.kubernetes.io/zone": "us-east-1b"},),
        preferred=({"topology.kubernetes.io/zone": "us-east-1b"},),
    )
    pv_name = f"pvc-{c['metadata']['uid']}"
    affinity = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"]}
    kube.create(
        Kind.PV,
        {
            "metadata": {
                "name": pv_name,
                "annotations": {
                    "pv.kubernetes.io/provisioned-by": "zonal.csi.dev",
                    ANN_REQUIREMENTS: encode_requirement(sent),
                },
            },
            "spec": {
                "csi": {"driver": "zonal.csi.dev", "volumeHandle": "vol-0123456789abcdef0"},
                "claimRef": {"name": "data", "namespace": "default", "uid": c["metadata"]["uid"]},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [affinity]}]}},
            },
            "status": {"phase": "Bound"},
        },
    )
    kube.patch(Kind.CLAIM, "data", "default", {"spec": {"volumeName": pv_name}, "status": {"phase": "Bound"}})
    report = explain_pvc(kube, "default", "data")
    assert report.requirements is not None
    assert report.requirements.status == "sent"
    assert report.requirements.requisite == [{"topology.kubernetes.io/zone": "us-east-1b"}]
    assert report.zone_choice is not None and report.zone_choice.zone == "us-east-1b"
