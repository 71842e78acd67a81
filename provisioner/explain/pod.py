"""``explain_pod``: why a Pending pod cannot be placed because of its volumes' zones, and what to do.

Why it exists: "0/3 nodes are available: 3 node(s) had volume node affinity conflict" names neither the
volume nor the zone. This core lists, for each PersistentVolumeClaim volume of the pod, the PV that pins
it and to which zone(s) (nodeAffinity, or only in-tree zone labels), the schedulable nodes that satisfy
EVERY volume, and the usual causes with an action: Immediate binding in a zone without nodes, a
StorageClass key the driver does not report, an in-tree PV with only zone labels, volumes in different
zones, every node of the volume's zone tainted against the pod. It reads through the ports only; it
never writes and never prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from provisioner.errors import NotFound
from provisioner.explain import facts
from provisioner.explain.report import (
    CONFLICT,
    IN_TREE_LABELS_ONLY,
    MISSING_CLAIM,
    OK,
    PENDING,
    UNKNOWN_KEY,
    ClassInfo,
    PodReport,
    PodVolume,
    Verdict,
)
from provisioner.model import EBS_ZONE_KEY
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind, KubeApi, KubeNotFound, Obj
from provisioner.provisioning.claim_topology import build_cluster_view
from provisioner.topology.requirements import BINDING_IMMEDIATE, BINDING_WFFC, ClusterView

CONFLICT_MESSAGES = ("volume node affinity conflict", "had volume node affinity conflict")


def explain_pod(
    kube: KubeApi,
    namespace: str,
    name: str,
    driver_name: str | None = None,
    cloud: Cloud | None = None,
) -> PodReport:
    """The report for pod ``namespace/name``. Raises NotFound when the pod does not exist."""
    try:
        pod = kube.get(Kind.POD, name, namespace)
    except KubeNotFound as e:
        raise NotFound(f'pod "{namespace}/{name}" not found') from e
    spec, status = pod.get("spec", {}), pod.get("status", {})
    message = _scheduling_message(pod)
    nodes = list(kube.list(Kind.NODE).items)
    node_map = facts.by_name(nodes)
    csinodes = list(kube.list(Kind.CSINODE).items)
    report = PodReport(
        namespace=namespace,
        name=name,
        phase=str(status.get("phase") or "Pending"),
        verdict=Verdict(OK, "", ""),
        node_name=str(spec.get("nodeName") or ""),
        scheduling_message=message,
        volume_affinity_conflict=any(m in message for m in CONFLICT_MESSAGES),
    )
    schedulable = [n for n in nodes if facts.schedulable(n)[0]]
    candidates = {n["metadata"]["name"] for n in schedulable}
    selector = {str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()}
    if selector:
        matching = {n["metadata"]["name"] for n in schedulable if _matches(selector, facts.labels_of(n))}
        if matching != candidates:
            report.notes.append(f"the pod's nodeSelector {selector} leaves {sorted(matching) or 'no node'}")
        candidates &= matching
    # The scheduler's TaintToleration filter; a pod already on a node stays despite later taints.
    tainted: dict[str, list[str]] = {}
    if not report.node_name:
        tolerations = list(spec.get("tolerations") or ())
        for node in schedulable:
            left = facts.untolerated_taints(node, tolerations)
            if left:
                tainted[node["metadata"]["name"]] = left
        kept_off = sorted(set(tainted) & candidates)
        if kept_off:
            report.notes.append(f"taints the pod does not tolerate keep it off {_taints(kept_off, tainted)}")
        candidates -= set(tainted)
    for volume in spec.get("volumes") or ():
        source = volume.get("persistentVolumeClaim")
        if not source:
            continue
        pv_vol = PodVolume(volume=str(volume.get("name") or ""), claim=str(source.get("claimName") or ""))
        _inspect(kube, namespace, pv_vol, nodes, csinodes, driver_name, cloud, tainted)
        if pv_vol.pv is not None:
            candidates &= set(pv_vol.satisfying_nodes)
        report.volumes.append(pv_vol)
    report.candidate_nodes = sorted(candidates)
    classes = [
        v.storage_class for v in report.volumes if v.storage_class is not None and v.storage_class.found
    ]
    driver = driver_name or next((c.provisioner for c in classes if c.provisioner), "")
    view = build_cluster_view(nodes, csinodes, driver)
    report.nodes = [facts.node_info(n, node_map, view) for n in sorted(node_map)]
    report.verdict = _verdict(report)
    return report


def _scheduling_message(pod: Obj) -> str:
    for cond in pod.get("status", {}).get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") != "True":
            return str(cond.get("message") or cond.get("reason") or "")
    return ""


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _inspect(
    kube: KubeApi,
    namespace: str,
    vol: PodVolume,
    nodes: Sequence[Obj],
    csinodes: Sequence[Obj],
    driver_name: str | None,
    cloud: Cloud | None,
    tainted: Mapping[str, list[str]],
) -> None:
    """Fill in one volume: its claim, class, PV, the nodes that satisfy it, and what is wrong."""
    try:
        claim = kube.get(Kind.CLAIM, vol.claim, namespace)
    except KubeNotFound:
        vol.causes.append(
            Verdict(
                MISSING_CLAIM,
                f"claim {vol.claim} does not exist",
                "create the claim (or fix the pod's claimName)",
            )
        )
        return
    vol.claim_phase = str(claim.get("status", {}).get("phase") or "Pending")
    sc_name = str(claim.get("spec", {}).get("storageClassName") or "")
    sc = _get(kube, Kind.STORAGE_CLASS, sc_name) if sc_name else None
    driver = driver_name or (str(sc.get("provisioner") or "") if sc else "")
    view = build_cluster_view(nodes, csinodes, driver)
    if sc_name:
        vol.storage_class = facts.class_info(sc_name, sc, view)
    pv, pv_name = facts.find_pv(kube, claim)
    if pv is None:
        _unbound(vol, namespace, pv_name, view, driver)
        return
    info = facts.volume_info(pv, nodes, cloud)
    vol.pv = info
    vol.satisfying_nodes = list(info.nodes_in_zone)
    zones = ", ".join(info.zones) or "no zone"
    if info.pinned_by == "zone-labels":
        vol.causes.append(
            Verdict(
                IN_TREE_LABELS_ONLY,
                f"PV {info.pv} was created by the in-tree plugin and has only zone labels ({zones}); with "
                f"CSI migration its affinity is on {EBS_ZONE_KEY}, which nodes without the EBS CSI node "
                "plugin do not carry",
                "zonal translate pv: recreate the PV with nodeAffinity on topology.kubernetes.io/zone",
            )
        )
    if vol.storage_class is not None and vol.storage_class.unknown_keys:
        vol.causes.append(_unknown_key(vol.storage_class, driver, view))
    if facts.is_known_zone(info.ebs_zone) and info.zones and info.ebs_zone not in info.zones:
        vol.causes.append(
            Verdict(
                CONFLICT,
                f"PV {info.pv} is pinned to {zones} but EBS volume {info.volume_id} is in {info.ebs_zone}",
                f"recreate the PV object with its affinity on {info.ebs_zone} (reclaimPolicy Retain first)",
            )
        )
    if not info.nodes_in_zone:
        immediate = vol.storage_class is not None and vol.storage_class.binding_mode == BINDING_IMMEDIATE
        if immediate:
            reason = (
                f"Immediate binding created the volume in {zones} before any pod was scheduled, and no "
                f"schedulable node is in {zones}"
            )
            action = (
                f"add or uncordon a node in {zones} (or move the data to a zone with nodes: zonal relocate "
                f"pvc {namespace}/{vol.claim} --to-zone ZONE); use volumeBindingMode: WaitForFirstConsumer "
                "for new claims"
            )
        else:
            reason = f"no schedulable node is in {zones}, where PV {info.pv} is pinned"
            action = (
                f"add or uncordon a node in {zones}, or move the data: zonal relocate pvc "
                f"{namespace}/{vol.claim} --to-zone ZONE"
            )
        vol.causes.append(Verdict(CONFLICT, reason, action))
    elif all(n in tainted for n in info.nodes_in_zone):
        vol.causes.append(
            Verdict(
                CONFLICT,
                f"every schedulable node in {zones}, where PV {info.pv} is pinned, has a taint the pod "
                f"does not tolerate: {_taints(info.nodes_in_zone, tainted)}",
                f"give the pod a matching toleration, remove the taint, or add an untainted node in {zones}",
            )
        )


def _taints(names: Sequence[str], tainted: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{n} ({', '.join(tainted[n])})" for n in names)


def _unbound(vol: PodVolume, namespace: str, pv_name: str, view: ClusterView, driver: str) -> None:
    sc = vol.storage_class
    if pv_name:
        vol.causes.append(
            Verdict(PENDING, f"claim {vol.claim} is bound to PV {pv_name}, which does not exist", "")
        )
    elif sc is not None and sc.unknown_keys:
        vol.causes.append(_unknown_key(sc, driver, view))
    elif sc is None or sc.binding_mode != BINDING_WFFC:
        vol.causes.append(
            Verdict(
                PENDING,
                f"claim {vol.claim} is not bound yet (the pod waits for unbound immediate claims)",
                f"zonal explain pvc {namespace}/{vol.claim}",
            )
        )


def _get(kube: KubeApi, kind: Kind, name: str) -> Obj | None:
    try:
        return kube.get(kind, name)
    except KubeNotFound:
        return None


def _unknown_key(sc: ClassInfo, driver: str, view: ClusterView) -> Verdict:
    reported = sorted(facts.driver_keys(view))
    return Verdict(
        UNKNOWN_KEY,
        f"StorageClass {sc.name} uses key(s) {', '.join(sc.unknown_keys)} that no CSINode of driver "
        f"{driver} reports (reported: {', '.join(reported) or 'none'})",
        "use topology.kubernetes.io/zone in allowedTopologies (zonal translate storageclass)",
    )


def _verdict(report: PodReport) -> Verdict:
    claims = report.volumes
    if not claims:
        return Verdict(
            OK, "the pod uses no PersistentVolumeClaims", "look elsewhere: its volumes do not pin it"
        )
    causes = [c for v in claims for c in v.causes]
    if report.node_name and not causes:
        return Verdict(OK, f"scheduled on {report.node_name}", "nothing to do")
    if not report.candidate_nodes:
        specific = next((c for c in causes if c.code in (IN_TREE_LABELS_ONLY, UNKNOWN_KEY)), None)
        conflict = next((c for c in causes if c.code == CONFLICT), None)
        if conflict is not None:
            return conflict
        if specific is not None:
            return specific
        pinned = [f"{v.claim} → {', '.join(v.pv.zones)}" for v in claims if v.pv is not None and v.pv.zones]
        return Verdict(
            CONFLICT,
            "no schedulable node satisfies every volume"
            + (
                f": the volumes are pinned to different zones ({'; '.join(pinned)})"
                if len(pinned) > 1
                else ""
            ),
            "keep a pod's volumes in one zone: move one of them into the other's zone (zonal relocate pvc); "
            "WaitForFirstConsumer places new claims of one pod together",
        )
    if causes:
        return causes[0]
    return Verdict(
        OK,
        f"{len(report.candidate_nodes)} node(s) satisfy every volume: {', '.join(report.candidate_nodes)}",
        "if the pod is still Pending, the cause is not its volumes' zones (resources, taints, selectors)",
    )
