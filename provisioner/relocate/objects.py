"""The objects a relocation makes, as pure functions of the ones it starts from.

Why it exists: what is kept and what is dropped when a claim is recreated, how the new PV differs from
the old one, and how the new volume copies the old one are the decisions a reviewer must be able to read
in one place. The claim keeps everything the user set (spec, labels, annotations, owners that outlive the
pods) and loses what controllers wrote (bind annotations, the scheduler's selected node, finalizers);
the new PV is the old one with the new volume handle, its zone rewritten in nodeAffinity and labels, and
``claimRef`` naming the claim without a UID so the recreated claim can bind; the new volume has the old
one's type, size, IOPS, throughput, encryption and KMS key and is tagged as the driver tags its volumes.
Nothing here reads, writes or prints.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from provisioner.config import DriverConfig
from provisioner.controller.ownership import TAG_SOURCE_VOLUME, ownership_tags
from provisioner.model import (
    TAG_CLUSTER_PREFIX,
    TAG_DRIVER,
    TAG_SNAPSHOT_NAME,
    TAG_VOLUME_NAME,
    TAG_ZONAL_DRIVER,
    ZONE_ID_KEY,
    ZONE_KEY,
    ZONE_KEYS,
    Volume,
    VolumeSpec,
    Zone,
)
from provisioner.params import TAG_PV_NAME
from provisioner.ports.kube import Obj
from provisioner.provisioning.pv import REGION_KEYS
from provisioner.provisioning.request import annotations_of
from provisioner.provisioning.settings import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_REQUIREMENTS,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
)
from provisioner.relocate.journal import (
    ANN_JOURNAL,
    ANN_LEASE,
    ANN_RELOCATED_FROM,
    ANN_RELOCATION_ID,
    ANN_SAVED_CLAIM,
    TAG_RELOCATION,
    Journal,
)

PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
# Written by controllers, never by the user: a recreated claim must not carry them (the selected node is
# in the old zone; the bind annotations describe a binding that no longer exists).
CONTROLLER_ANNOTATIONS = frozenset(
    {
        "pv.kubernetes.io/bind-completed",
        "pv.kubernetes.io/bound-by-controller",
        "volume.kubernetes.io/storage-resizer",
        ANN_SELECTED_NODE,
        ANN_STORAGE_PROVISIONER,
        ANN_BETA_STORAGE_PROVISIONER,
    }
)
# Not copied from the old PV to the new one.
PV_ANNOTATIONS_DROPPED = frozenset(
    {"pv.kubernetes.io/bound-by-controller", ANN_REQUIREMENTS, ANN_JOURNAL, ANN_SAVED_CLAIM, ANN_LEASE}
)
# IOPS and throughput are settable (and sent) only for these types.
IOPS_TYPES = frozenset({"gp3", "io1", "io2"})
THROUGHPUT_TYPES = frozenset({"gp3"})
OWNERSHIP_KEYS = (TAG_ZONAL_DRIVER, TAG_DRIVER)


def saved_claim(claim: Obj) -> Obj:
    """What the user set on the claim: name, namespace, labels, annotations (controllers' dropped),
    owner references other than Pods (a pod owner is gone, and the garbage collector would delete a claim
    owned by it), and the spec. Status, UID, resourceVersion and finalizers are not kept."""
    meta = claim["metadata"]
    kept: dict[str, Any] = {"name": meta["name"], "namespace": meta.get("namespace") or "default"}
    if meta.get("labels"):
        kept["labels"] = dict(meta["labels"])
    notes = {k: v for k, v in annotations_of(claim).items() if k not in CONTROLLER_ANNOTATIONS}
    if notes:
        kept["annotations"] = notes
    owners = [o for o in meta.get("ownerReferences") or () if o.get("kind") != "Pod"]
    if owners:
        kept["ownerReferences"] = owners
    return {"metadata": kept, "spec": copy.deepcopy(claim.get("spec") or {})}


def dropped_from_claim(claim: Obj) -> list[str]:
    """What :func:`saved_claim` leaves out, for the plan: annotations, pod owners, finalizers."""
    out = [f"annotation {k}" for k in sorted(annotations_of(claim)) if k in CONTROLLER_ANNOTATIONS]
    meta = claim["metadata"]
    out += [
        f"ownerReference Pod/{o.get('name')}"
        for o in meta.get("ownerReferences") or ()
        if o.get("kind") == "Pod"
    ]
    out += [f"finalizer {f} (the API server adds it again)" for f in meta.get("finalizers") or ()]
    return out


def recreated_claim(saved: Obj, pv_name: str, relocation_id: str) -> Obj:
    """The claim to create: the saved one pre-bound to ``pv_name``, marked with the relocation id."""
    claim = copy.deepcopy(saved)
    meta = claim["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), ANN_RELOCATION_ID: relocation_id}
    claim.setdefault("spec", {})["volumeName"] = pv_name
    return claim


def restored_claim(saved: Obj, pv_name: str) -> Obj:
    """The claim a rollback creates again: the saved one, pre-bound to its original PV."""
    claim = copy.deepcopy(saved)
    claim.setdefault("spec", {})["volumeName"] = pv_name
    return claim


# --- the new PV ---------------------------------------------------------------------------------------


def zone_affinity(affinity: Mapping[str, Any] | None, zone: Zone) -> dict[str, Any]:
    """``nodeAffinity`` pinned to ``zone``: every zone (and zone-id) expression's values replaced, other
    expressions kept; a term without a zone expression gets ``topology.kubernetes.io/zone In [zone]``."""
    terms = ((affinity or {}).get("required") or {}).get("nodeSelectorTerms") or []
    out: list[dict[str, Any]] = []
    for term in terms:
        exprs = []
        pinned = False
        for expr in term.get("matchExpressions") or ():
            key = expr.get("key")
            if key in ZONE_KEYS:
                exprs.append({"key": key, "operator": "In", "values": [zone.name]})
                pinned = True
            elif key == ZONE_ID_KEY and zone.zone_id:
                exprs.append({"key": key, "operator": "In", "values": [zone.zone_id]})
            else:
                exprs.append(copy.deepcopy(expr))
        if not pinned:
            exprs.append({"key": ZONE_KEY, "operator": "In", "values": [zone.name]})
        new = {**copy.deepcopy(term), "matchExpressions": exprs}
        if new not in out:
            out.append(new)
    if not out:
        out = [{"matchExpressions": [{"key": ZONE_KEY, "operator": "In", "values": [zone.name]}]}]
    return {"required": {"nodeSelectorTerms": out}}


def new_pv(old: Obj, journal: Journal, volume_id: str, zone: Zone) -> Obj:
    """The PV for the new volume: the old PV's spec and metadata with the handle, the zone and the claim
    reference changed, ``Retain`` until the relocation finishes, and no finalizers yet."""
    meta = old["metadata"]
    spec = copy.deepcopy(old.get("spec") or {})
    spec["csi"] = {**(spec.get("csi") or {}), "volumeHandle": volume_id}
    spec["nodeAffinity"] = zone_affinity(spec.get("nodeAffinity"), zone)
    spec["persistentVolumeReclaimPolicy"] = "Retain"
    spec["claimRef"] = {
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": journal.namespace,
        "name": journal.claim,
    }
    labels = dict(meta.get("labels") or {})
    for key in ZONE_KEYS:
        if key in labels:
            labels[key] = zone.name
    for key in REGION_KEYS:
        if key in labels:
            labels[key] = zone.name.rstrip("abcdefghijklmnopqrstuvwxyz")
    notes = {k: v for k, v in annotations_of(old).items() if k not in PV_ANNOTATIONS_DROPPED}
    notes[ANN_RELOCATION_ID] = journal.id
    notes[ANN_RELOCATED_FROM] = f"{journal.source_pv} ({journal.source_volume} in {journal.from_zone})"
    metadata: dict[str, Any] = {"name": journal.new_pv, "annotations": notes}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": metadata, "spec": spec}


def kept_finalizers(old: Obj) -> list[str]:
    """The old PV's finalizers the new one takes at the end (the provisioner's deletion hand-over); the
    API server adds ``kubernetes.io/pv-protection`` by itself."""
    return [str(f) for f in old["metadata"].get("finalizers") or () if f != PV_PROTECTION]


# --- EC2 ------------------------------------------------------------------------------------------------


def snapshot_name(journal: Journal) -> str:
    return f"relocate-{journal.id}"


def snapshot_tags(source: Volume, journal: Journal, driver: DriverConfig) -> dict[str, str]:
    owned = {k: v for k, v in source.tags.items() if k in OWNERSHIP_KEYS or k.startswith(TAG_CLUSTER_PREFIX)}
    return {
        **owned,
        **ownership_tags(driver),
        TAG_SNAPSHOT_NAME: snapshot_name(journal),
        TAG_RELOCATION: journal.id,
    }


def volume_tags(source: Volume, journal: Journal, driver: DriverConfig) -> dict[str, str]:
    """The source volume's tags (the driver's ownership and extra tags, the StorageClass's tags) with
    the name, the PV name and the relocation marks made the new volume's own."""
    kept = {
        k: v
        for k, v in source.tags.items()
        if not k.startswith("aws:") and k not in (TAG_VOLUME_NAME, TAG_RELOCATION, TAG_SOURCE_VOLUME)
    }
    if TAG_PV_NAME in kept:
        kept[TAG_PV_NAME] = journal.new_pv
    return {
        **kept,
        **ownership_tags(driver),
        TAG_VOLUME_NAME: journal.new_pv,
        TAG_RELOCATION: journal.id,
        ANN_RELOCATED_FROM: source.volume_id,
    }


