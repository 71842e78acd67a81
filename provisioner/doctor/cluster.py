"""The cluster as ``zonal doctor`` reads it: every object listed once, and the questions checks ask of it.

Why it exists: a cluster-wide check must not issue one API call per object, and every check must answer
"which nodes can run a pod of this driver in this zone" the same way. This reads Nodes, CSINodes,
StorageClasses, PersistentVolumes, claims and Pods once through the KubeApi port and answers with
explain's facts (:mod:`provisioner.explain.facts`: zones, schedulability, taints) and the provisioner's
cluster view (:func:`~provisioner.provisioning.claim_topology.build_cluster_view`). It never writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provisioner.explain import facts
from provisioner.ports.kube import Kind, KubeApi, Obj
from provisioner.provisioning.claim_topology import build_cluster_view
from provisioner.topology.requirements import ClusterView
from provisioner.translate import IN_TREE_PROVISIONER

# Pod phases whose pods no longer hold their volumes.
FINISHED_PHASES = ("Succeeded", "Failed")


@dataclass
class NodeState:
    """One node as the checks see it: zone, whether new pods land there and why not."""

    name: str
    zone: str
    schedulable: bool
    why_not: str
    labels: dict[str, str]
    obj: Obj


@dataclass
class Cluster:
    nodes: dict[str, Obj]
    csinodes: dict[str, Obj]
    classes: dict[str, Obj]
    pvs: list[Obj]
    claims: dict[tuple[str, str], Obj]
    pods: list[Obj]
    _views: dict[str, ClusterView] = field(default_factory=dict)

    @classmethod
    def read(cls, kube: KubeApi) -> Cluster:
        claims = {
            (str(c["metadata"].get("namespace") or ""), str(c["metadata"]["name"])): c
            for c in kube.list(Kind.CLAIM).items
        }
        return cls(
            nodes=facts.by_name(kube.list(Kind.NODE).items),
            csinodes=facts.by_name(kube.list(Kind.CSINODE).items),
            classes=facts.by_name(kube.list(Kind.STORAGE_CLASS).items),
            pvs=sorted(kube.list(Kind.PV).items, key=lambda p: str(p["metadata"]["name"])),
            claims=claims,
            pods=list(kube.list(Kind.POD).items),
        )

    def counts(self) -> dict[str, int]:
        return {
            "nodes": len(self.nodes),
            "csinodes": len(self.csinodes),
            "storageclasses": len(self.classes),
            "persistentvolumes": len(self.pvs),
            "persistentvolumeclaims": len(self.claims),
            "pods": len(self.pods),
        }

    # --- nodes and drivers --------------------------------------------------------------------------------

    def view(self, driver: str) -> ClusterView:
        if driver not in self._views:
            self._views[driver] = build_cluster_view(self.nodes.values(), self.csinodes.values(), driver)
        return self._views[driver]

    def driver_nodes(self, driver: str) -> set[str]:
        """Nodes whose CSINode lists ``driver``; every node for the in-tree plugin (no CSINode entry)."""
        if driver == IN_TREE_PROVISIONER:
            return set(self.nodes)
        return set(self.view(driver).driver_keys()) & set(self.nodes)

    def topology_drivers(self) -> set[str]:
        """CSI drivers that some CSINode registers with topology keys (topology-aware drivers)."""
        found: set[str] = set()
        for csinode in self.csinodes.values():
            for entry in csinode.get("spec", {}).get("drivers") or ():
                if entry.get("topologyKeys"):
                    found.add(str(entry.get("name") or ""))
        return found

    def node_states(self) -> list[NodeState]:
        out = []
        for name in sorted(self.nodes):
            node = self.nodes[name]
            labels = facts.labels_of(node)
            ok, why = facts.schedulable(node)
            out.append(NodeState(name, facts.node_zone(labels), ok, why, labels, node))
        return out

    def zones(self) -> set[str]:
        return {n.zone for n in self.node_states() if n.zone}

    def usable_nodes(
        self, driver: str, zone: str, tolerations: Sequence[Sequence[Mapping[str, Any]]] = ()
    ) -> list[str]:
        """Schedulable nodes in ``zone`` running ``driver`` whose hard taints every toleration list allows."""
        running = self.driver_nodes(driver)
        return [
            n.name
            for n in self.node_states()
            if n.zone == zone
            and n.schedulable
            and n.name in running
            and not any(facts.untolerated_taints(n.obj, t) for t in tolerations)
        ]

    def why_unusable(
        self, driver: str, zone: str, tolerations: Sequence[Sequence[Mapping[str, Any]]] = ()
    ) -> str:
        """Why no node of ``zone`` can run the pods: each node with its reason, or that there is none."""
        running = self.driver_nodes(driver)
        reasons = []
        for n in self.node_states():
            if n.zone != zone:
                continue
            if not n.schedulable:
                reasons.append(f"{n.name} {n.why_not}")
            elif n.name not in running:
                reasons.append(f"{n.name} does not run driver {driver} (no CSINode entry)")
            else:
                taints = sorted({t for tol in tolerations for t in facts.untolerated_taints(n.obj, tol)})
                if taints:
                    reasons.append(f"{n.name} has taints the pods do not tolerate ({', '.join(taints)})")
        if not reasons:
            return f"no node is in {zone}"
        return "; ".join(reasons)

    # --- claims and pods ----------------------------------------------------------------------------------

    def pods_using(self, namespace: str, claim: str) -> list[Obj]:
        """Pods not yet finished whose volumes name the claim."""
        out = []
        for pod in self.pods:
            if str(pod["metadata"].get("namespace") or "") != namespace:
                continue
            if pod.get("status", {}).get("phase") in FINISHED_PHASES:
                continue
            for volume in pod.get("spec", {}).get("volumes") or ():
                if (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim:
                    out.append(pod)
                    break
        return out


def tolerations_of(pods: Sequence[Obj]) -> list[list[Mapping[str, Any]]]:
    return [list(p.get("spec", {}).get("tolerations") or ()) for p in pods]


def pod_name(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace') or ''}/{meta['name']}"
