"""Doctor checks of the cluster's layout: StorageClasses, Nodes, CSINodes and zones.

Why it exists: a class that can only land where no node runs, a CSINode key the Node does not carry, a
zone where no schedulable node runs the driver — each makes a claim fail (or a pod get stuck) only later,
far from the cause. Each check here is a pure function of :class:`~provisioner.doctor.cluster.Cluster`
(and, for the node zone check, EC2's instances) returning :class:`~provisioner.doctor.findings.Finding`
values. Nothing here reads the cluster itself, writes or prints.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.doctor import findings as F
from provisioner.doctor.cluster import Cluster
from provisioner.doctor.findings import Finding, obj
from provisioner.explain import facts
from provisioner.model import ZONE_KEY, ZONE_KEYS, Instance
from provisioner.ports.kube import Obj
from provisioner.provisioning.claim_topology import binding_mode
from provisioner.topology.requirements import BINDING_IMMEDIATE
from provisioner.translate import IN_TREE_PROVISIONER


def topology_classes(cluster: Cluster, driver: str) -> list[tuple[str, Obj]]:
    """Classes of ``driver``, of any CSI driver registering topology keys, or of the in-tree plugin."""
    aware = cluster.topology_drivers() | {driver, IN_TREE_PROVISIONER}
    return [
        (name, sc)
        for name, sc in sorted(cluster.classes.items())
        if str(sc.get("provisioner") or "") in aware
    ]


def check_classes(cluster: Cluster, driver: str) -> list[Finding]:
    out: list[Finding] = []
    node_labels = [n.labels for n in cluster.node_states()]
    for name, sc in topology_classes(cluster, driver):
        provisioner = str(sc.get("provisioner") or "")
        ref = (obj("StorageClass", name),)
        immediate = binding_mode(sc) == BINDING_IMMEDIATE
        if immediate:
            out.append(
                F.warning(
                    F.IMMEDIATE_BINDING,
                    ref,
                    f"StorageClass {name} ({provisioner}) binds Immediate: each volume's zone is chosen "
                    "before any pod is scheduled, so a pod can end up unable to reach its volume",
                    f"recreate the class with volumeBindingMode: WaitForFirstConsumer (kubectl get sc {name} "
                    "-o yaml, edit, kubectl replace --force -f); existing volumes keep their zone",
                )
            )
        terms = facts.allowed_terms(sc)
        unknown_keys = sorted({k for t in terms for k in t if not any(k in labels for labels in node_labels)})
        for key in unknown_keys:
            out.append(
                F.error(
                    F.ALLOWED_KEY_UNKNOWN,
                    ref,
                    f"allowedTopologies of StorageClass {name} uses key {key}, which no Node carries: "
                    "no topology matches it, so its claims never provision (or land nowhere usable)",
                    f"use {ZONE_KEY} in allowedTopologies (zonal translate storageclass rewrites in-tree "
                    "classes)",
                )
            )
        for key in sorted({k for t in terms for k in t} - set(unknown_keys)):
            seen = {labels[key] for labels in node_labels if key in labels}
            missing = sorted({v for t in terms for v in t.get(key, ()) if v not in seen})
            if missing:
                out.append(
                    F.warning(
                        F.ALLOWED_VALUE_UNKNOWN,
                        ref,
                        f"allowedTopologies of StorageClass {name} allows {key} in {', '.join(missing)}, "
                        f"which no Node has (nodes have {', '.join(sorted(seen)) or 'none'})",
                        "drop those values, or add nodes there",
                    )
                )
        out += _class_zones(cluster, name, sc, provisioner, immediate)
    return out


def _class_zones(cluster: Cluster, name: str, sc: Obj, provisioner: str, immediate: bool) -> list[Finding]:
    allowed = sorted(
        {v for t in facts.allowed_terms(sc) for k, vs in t.items() if k in ZONE_KEYS for v in vs}
    )
    if not allowed:
        return []
    with_nodes = [z for z in allowed if cluster.usable_nodes(provisioner, z)]
    ref = (obj("StorageClass", name),)
    elsewhere = [z for z in sorted(cluster.zones()) if cluster.usable_nodes(provisioner, z)]
    if not with_nodes:
        return [
            F.error(
                F.CLASS_ZONES_WITHOUT_NODES,
                ref,
                f"StorageClass {name} only allows {', '.join(allowed)}, where no schedulable node runs "
                f"{provisioner}: its volumes can never be used by a pod",
                f"widen allowedTopologies to zones with nodes ({', '.join(elsewhere) or 'none'}), or add "
                "nodes in the allowed zones",
            )
        ]
    without = [z for z in allowed if z not in with_nodes]
    if immediate and without:
        return [
            F.warning(
                F.CLASS_ZONE_WITHOUT_NODES,
                ref,
                f"Immediate StorageClass {name} may create volumes in {', '.join(without)}, where no "
                f"schedulable node runs {provisioner}",
                f"restrict allowedTopologies to {', '.join(with_nodes)}, or use WaitForFirstConsumer",
            )
        ]
    return []


def check_nodes(cluster: Cluster, driver: str) -> list[Finding]:
    out: list[Finding] = []
    for name in sorted(cluster.csinodes):
        node = cluster.nodes.get(name)
        if node is None:
            continue
        labels = facts.labels_of(node)
        for entry in cluster.csinodes[name].get("spec", {}).get("drivers") or ():
            missing = [k for k in entry.get("topologyKeys") or () if k not in labels]
            if missing:
                out.append(
                    F.error(
                        F.CSINODE_KEY_NOT_LABELLED,
                        (obj("Node", name), obj("CSINode", name)),
                        f"CSINode {name} lists topology key(s) {', '.join(missing)} for driver "
                        f"{entry.get('name')}, but Node {name} has no such label: the stock "
                        "external-provisioner fails every WaitForFirstConsumer claim scheduled there",
                        "restart the driver's node plugin on the node so the kubelet labels it (or: kubectl "
                        f"label node {name} " + " ".join(f"{k}=<value>" for k in missing) + ")",
                    )
                )
    for state in cluster.node_states():
        if not state.zone:
            out.append(
                F.warning(
                    F.NODE_WITHOUT_ZONE,
                    (obj("Node", state.name),),
                    f"Node {state.name} has no zone label ({ZONE_KEY}): zonal volumes cannot be placed for "
                    "pods there, and in-tree PVs never match it",
                    f"kubectl label node {state.name} {ZONE_KEY}=<its zone> (normally the cloud controller "
                    "manager sets it)",
                )
            )
    out += _driver_zones(cluster, driver)
    return out


def _driver_zones(cluster: Cluster, driver: str) -> list[Finding]:
    if not cluster.nodes:
        return []
    if not cluster.driver_nodes(driver):
        return [
            F.warning(
                F.DRIVER_NOT_INSTALLED,
                (obj("CSIDriver", driver),),
                f"no CSINode lists driver {driver}: no node can mount its volumes",
                "deploy the node plugin (kubectl apply -k deploy/), or pass --driver with the name it runs "
                "under",
            )
        ]
    out = []
    for zone in sorted(cluster.zones()):
        if not cluster.usable_nodes(driver, zone):
            out.append(
                F.warning(
                    F.ZONE_WITHOUT_DRIVER,
                    tuple(obj("Node", n.name) for n in cluster.node_states() if n.zone == zone),
                    f"no schedulable node in {zone} runs {driver} ({cluster.why_unusable(driver, zone)}): "
                    f"pods placed in {zone} cannot use its volumes",
                    f"run the node plugin on the nodes of {zone} and uncordon one (kubectl uncordon NODE)",
                )
            )
    return out


def instance_ids(cluster: Cluster, driver: str) -> dict[str, str]:
    """Node name → EC2 instance id: the driver's CSINode nodeID, else the Node's ``aws:///zone/i-…``."""
    out: dict[str, str] = {}
    for name, node in cluster.nodes.items():
        csinode = cluster.csinodes.get(name, {})
        entry = next(
            (d for d in csinode.get("spec", {}).get("drivers") or () if d.get("name") == driver), None
        )
        node_id = str((entry or {}).get("nodeID") or "")
        if not node_id.startswith("i-"):
            provider = str(node.get("spec", {}).get("providerID") or "")
            node_id = provider.rsplit("/", 1)[-1] if provider.startswith("aws://") else ""
        if node_id.startswith("i-"):
            out[name] = node_id
    return out


def check_node_instances(
    cluster: Cluster, ids: Mapping[str, str], instances: Mapping[str, Instance]
) -> list[Finding]:
    out = []
    for state in cluster.node_states():
        instance = instances.get(ids.get(state.name, ""))
        if instance is None or not state.zone or not instance.zone or instance.zone == state.zone:
            continue
        out.append(
            F.error(
                F.NODE_ZONE_MISMATCH,
                (obj("Node", state.name),),
                f"Node {state.name} is labelled {state.zone} but EC2 runs its instance "
                f"{instance.instance_id} in {instance.zone}: pods are placed by the label and volumes "
                "attach by the instance, so attaches fail",
                f"kubectl label node {state.name} {ZONE_KEY}={instance.zone} --overwrite, and fix what set "
                "the wrong label",
            )
        )
    return out
