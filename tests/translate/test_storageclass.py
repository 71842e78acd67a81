"""StorageClass translation: csi-translation-lib's parameter and topology rules, the reverse, round trips."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from provisioner.config import DEFAULT_DRIVER_NAME, EBS_DRIVER_NAME
from provisioner.translate import TranslationError, storageclass_to_csi, storageclass_to_in_tree

ZONE = "topology.kubernetes.io/zone"
BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"
EBS_ZONE = "topology.ebs.csi.aws.com/zone"


def in_tree_sc(parameters: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "gp2"},
        "provisioner": "kubernetes.io/aws-ebs",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        **fields,
    }
    if parameters is not None:
        sc["parameters"] = parameters
    return sc


def topology(key: str, *values: str) -> list[dict[str, Any]]:
    return [{"matchLabelExpressions": [{"key": key, "values": list(values)}]}]


def test_provisioner_and_parameters_follow_the_lib() -> None:
    sc = in_tree_sc(
        {"type": "io1", "iopsPerGB": "50", "encrypted": "true", "kmsKeyId": "arn:aws:kms:k", "fsType": "xfs"}
    )
    out = storageclass_to_csi(sc)
    assert out["provisioner"] == DEFAULT_DRIVER_NAME
    assert out["parameters"] == {
        "type": "io1",
        "iopsPerGB": "50",
        "encrypted": "true",
        "kmsKeyId": "arn:aws:kms:k",
        "csi.storage.k8s.io/fstype": "xfs",
    }
    assert "allowedTopologies" not in out
    assert out["reclaimPolicy"] == "Delete" and out["volumeBindingMode"] == "Immediate"


@pytest.mark.parametrize("key", ["fstype", "FSTYPE", "fsType"])
def test_fstype_matched_case_insensitively(key: str) -> None:
    assert storageclass_to_csi(in_tree_sc({key: "ext4"}))["parameters"] == {
        "csi.storage.k8s.io/fstype": "ext4"
    }


def test_zone_parameter_becomes_allowed_topologies() -> None:
    out = storageclass_to_csi(in_tree_sc({"zone": "us-east-1a", "type": "gp2"}))
    assert out["allowedTopologies"] == topology(ZONE, "us-east-1a")
    assert out["parameters"] == {"type": "gp2"}


def test_zones_parameter_is_split_on_commas_in_order() -> None:
    out = storageclass_to_csi(in_tree_sc({"Zones": "us-east-1c, us-east-1a,"}))
    assert out["allowedTopologies"] == topology(ZONE, "us-east-1c", "us-east-1a")
    assert out["parameters"] == {}


@pytest.mark.parametrize("key", [BETA_ZONE, ZONE])
def test_allowed_topologies_zone_keys_are_renamed_others_kept(key: str) -> None:
    terms = [
        {
            "matchLabelExpressions": [
                {"key": key, "values": ["us-east-1a"]},
                {"key": "example.com/rack", "values": ["r1"]},
            ]
        }
    ]
    out = storageclass_to_csi(in_tree_sc(allowedTopologies=terms))
    assert out["allowedTopologies"] == [
        {
            "matchLabelExpressions": [
                {"key": ZONE, "values": ["us-east-1a"]},
                {"key": "example.com/rack", "values": ["r1"]},
            ]
        }
    ]


def test_no_parameters_stay_absent_and_driver_name_is_used() -> None:
    out = storageclass_to_csi(in_tree_sc(), driver_name="example.csi.dev")
    assert "parameters" not in out
    assert out["provisioner"] == "example.csi.dev"


def test_input_is_not_mutated() -> None:
    sc = in_tree_sc({"zone": "us-east-1a"})
    before = copy.deepcopy(sc)
    storageclass_to_in_tree(storageclass_to_csi(sc))
    assert sc == before


@pytest.mark.parametrize(
    ("sc", "message"),
    [
        (in_tree_sc({"zone": "us-east-1a", "zones": "us-east-1b"}), "must not be used together"),
        (in_tree_sc({"zone": "a"}, allowedTopologies=topology(BETA_ZONE, "a")), "both allowedTopologies"),
        (in_tree_sc({"zones": " , "}), "names no zone"),
        (in_tree_sc({"encrypted": True}), "parameters.encrypted"),
        (in_tree_sc(provisioner="ebs.csi.aws.com"), "expected 'kubernetes.io/aws-ebs'"),
        (in_tree_sc(allowedTopologies={"a": 1}), "allowedTopologies must be a list"),
        ({"kind": "PersistentVolume"}, "expected kind StorageClass"),
    ],
)
def test_bad_storageclasses_are_rejected(sc: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError, match=message):
        storageclass_to_csi(sc)


def test_reverse_renames_fstype_and_ebs_topology_key() -> None:
    csi = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "ebs"},
        "provisioner": EBS_DRIVER_NAME,
        "parameters": {"type": "gp3", "csi.storage.k8s.io/fstype": "ext4", "encrypted": "true"},
        "allowedTopologies": topology(EBS_ZONE, "us-east-1a"),
    }
    out = storageclass_to_in_tree(csi)
    assert out["provisioner"] == "kubernetes.io/aws-ebs"
    assert out["parameters"] == {"type": "gp3", "fsType": "ext4", "encrypted": "true"}
    assert out["allowedTopologies"] == topology(ZONE, "us-east-1a")


def test_reverse_rejects_parameters_the_in_tree_plugin_lacks() -> None:
    csi = storageclass_to_csi(in_tree_sc({"type": "gp3"}))
    csi["parameters"]["throughput"] = "250"
    with pytest.raises(TranslationError, match="throughput has no in-tree"):
        storageclass_to_in_tree(csi)
    with pytest.raises(TranslationError, match="provisioner"):
        storageclass_to_in_tree(in_tree_sc())


ROUND_TRIP_CASES = [
    in_tree_sc({"type": "io1", "iopsPerGB": "10", "fsType": "xfs", "encrypted": "true", "kmsKeyId": "k"}),
    in_tree_sc({"zone": "us-east-1b"}),
    in_tree_sc({"zones": "us-east-1a,us-east-1b"}, volumeBindingMode="WaitForFirstConsumer"),
    in_tree_sc({"type": "gp2"}, allowedTopologies=topology(BETA_ZONE, "eu-west-1a", "eu-west-1b")),
]


@pytest.mark.parametrize("sc", ROUND_TRIP_CASES)
def test_round_trip_in_tree_csi_in_tree(sc: dict[str, Any]) -> None:
    csi = storageclass_to_csi(sc)
    back = storageclass_to_in_tree(csi)
    assert back["provisioner"] == sc["provisioner"]
    # The same parameters, except that zone/zones now live in allowedTopologies (their CSI form).
    kept = {k: v for k, v in sc["parameters"].items() if k.lower() not in ("zone", "zones")}
    assert {k.lower(): v for k, v in back["parameters"].items()} == {k.lower(): v for k, v in kept.items()}
    # The same zones are allowed.
    assert {
        v for t in back.get("allowedTopologies", []) for e in t["matchLabelExpressions"] for v in e["values"]
    } == {
        v for t in csi.get("allowedTopologies", []) for e in t["matchLabelExpressions"] for v in e["values"]
    }
    # And from there on translation is a fixed point in both directions.
    assert storageclass_to_csi(back) == csi
    assert storageclass_to_in_tree(storageclass_to_csi(back)) == back
