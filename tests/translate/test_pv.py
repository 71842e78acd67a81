"""PersistentVolume translation: each csi-translation-lib rule, zonal's additions, and round trips."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from provisioner.config import DEFAULT_DRIVER_NAME, EBS_DRIVER_NAME
from provisioner.translate import (
    LEGACY_REGION_KEY,
    REGION_KEY,
    TranslationError,
    ebs_volume_id,
    pv_to_csi,
    pv_to_in_tree,
    region_from_zones,
)

ZONE = "topology.kubernetes.io/zone"
BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"
EBS_ZONE = "topology.ebs.csi.aws.com/zone"


def in_tree_pv(
    volume_id: str = "aws://us-east-1a/vol-0123456789abcdef0",
    labels: dict[str, str] | None = None,
    affinity: list[list[dict[str, Any]]] | None = None,
    **ebs: Any,
) -> dict[str, Any]:
    pv: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": "pvc-1",
            "annotations": {"pv.kubernetes.io/provisioned-by": "kubernetes.io/aws-ebs"},
        },
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "awsElasticBlockStore": {"volumeID": volume_id, **ebs},
        },
    }
    if labels is not None:
        pv["metadata"]["labels"] = labels
    if affinity is not None:
        pv["spec"]["nodeAffinity"] = {
            "required": {"nodeSelectorTerms": [{"matchExpressions": exprs} for exprs in affinity]}
        }
    return pv


def expr(key: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


def terms(pv: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [t["matchExpressions"] for t in pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]]


# --- volume ids ----------


@pytest.mark.parametrize(
    ("kubernetes_id", "ebs_id"),
    [
        ("aws://us-east-1a/vol-0123456789abcdef0", "vol-0123456789abcdef0"),
        ("aws:///vol-12345678", "vol-12345678"),
        ("vol-0123456789abcdef0", "vol-0123456789abcdef0"),
    ],
)
def test_volume_id_forms(kubernetes_id: str, ebs_id: str) -> None:
    assert ebs_volume_id(kubernetes_id) == ebs_id
    assert pv_to_csi(in_tree_pv(kubernetes_id))["spec"]["csi"]["volumeHandle"] == ebs_id


@pytest.mark.parametrize(
    "bad", ["", "aws://us-east-1a/", "aws://us-east-1a/snap-1", "aws://us-east-1a/x/vol-1"]
)
def test_bad_volume_ids_are_rejected(bad: str) -> None:
    with pytest.raises(TranslationError, match="volume"):
        pv_to_csi(in_tree_pv(bad))


# --- source ----------


def test_source_becomes_csi_with_driver_fstype_readonly_partition() -> None:
    out = pv_to_csi(in_tree_pv(fsType="xfs", readOnly=True, partition=2), driver_name="example.csi.dev")
    assert "awsElasticBlockStore" not in out["spec"]
    assert out["spec"]["csi"] == {
        "driver": "example.csi.dev",
        "volumeHandle": "vol-0123456789abcdef0",
        "fsType": "xfs",
        "readOnly": True,
        "volumeAttributes": {"partition": "2"},
    }
    assert out["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "example.csi.dev"
    # Everything else is left alone.
    assert out["spec"]["capacity"] == {"storage": "10Gi"}
    assert out["spec"]["persistentVolumeReclaimPolicy"] == "Delete"


def test_default_driver_and_partition_zero() -> None:
    csi = pv_to_csi(in_tree_pv())["spec"]["csi"]
    assert csi["driver"] == DEFAULT_DRIVER_NAME
    assert csi["volumeAttributes"] == {"partition": "0"}
    assert "readOnly" not in csi and "fsType" not in csi


def test_input_is_not_mutated() -> None:
    pv = in_tree_pv(labels={BETA_ZONE: "us-east-1a"})
    before = copy.deepcopy(pv)
    pv_to_in_tree(pv_to_csi(pv))
    assert pv == before


# --- topology in-tree → CSI -------------------------------------------------------------------------------


@pytest.mark.parametrize("label_key", [BETA_ZONE, ZONE])
def test_zone_label_becomes_node_affinity(label_key: str) -> None:
    out = pv_to_csi(in_tree_pv("vol-1", labels={label_key: "us-east-1b"}))
    assert terms(out) == [[expr(ZONE, "us-east-1b")]]
    assert out["metadata"]["labels"] == {label_key: "us-east-1b"}  # labels are kept


def test_multi_zone_label_is_split_trimmed_deduplicated_sorted() -> None:
    out = pv_to_csi(in_tree_pv("vol-1", labels={BETA_ZONE: "us-east-1c__us-east-1a__ us-east-1c"}))
    assert terms(out) == [[expr(ZONE, "us-east-1a", "us-east-1c")]]


def test_zone_is_added_to_every_existing_term() -> None:
    out = pv_to_csi(
        in_tree_pv(
            "vol-1",
            labels={BETA_ZONE: "us-east-1a"},
            affinity=[[expr("kubernetes.io/hostname", "n1")], [expr("kubernetes.io/hostname", "n2")]],
        )
    )
    assert terms(out) == [
        [expr("kubernetes.io/hostname", "n1"), expr(ZONE, "us-east-1a")],
        [expr("kubernetes.io/hostname", "n2"), expr(ZONE, "us-east-1a")],
    ]


def test_legacy_affinity_wins_over_labels_and_region_goes_ga() -> None:
    pv = in_tree_pv(
        "vol-1",
        labels={BETA_ZONE: "us-east-1c", LEGACY_REGION_KEY: "us-east-1"},
        affinity=[[expr(BETA_ZONE, "us-east-1a"), expr(LEGACY_REGION_KEY, "us-east-1")]],
    )
    out = pv_to_csi(pv)
    assert terms(out) == [[expr(ZONE, "us-east-1a"), expr(REGION_KEY, "us-east-1")]]


def test_ga_affinity_is_kept_and_ga_region_untouched() -> None:
    pv = in_tree_pv("vol-1", affinity=[[expr(ZONE, "us-east-1a"), expr(REGION_KEY, "us-east-1")]])
    assert terms(pv_to_csi(pv)) == [[expr(ZONE, "us-east-1a"), expr(REGION_KEY, "us-east-1")]]


def test_zone_from_volume_url_when_nothing_else_names_one() -> None:
    out = pv_to_csi(in_tree_pv("aws://eu-west-1b/vol-1"))
    assert terms(out) == [[expr(ZONE, "eu-west-1b")]]


def test_no_zone_anywhere_means_no_affinity() -> None:
    assert "nodeAffinity" not in pv_to_csi(in_tree_pv("vol-1"))["spec"]


# --- CSI → in-tree ----------------------------------------------------------------------------------------


def csi_pv(driver: str = DEFAULT_DRIVER_NAME, key: str = ZONE, **csi: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pvc-2", "annotations": {"pv.kubernetes.io/provisioned-by": driver}},
        "spec": {
            "capacity": {"storage": "5Gi"},
            "csi": {"driver": driver, "volumeHandle": "vol-0abc", **csi},
            "nodeAffinity": {
                "required": {"nodeSelectorTerms": [{"matchExpressions": [expr(key, "us-west-2b")]}]}
            },
        },
    }


@pytest.mark.parametrize(("driver", "key"), [(DEFAULT_DRIVER_NAME, ZONE), (EBS_DRIVER_NAME, EBS_ZONE)])
def test_csi_to_in_tree_source_region_and_labels(driver: str, key: str) -> None:
    out = pv_to_in_tree(
        csi_pv(driver, key, fsType="ext4", readOnly=True, volumeAttributes={"partition": "3"}),
    )
    assert out["spec"]["awsElasticBlockStore"] == {
        "volumeID": "vol-0abc",
        "fsType": "ext4",
        "partition": 3,
        "readOnly": True,
    }
    assert "csi" not in out["spec"]
    assert terms(out) == [[expr(ZONE, "us-west-2b"), expr(REGION_KEY, "us-west-2")]]
    assert out["metadata"]["labels"] == {ZONE: "us-west-2b", REGION_KEY: "us-west-2"}
    assert out["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "kubernetes.io/aws-ebs"


def test_csi_to_in_tree_keeps_beta_labels_when_the_pv_uses_them() -> None:
    pv = csi_pv(key=EBS_ZONE)
    pv["metadata"]["labels"] = {BETA_ZONE: "us-west-2b"}
    out = pv_to_in_tree(pv)
    assert terms(out) == [[expr(BETA_ZONE, "us-west-2b"), expr(LEGACY_REGION_KEY, "us-west-2")]]
    assert out["metadata"]["labels"] == {BETA_ZONE: "us-west-2b", LEGACY_REGION_KEY: "us-west-2"}


def test_csi_to_in_tree_multi_zone_label_is_joined() -> None:
    pv = csi_pv()
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] = [
        {"matchExpressions": [expr(ZONE, "us-west-2c", "us-west-2a")]}
    ]
    assert pv_to_in_tree(pv)["metadata"]["labels"][ZONE] == "us-west-2a__us-west-2c"


def test_csi_to_in_tree_rejects_foreign_driver_bad_handle_and_partition() -> None:
    with pytest.raises(TranslationError, match="driver"):
        pv_to_in_tree(csi_pv("other.csi.example.com"))
    with pytest.raises(TranslationError, match="volumeHandle"):
        pv_to_in_tree({**csi_pv(), "spec": {"csi": {"driver": DEFAULT_DRIVER_NAME, "volumeHandle": "pd-1"}}})
    with pytest.raises(TranslationError, match="partition"):
        pv_to_in_tree(csi_pv(volumeAttributes={"partition": "x"}))


def test_term_spanning_regions_is_rejected() -> None:
    pv = csi_pv()
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] = [
        {"matchExpressions": [expr(ZONE, "us-west-2a", "us-east-1a")]}
    ]
    with pytest.raises(TranslationError, match="several regions"):
        pv_to_in_tree(pv)


@pytest.mark.parametrize(
    ("zones", "region"),
    [
        (["us-west-2a"], "us-west-2"),
        (["us-gov-east-1a", "us-gov-east-1b"], "us-gov-east-1"),
        (["us-west-2-lax-1a"], "us-west-2"),
        (["us-east-1-wl1-bos-wlz-1"], "us-east-1"),
    ],
)
def test_region_from_zone_forms(zones: list[str], region: str) -> None:
    assert region_from_zones(zones) == region


@pytest.mark.parametrize("zones", [[], ["nowhere"], ["us-west-2a", "eu-west-1a"]])
def test_region_from_bad_zones(zones: list[str]) -> None:
    with pytest.raises(TranslationError):
        region_from_zones(zones)


# --- round trips ----------


ROUND_TRIP_CASES = [
    in_tree_pv(labels={BETA_ZONE: "us-east-1a", LEGACY_REGION_KEY: "us-east-1"}, fsType="ext4"),
    in_tree_pv("vol-2", labels={ZONE: "us-east-1a__us-east-1b", REGION_KEY: "us-east-1"}, readOnly=True),
    in_tree_pv(
        "vol-3", affinity=[[expr(BETA_ZONE, "eu-central-1a"), expr(LEGACY_REGION_KEY, "eu-central-1")]]
    ),
    in_tree_pv("aws://ap-south-1c/vol-4", partition=1),
]


@pytest.mark.parametrize("pv", ROUND_TRIP_CASES)
def test_round_trip_in_tree_csi_in_tree(pv: dict[str, Any]) -> None:
    back = pv_to_in_tree(pv_to_csi(pv))
    source = pv["spec"]["awsElasticBlockStore"]
    # The same disk, with the same options (the aws://zone/ prefix is normalised away, as the lib does).
    assert back["spec"]["awsElasticBlockStore"] == {**source, "volumeID": ebs_volume_id(source["volumeID"])}
    # The same zones, and every original label survives.
    zones_before = pv_to_csi(pv)["spec"]["nodeAffinity"]
    assert (
        pv_to_csi(back)["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
        == (zones_before["required"]["nodeSelectorTerms"][0]["matchExpressions"][0])
    )
    assert pv.get("metadata", {}).get("labels", {}).items() <= back["metadata"]["labels"].items()
    assert back["metadata"]["annotations"] == pv["metadata"]["annotations"]
    # After one round, translation is a fixed point.
    assert pv_to_in_tree(pv_to_csi(back)) == back


@pytest.mark.parametrize("pv", ROUND_TRIP_CASES)
def test_round_trip_csi_in_tree_csi_is_stable(pv: dict[str, Any]) -> None:
    csi = pv_to_csi(pv)
    again = pv_to_csi(pv_to_in_tree(csi))
    assert again["spec"]["csi"] == csi["spec"]["csi"]
    assert terms(again)[0][0] == terms(csi)[0][0]


# --- shape errors ----------


@pytest.mark.parametrize(
    ("pv", "message"),
    [
        ({"kind": "StorageClass"}, "expected kind PersistentVolume"),
        ({"kind": "PersistentVolume", "spec": {}}, "awsElasticBlockStore must be a mapping"),
        ({"kind": "PersistentVolume", "spec": {"csi": {}}}, "spec.csi is already set"),
        (in_tree_pv(partition=-1), "partition"),
        (in_tree_pv(readOnly="yes"), "readOnly"),
        ({**in_tree_pv(), "spec": {**in_tree_pv()["spec"], "nodeAffinity": {"required": 3}}}, "mapping"),
    ],
)
def test_malformed_pvs_name_the_field(pv: dict[str, Any], message: str) -> None:
    with pytest.raises(TranslationError, match=message):
        pv_to_csi(pv)
