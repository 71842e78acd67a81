"""The glue between a claim, its StorageClass and the cluster, and the pure requirements function.

Why it exists: the provisioner loop (:class:`~provisioner.provisioning.core.ProvisionerCore`) and
``zonal explain`` must feed :func:`~provisioner.topology.requirements.accessibility_requirements` the very
same inputs, so the decision explain shows is the decision the loop makes. These functions only reshape
API-shaped dicts; they never read the cluster themselves and never call the driver.
"""

from __future__ import annotations

from collections.abc import Iterable

from provisioner.ports.kube import Obj
from provisioner.provisioning.request import annotations_of
from provisioner.provisioning.settings import ANN_SELECTED_NODE, ProvisionerConfig
from provisioner.topology.requirements import (
    BINDING_IMMEDIATE,
    ClaimTopologyInput,
    ClusterView,
    selector_terms_from_k8s,
)


def binding_mode(storage_class: Obj) -> str:
    """The class's ``volumeBindingMode``; the API server defaults an absent one to Immediate."""
    return str(storage_class.get("volumeBindingMode") or BINDING_IMMEDIATE)


def selected_node(claim: Obj) -> str:
    """The node the scheduler chose for the claim (WaitForFirstConsumer), or ""."""
    return annotations_of(claim).get(ANN_SELECTED_NODE, "")


def build_cluster_view(nodes: Iterable[Obj], csinodes: Iterable[Obj], driver: str) -> ClusterView:
    """Nodes' labels and, per CSINode, the topology keys it lists for ``driver`` (None: driver absent)."""
    labels = {n["metadata"]["name"]: dict(n["metadata"].get("labels") or {}) for n in nodes}
    keys: dict[str, tuple[str, ...] | None] = {}
    for csinode in csinodes:
        entry = next(
            (d for d in csinode.get("spec", {}).get("drivers") or () if d.get("name") == driver),
            None,
        )
        keys[csinode["metadata"]["name"]] = None if entry is None else tuple(entry.get("topologyKeys") or ())
    return ClusterView(labels, keys)


def claim_topology_input(claim: Obj, storage_class: Obj, config: ProvisionerConfig) -> ClaimTopologyInput:
    """Everything about ``claim`` and its class that the requirements decision depends on."""
    return ClaimTopologyInput(
        claim_name=claim["metadata"]["name"],
        binding_mode=binding_mode(storage_class),
        allowed_topologies=selector_terms_from_k8s(storage_class.get("allowedTopologies")),
        selected_node=selected_node(claim),
        strict_topology=config.strict_topology,
        immediate_topology=config.immediate_topology,
    )
