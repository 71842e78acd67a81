"""Clone protection: a claim used as a clone source keeps a finalizer while a clone of it is pending.

Why it exists: the sidecar adds ``provisioner.storage.kubernetes.io/cloning-protection`` to the SOURCE
claim before CreateVolume, so the source (and its volume) cannot vanish mid-clone; its
CloningProtectionController removes the finalizer once the source is being deleted and no claim in the
namespace that clones it is still Pending. Both provisioners use the same finalizer, so either can
release what the other set. This module only reads and writes claims through the KubeApi port; it never
calls the driver and decides nothing about provisioning.
"""

from __future__ import annotations

from provisioner.ports.kube import Kind, KubeApi, KubeConflict, KubeNotFound, Obj
from provisioner.provisioning.request import clone_source_name

CLONE_FINALIZER = "provisioner.storage.kubernetes.io/cloning-protection"
_ATTEMPTS = 3


def has_finalizer(obj: Obj, finalizer: str) -> bool:
    return finalizer in (obj.get("metadata", {}).get("finalizers") or ())


def add_clone_finalizer(kube: KubeApi, namespace: str, name: str) -> None:
    """Put the finalizer on the source claim (no write when it is there). Raises KubeError."""
    for attempt in range(_ATTEMPTS):
        current = kube.get(Kind.CLAIM, name, namespace)
        if has_finalizer(current, CLONE_FINALIZER):
            return
        current["metadata"]["finalizers"] = [*(current["metadata"].get("finalizers") or ()), CLONE_FINALIZER]
        try:
            kube.replace(Kind.CLAIM, current)
            return
        except KubeConflict:
            if attempt == _ATTEMPTS - 1:
                raise


def remove_clone_finalizer(kube: KubeApi, namespace: str, name: str) -> None:
    """Take the finalizer off (a claim already gone is fine). Raises KubeError."""
    for attempt in range(_ATTEMPTS):
        try:
            current = kube.get(Kind.CLAIM, name, namespace)
            if not has_finalizer(current, CLONE_FINALIZER):
                return
            current["metadata"]["finalizers"] = [
                f for f in current["metadata"]["finalizers"] if f != CLONE_FINALIZER
            ]
            kube.replace(Kind.CLAIM, current)
            return
        except KubeNotFound:
            return
        except KubeConflict:
            if attempt == _ATTEMPTS - 1:
                raise


def pending_clones(source: Obj, claims: list[Obj]) -> list[str]:
    """Names of the claims in the source's namespace that clone it and are still Pending (sorted)."""
    meta = source["metadata"]
    namespace, name = meta.get("namespace", ""), meta["name"]
    return sorted(
        c["metadata"]["name"]
        for c in claims
        if c["metadata"].get("namespace", "") == namespace
        and clone_source_name(c) == name
        # Sidecar: only the Pending phase means "cloning in progress".
        and (c.get("status") or {}).get("phase", "Pending") == "Pending"
    )
