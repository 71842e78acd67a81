"""What a relocation must know about the cluster before and between its steps, read through the ports.

Why it exists: "no pod uses the claim", "the volume is attached nowhere", "the target zone has a node that
can run the pod" and "is a relocation of this claim already under way" are asked before the plan and
again right before the irreversible-looking steps (the snapshot that fixes the data, the claim's
deletion). One module answers them, with explain's facts for nodes and zones. It only reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.errors import NotFound
from provisioner.explain import facts
from provisioner.model import Volume
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind, KubeApi, KubeNotFound, Obj
from provisioner.provisioning.claim_topology import build_cluster_view
from provisioner.relocate.journal import Journal, journal_of

FINISHED_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Found:
    pv: Obj
    journal: Journal


def find_journal(kube: KubeApi, namespace: str, name: str) -> Found | None:
    """The relocation of claim ``namespace/name`` under way (a journal not finished), else the latest
    finished one, else None. A journal under way wins over a finished one on another PV."""
    unfinished: list[Found] = []
    finished: list[Found] = []
    for pv in kube.list(Kind.PV).items:
        journal = journal_of(pv)
        if journal is None or journal.namespace != namespace or journal.claim != name:
            continue
        (finished if journal.finished else unfinished).append(Found(pv, journal))
    if unfinished:
        return max(unfinished, key=lambda f: f.journal.started_at)
    if finished:
        return max(finished, key=lambda f: f.journal.started_at)
    return None


def get_or_none(kube: KubeApi, kind: Kind, name: str, namespace: str = "") -> Obj | None:
    try:
        return kube.get(kind, name, namespace)
    except KubeNotFound:
        return None


def pods_using(kube: KubeApi, namespace: str, claim: str) -> list[Obj]:
    """Pods of the namespace, not finished, whose volumes name the claim."""
    out = []
    for pod in kube.list(Kind.POD, namespace).items:
        if pod.get("status", {}).get("phase") in FINISHED_PHASES:
            continue
        if any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == claim
            for v in pod.get("spec", {}).get("volumes") or ()
        ):
            out.append(pod)
    return out


def describe_users(namespace: str, pods: list[Obj]) -> str:
    """``web-0 (StatefulSet web)``…, and the command that stops them."""
    names = []
    owners: list[tuple[str, str]] = []
    for pod in pods:
        refs = pod["metadata"].get("ownerReferences") or ()
        owner = next(((str(r.get("kind")), str(r.get("name"))) for r in refs if r.get("controller")), None)
        owner = owner or next(((str(r.get("kind")), str(r.get("name"))) for r in refs), None)
        names.append(f"{pod['metadata']['name']}" + (f" ({owner[0]} {owner[1]})" if owner else ""))
        if owner and owner not in owners:
            owners.append(owner)
    how = "; ".join(
        f"kubectl scale {kind.lower()} {name} -n {namespace} --replicas=0"
        if kind in ("StatefulSet", "Deployment", "ReplicaSet")
        else f"stop {kind} {name}"
        for kind, name in owners
    )
    return ", ".join(names) + (f"; stop them first: {how}" if how else "; delete them first")


def attachments(kube: KubeApi, pv_name: str) -> list[str]:
    """Nodes a VolumeAttachment attaches the PV to."""
    return sorted(
        str(va.get("spec", {}).get("nodeName") or "?")
        for va in kube.list(Kind.VOLUME_ATTACHMENT).items
        if (va.get("spec", {}).get("source") or {}).get("persistentVolumeName") == pv_name
    )


def ec2_attachments(volume: Volume) -> list[str]:
    return sorted(a.instance_id for a in volume.attachments if a.state != "detached")


def in_use(kube: KubeApi, cloud: Cloud, namespace: str, claim: str, pv_name: str, volume_id: str) -> str:
    """Why the volume's data may still change (pods, attachments), or "" when it is at rest."""
    pods = pods_using(kube, namespace, claim) if claim else []
    if pods:
        return f"pod(s) use claim {namespace}/{claim}: {describe_users(namespace, pods)}"
    nodes = attachments(kube, pv_name) if pv_name else []
    if nodes:
        return f"PV {pv_name} is still attached to node(s) {', '.join(nodes)} (VolumeAttachment)"
    if volume_id:
        try:
            volume = cloud.get_volume(volume_id)
        except NotFound:
            return ""
        instances = ec2_attachments(volume)
        if instances:
            return f"EBS volume {volume_id} is attached to instance(s) {', '.join(instances)}"
    return ""


def usable_nodes(kube: KubeApi, driver: str, zone: str) -> tuple[list[str], list[str]]:
    """(schedulable nodes in ``zone`` whose CSINode lists ``driver``, why each other node there is not)."""
    nodes = kube.list(Kind.NODE).items
    view = build_cluster_view(nodes, kube.list(Kind.CSINODE).items, driver)
    running = view.driver_keys()
    ok, why_not = [], []
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        name = str(node["metadata"]["name"])
        if facts.node_zone(facts.labels_of(node)) != zone:
            continue
        schedulable, why = facts.schedulable(node)
        if not schedulable:
            why_not.append(f"{name} {why}")
        elif name not in running:
            why_not.append(f"{name} does not run {driver}")
        else:
            ok.append(name)
    return ok, why_not