def restore_spec(source: Volume, snapshot_id: str, journal: Journal, driver: DriverConfig) -> VolumeSpec:
    """The new volume: the source's type, size, IOPS, throughput, encryption and KMS key, from the
    snapshot. IOPS and throughput are sent only for the types that take them (EC2 refuses them for
    gp2, st1, sc1 and standard)."""
    return VolumeSpec(
        name=journal.new_pv,
        size_gib=source.size_gib,
        volume_type=source.volume_type,
        iops=source.iops if source.volume_type in IOPS_TYPES else None,
        throughput=source.throughput if source.volume_type in THROUGHPUT_TYPES else None,
        encrypted=source.encrypted,
        kms_key_id=source.kms_key_id,
        multi_attach=source.multi_attach,
        snapshot_id=snapshot_id,
        tags=volume_tags(source, journal, driver),
    )


def describe_spec(spec: VolumeSpec) -> str:
    parts = [spec.volume_type, f"{spec.size_gib} GiB"]
    if spec.iops is not None:
        parts.append(f"{spec.iops} IOPS")
    if spec.throughput is not None:
        parts.append(f"{spec.throughput} MiB/s")
    parts.append(
        "encrypted" + (f" with {spec.kms_key_id}" if spec.kms_key_id else "")
        if spec.encrypted
        else "not encrypted"
    )
    if spec.multi_attach:
        parts.append("multi-attach")
    return ", ".join(parts)
