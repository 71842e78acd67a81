"""What ``zonal explain`` reads from the cluster and the cloud, reduced to facts about zones.

Why it exists: the claim and pod explanations share these readings — a node's zone and schedulability,
what pins a PersistentVolume to a zone (nodeAffinity or only in-tree zone labels), which nodes satisfy
it, which StorageClass keys the driver does not report, and the EBS volume's real zone. Reads go through
the KubeApi and Cloud ports only; nothing here decides a verdict or prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from provisioner.errors import NotFound, ZonalError
from provisioner.explain.report import NO_AWS, ClassInfo, NodeInfo, VolumeInfo
from provisioner.model import EBS_ZONE_KEY, LEGACY_ZONE_KEY, ZONE_ID_KEY, ZONE_KEY, ZONE_KEYS
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind, KubeApi, KubeNotFound, Obj
from provisioner.topology.affinity import node_satisfies
from provisioner.topology.requirements import ClusterView
from provisioner.translate import (
    IN_TREE_PROVISIONER,
    MULTI_ZONE_DELIMITER,
    TranslationError,
    ebs_volume_id,
    split_zones,
)

# Node labels that carry the zone, most authoritative first.
NODE_ZONE_LABELS = (ZONE_KEY, LEGACY_ZONE_KEY, EBS_ZONE_KEY)
# PV labels the in-tree plugin (PersistentVolumeLabel admission) wrote.
PV_ZONE_LABELS = (ZONE_KEY, LEGACY_ZONE_KEY)


def labels_of(obj: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in (obj.get("metadata", {}).get("labels") or {}).items()}


def node_zone(labels: Mapping[str, str]) -> str:
    return next((labels[k] for k in NODE_ZONE_LABELS if labels.get(k)), "")


def zone_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in (*ZONE_KEYS, ZONE_ID_KEY) if k in labels}


def schedulable(node: Obj) -> tuple[bool, str]:
    """Whether new pods can land on the node: not cordoned and not reported NotReady."""
    if node.get("spec", {}).get("unschedulable"):
        return False, "cordoned (spec.unschedulable)"
    for cond in node.get("status", {}).get("conditions") or ():
        if cond.get("type") == "Ready" and cond.get("status") != "True":
            return False, f"NotReady ({cond.get('reason') or cond.get('status')})"
    return True, ""


# Taint effects the scheduler filters on; PreferNoSchedule only scores.
_HARD_EFFECTS = ("NoSchedule", "NoExecute")


def untolerated_taints(node: Obj, tolerations: Sequence[Mapping[str, Any]]) -> list[str]:
    """The node's NoSchedule/NoExecute taints that none of ``tolerations`` tolerates, as
    ``key=value:Effect`` (Kubernetes' matching: an empty effect matches every effect; ``Exists`` with
    no key tolerates every taint; ``Equal``, the default operator, needs the same key and value)."""
    left = []
    for taint in node.get("spec", {}).get("taints") or ():
        effect = str(taint.get("effect") or "")
        if effect not in _HARD_EFFECTS:
            continue
        key, value = str(taint.get("key") or ""), str(taint.get("value") or "")
        if not any(_tolerates(t, key, value, effect) for t in tolerations):
            left.append(f"{key}={value}:{effect}" if value else f"{key}:{effect}")
    return left


def _tolerates(toleration: Mapping[str, Any], key: str, value: str, effect: str) -> bool:
    if toleration.get("effect") and toleration.get("effect") != effect:
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration.get("key") == key
    return toleration.get("key") == key and str(toleration.get("value") or "") == value


def node_info(name: str, nodes: Mapping[str, Obj], view: ClusterView) -> NodeInfo:
    node = nodes.get(name)
    if node is None:
        return NodeInfo(name=name, exists=False, csinode_keys=_keys(view, name))
    labels = labels_of(node)
    ok, why = schedulable(node)
    return NodeInfo(
        name=name,
        exists=True,
        zone=node_zone(labels),
        zone_labels=zone_labels(labels),
        csinode_keys=_keys(view, name),
        schedulable=ok,
        why_unschedulable=why,
    )


def _keys(view: ClusterView, name: str) -> list[str] | None:
    keys = view.csinode_keys.get(name)
    return None if keys is None else list(keys)


def by_name(objs: Iterable[Obj]) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs}


# --- StorageClass -------------------------------------------------------------------------------------


def allowed_terms(sc: Obj) -> list[dict[str, list[str]]]:
    out: list[dict[str, list[str]]] = []
    for term in sc.get("allowedTopologies") or ():
        out.append(
            {
                str(e.get("key", "")): [str(v) for v in e.get("values") or ()]
                for e in term.get("matchLabelExpressions") or ()
            }
        )
    return out


def driver_keys(view: ClusterView) -> set[str]:
    return {k for keys in view.driver_keys().values() for k in keys}


def class_info(name: str, sc: Obj | None, view: ClusterView) -> ClassInfo:
    if sc is None:
        return ClassInfo(name=name, found=False)
    terms = allowed_terms(sc)
    reported = driver_keys(view)
    used = sorted({k for term in terms for k in term})
    return ClassInfo(
        name=name,
        found=True,
        provisioner=str(sc.get("provisioner") or ""),
        binding_mode=str(sc.get("volumeBindingMode") or "Immediate"),
        reclaim_policy=str(sc.get("reclaimPolicy") or "Delete"),
        parameters={str(k): str(v) for k, v in (sc.get("parameters") or {}).items()},
        allowed_topologies=terms,
        unknown_keys=[k for k in used if k not in reported],
    )


def allowed_zones(info: ClassInfo) -> set[str]:
    """Zones the class's allowedTopologies name on any zone key (empty: no zone restriction)."""
    return {v for term in info.allowed_topologies for k, vs in term.items() if k in ZONE_KEYS for v in vs}


