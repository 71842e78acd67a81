"""CreateVolume's answer → the PersistentVolume object, shaped as the external-provisioner writes it.

Why it exists: the PV is the contract with the scheduler (nodeAffinity), the attacher (spec.csi) and the
other provisioner (annotations, finalizer), so its shape is fixed in one pure function. It builds a dict;
it never writes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from provisioner.model import ZONE_KEYS, Segment, TopologyRequirement
from provisioner.ports.csi import CreatedVolume
from provisioner.ports.kube import Obj
from provisioner.provisioning.quantity import format_bytes
from provisioner.provisioning.request import Prepared
from provisioner.provisioning.settings import (
    ANN_DELETION_SECRET_NAME,
    ANN_DELETION_SECRET_NAMESPACE,
    ANN_PROVISIONED_BY,
    ANN_REQUIREMENTS,
    FINALIZER,
    PROVISIONER_ID_KEY,
)
from provisioner.topology.affinity import volume_node_affinity

LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_REGION = "topology.kubernetes.io/region"
REGION_KEYS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")


def zone_labels(accessible: Sequence[Segment]) -> dict[str, str]:
    """Legacy zone/region labels for clusters that still check them (zones joined by ``__``)."""
    zones = sorted({seg[k] for seg in accessible for k in ZONE_KEYS if k in seg})
    if not zones:
        return {}
    regions = sorted({seg[k] for seg in accessible for k in REGION_KEYS if k in seg})
    if not regions:
        # An AWS zone name is its region plus a letter (us-east-1a → us-east-1).
        regions = sorted({z.rstrip("abcdefghijklmnopqrstuvwxyz") for z in zones})
    return {LABEL_ZONE: "__".join(zones), LABEL_REGION: "__".join(regions)}


def build_pv(
    prepared: Prepared,
    claim: Obj,
    storage_class: Obj,
    created: CreatedVolume,
    *,
    driver: str,
    identity: str,
    capacity_bytes: int,
    with_zone_labels: bool = False,
    read_only: bool = False,
    requirement: TopologyRequirement | None = None,
) -> Obj:
    meta = claim["metadata"]
    spec = claim.get("spec", {})
    csi: dict[str, Any] = {
        "driver": driver,
        "volumeHandle": created.volume_id,
        "volumeAttributes": {PROVISIONER_ID_KEY: identity, **dict(created.volume_context)},
    }
    if read_only:
        csi["readOnly"] = True
    if not prepared.block and prepared.fs_type:
        csi["fsType"] = prepared.fs_type
    csi.update(prepared.pv_secret_refs)
    pv_spec: dict[str, Any] = {
        "accessModes": list(spec.get("accessModes") or ()),
        "capacity": {"storage": format_bytes(capacity_bytes)},
        "csi": csi,
        "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
        "storageClassName": storage_class["metadata"]["name"],
        "claimRef": {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": meta.get("namespace", ""),
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
    }
    if storage_class.get("mountOptions"):
        pv_spec["mountOptions"] = list(storage_class["mountOptions"])
    if spec.get("volumeMode"):
        pv_spec["volumeMode"] = spec["volumeMode"]
    affinity = volume_node_affinity(created.accessible_topology)
    if affinity:
        pv_spec["nodeAffinity"] = affinity
    name, namespace = prepared.deletion_secret
    metadata: dict[str, Any] = {
        "name": prepared.pv_name,
        "annotations": {
            ANN_PROVISIONED_BY: driver,
            ANN_DELETION_SECRET_NAME: name,
            ANN_DELETION_SECRET_NAMESPACE: namespace,
        },
        # Lets this loop and the sidecar hand PVs over to each other: whoever runs removes it after cleanup.
        "finalizers": [FINALIZER],
    }
    if requirement is not None:
        metadata["annotations"][ANN_REQUIREMENTS] = encode_requirement(requirement)
    if with_zone_labels:
        labels = zone_labels(created.accessible_topology)
        if labels:
            metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": metadata, "spec": pv_spec}


def encode_requirement(requirement: TopologyRequirement) -> str:
    """The requirement as compact, stable JSON for the PV annotation."""
    return json.dumps(
        {
            "requisite": [dict(sorted(s.items())) for s in requirement.requisite],
            "preferred": [dict(sorted(s.items())) for s in requirement.preferred],
        },
        separators=(",", ":"),
    )


def decode_requirement(text: str) -> TopologyRequirement | None:
    """The requirement recorded by :func:`encode_requirement`, or None if the text is not one."""
    try:
        data = json.loads(text)
        requisite = tuple({str(k): str(v) for k, v in s.items()} for s in data.get("requisite", []))
        preferred = tuple({str(k): str(v) for k, v in s.items()} for s in data.get("preferred", []))
    except (ValueError, AttributeError, TypeError):
        return None
    return TopologyRequirement(requisite=requisite, preferred=preferred)