# --- PersistentVolume ---------------------------------------------------------------------------------


def find_pv(kube: KubeApi, claim: Obj) -> tuple[Obj | None, str]:
    """The claim's PV: ``spec.volumeName``, else a PV whose claimRef names it (provisioned, not yet bound).

    Returns (pv, name); the name is set without a PV when the claim names one that does not exist.
    """
    wanted = claim.get("spec", {}).get("volumeName") or ""
    if wanted:
        try:
            return kube.get(Kind.PV, wanted), wanted
        except KubeNotFound:
            return None, wanted
    meta = claim["metadata"]
    for pv in kube.list(Kind.PV).items:
        ref = pv.get("spec", {}).get("claimRef") or {}
        if ref.get("name") == meta.get("name") and ref.get("namespace") == meta.get("namespace"):
            if ref.get("uid") and meta.get("uid") and ref["uid"] != meta["uid"]:
                continue
            return pv, pv["metadata"]["name"]
    return None, ""


def affinity_zones(affinity: Mapping[str, Any] | None) -> list[str]:
    """Zones named by ``In`` expressions on a zone key in the PV's required node affinity."""
    zones: set[str] = set()
    for term in ((affinity or {}).get("required") or {}).get("nodeSelectorTerms") or ():
        for expr in term.get("matchExpressions") or ():
            if expr.get("key") in ZONE_KEYS and expr.get("operator") == "In":
                zones.update(str(v) for v in expr.get("values") or ())
    return sorted(zones)


def pv_label_zones(labels: Mapping[str, str]) -> list[str]:
    for key in PV_ZONE_LABELS:
        if labels.get(key):
            return sorted(set(split_zones(labels[key], MULTI_ZONE_DELIMITER)))
    return []


def pv_volume_id(pv: Obj) -> str:
    spec = pv.get("spec", {})
    if spec.get("csi"):
        return str(spec["csi"].get("volumeHandle") or "")
    ebs = spec.get("awsElasticBlockStore")
    if ebs:
        try:
            return ebs_volume_id(str(ebs.get("volumeID") or ""))
        except TranslationError:
            return str(ebs.get("volumeID") or "")
    return ""


def pv_driver(pv: Obj) -> str:
    spec = pv.get("spec", {})
    if spec.get("csi"):
        return str(spec["csi"].get("driver") or "")
    return IN_TREE_PROVISIONER if spec.get("awsElasticBlockStore") else ""


def pv_satisfied_by(pv_info: VolumeInfo, node_labels: Mapping[str, str]) -> bool:
    """Whether a node with these labels may run a pod using the PV (what the scheduler checks)."""
    if pv_info.pinned_by == "nodeAffinity":
        return node_satisfies(pv_info.node_affinity, node_labels)
    if pv_info.pinned_by == "zone-labels":
        # The scheduler's VolumeZone filter: the node's zone label must be one of the PV's zones.
        return any(node_labels.get(k) in pv_info.zones for k in PV_ZONE_LABELS)
    return True


def volume_info(pv: Obj, nodes: Sequence[Obj], cloud: Cloud | None) -> VolumeInfo:
    spec = pv.get("spec", {})
    affinity = spec.get("nodeAffinity") or None
    labels = labels_of(pv)
    info = VolumeInfo(
        pv=pv["metadata"]["name"],
        phase=str(pv.get("status", {}).get("phase") or ""),
        driver=pv_driver(pv),
        volume_id=pv_volume_id(pv),
        node_affinity=affinity,
        zone_labels={k: labels[k] for k in PV_ZONE_LABELS if k in labels},
    )
    if affinity and (affinity.get("required") or {}).get("nodeSelectorTerms"):
        info.pinned_by = "nodeAffinity"
        info.zones = affinity_zones(affinity)
    elif pv_label_zones(labels):
        info.pinned_by = "zone-labels"
        info.zones = pv_label_zones(labels)
    info.ebs_zone = ebs_zone(cloud, info.volume_id)
    info.nodes_in_zone = [
        n["metadata"]["name"] for n in nodes if schedulable(n)[0] and pv_satisfied_by(info, labels_of(n))
    ]
    return info


def ebs_zone(cloud: Cloud | None, volume_id: str) -> str:
    """The zone EC2 reports for the volume, or why it is unknown."""
    if cloud is None:
        return NO_AWS
    if not volume_id:
        return "unknown (the PV names no EBS volume)"
    try:
        return cloud.get_volume(volume_id).zone
    except NotFound:
        return f"unknown (EC2 has no volume {volume_id})"
    except ZonalError as e:
        return f"unknown (EC2: {e})"


def is_known_zone(value: str) -> bool:
    return bool(value) and not value.startswith("unknown")
