"""Doctor checks of volumes: claims at risk, pods stuck on volume affinity, PVs that disagree with EC2.

Why it exists: a Bound claim whose zone has lost every usable node looks healthy until its pod restarts;
a PV whose nodeAffinity names another zone than EC2 reports sends pods where the attach fails. These
checks find such volumes before they bite and name the exact way out (``zonal relocate`` when the data
must move, ``zonal translate`` for in-tree PVs, ``zonal explain pod`` for the details). Pure functions of
:class:`~provisioner.doctor.cluster.Cluster` and of what EC2 reported; nothing here reads or writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from provisioner.doctor import findings as F
from provisioner.doctor.cluster import Cluster, pod_name, tolerations_of
from provisioner.doctor.findings import Finding, obj
from provisioner.explain import facts
from provisioner.explain.pod import CONFLICT_MESSAGES
from provisioner.explain.report import PodReport, VolumeInfo
from provisioner.model import Volume
from provisioner.ports.kube import Obj
from provisioner.relocate.journal import journal_of
from provisioner.relocate.lease import lease_of
from provisioner.translate import IN_TREE_PROVISIONER

ExplainPod = Callable[[str, str], PodReport]


def pv_ref(pv: Obj) -> str:
    return obj("PersistentVolume", pv["metadata"]["name"])


def claim_of(pv: Obj) -> tuple[str, str] | None:
    ref = pv.get("spec", {}).get("claimRef") or {}
    if not ref.get("name"):
        return None
    return str(ref.get("namespace") or ""), str(ref["name"])


def relevant_pvs(cluster: Cluster, driver: str) -> list[tuple[Obj, VolumeInfo]]:
    """PVs of topology-aware drivers (and in-tree EBS PVs), with what pins them (no EC2 read here)."""
    aware = cluster.topology_drivers() | {driver, IN_TREE_PROVISIONER}
    nodes = list(cluster.nodes.values())
    return [(pv, facts.volume_info(pv, nodes, None)) for pv in cluster.pvs if facts.pv_driver(pv) in aware]


def check_volumes(cluster: Cluster, driver: str) -> list[Finding]:
    out: list[Finding] = []
    for pv, info in relevant_pvs(cluster, driver):
        name = pv["metadata"]["name"]
        journal = journal_of(pv)
        if journal is not None and not journal.finished:
            lease = lease_of(pv)
            held = (
                f" (its lease names {lease.holder}, last renewed "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(lease.renewed))}: if that process still "
                "runs, let it finish)"
                if lease is not None
                else ""
            )
            out.append(
                F.warning(
                    F.RELOCATION_UNFINISHED,
                    (pv_ref(pv), obj("PersistentVolumeClaim", journal.claim, journal.namespace)),
                    f"the relocation of {journal.claim_ref} from {journal.from_zone} to {journal.to_zone} "
                    f"stopped at {journal.where()}{held}",
                    f"zonal relocate pvc {journal.claim_ref} --resume (or --rollback to undo it)",
                )
            )
        if info.pinned_by == "zone-labels":
            out.append(
                F.warning(
                    F.IN_TREE_LABELS_ONLY,
                    (pv_ref(pv),),
                    f"PV {name} carries only in-tree zone labels ({', '.join(info.zones)}), no nodeAffinity: "
                    "with CSI migration its zone is checked on a key nodes without the EBS CSI node plugin "
                    "lack",
                    f"kubectl get pv {name} -o yaml > {name}.yaml && zonal translate pv {name}.yaml "
                    "(then recreate the PV from the output)",
                )
            )
        elif info.pinned_by == "none" and info.driver != IN_TREE_PROVISIONER:
            out.append(
                F.warning(
                    F.PV_NO_AFFINITY,
                    (pv_ref(pv),),
                    f"PV {name} of {info.driver} has no nodeAffinity: pods using it may land in any zone, "
                    "and the attach fails outside the volume's zone",
                    "recreate the PV with nodeAffinity on topology.kubernetes.io/zone (reclaimPolicy Retain "
                    "first)",
                )
            )
        risk = _at_risk(cluster, pv, info)
        if risk is not None:
            out.append(risk)
    return out


def _at_risk(cluster: Cluster, pv: Obj, info: VolumeInfo) -> Finding | None:
    """A Bound claim whose volume's zone(s) have no node its pods can run on."""
    ref = claim_of(pv)
    if ref is None or pv.get("status", {}).get("phase") != "Bound" or not info.zones:
        return None
    namespace, claim = ref
    if (namespace, claim) not in cluster.claims:
        return None
    pods = cluster.pods_using(namespace, claim)
    tolerations = tolerations_of(pods)
    satisfying = set(info.nodes_in_zone)
    usable = [
        n
        for zone in info.zones
        for n in cluster.usable_nodes(info.driver, zone, tolerations)
        if info.pinned_by != "nodeAffinity" or n in satisfying
    ]
    if usable:
        return None
    zones = ", ".join(info.zones)
    why = "; ".join(cluster.why_unusable(info.driver, z, tolerations) for z in info.zones)
    users = f"; used by pod(s) {', '.join(pod_name(p) for p in pods)}" if pods else ""
    targets = [
        z
        for z in sorted(cluster.zones())
        if z not in info.zones and cluster.usable_nodes(info.driver, z, tolerations)
    ]
    if targets:
        others = f" (or {', '.join(targets[1:])})" if len(targets) > 1 else ""
        remedy = (
            f"uncordon or add a node in {zones}, or move the data: zonal relocate pvc {namespace}/{claim} "
            f"--to-zone {targets[0]}{others} (scale its pods down first)"
        )
    else:
        remedy = f"uncordon or add a node running {info.driver} in {zones}"
    return F.error(
        F.CLAIM_AT_RISK,
        (obj("PersistentVolumeClaim", claim, namespace), pv_ref(pv)),
        f"claim {namespace}/{claim} is bound to PV {info.pv} in {zones}, where no node can run a pod "
        f"using it ({why}){users}",
        remedy,
    )


def check_pods(cluster: Cluster, explain: ExplainPod) -> list[Finding]:
    """Pods the scheduler reports with 'volume node affinity conflict', explained by ``zonal explain``."""
    out = []
    for pod in sorted(cluster.pods, key=pod_name):
        if pod.get("status", {}).get("phase", "Pending") != "Pending":
            continue
        message = next(
            (
                str(c.get("message") or "")
                for c in pod.get("status", {}).get("conditions") or ()
                if c.get("type") == "PodScheduled" and c.get("status") != "True"
            ),
            "",
        )
        if not any(m in message for m in CONFLICT_MESSAGES):
            continue
        namespace, name = str(pod["metadata"].get("namespace") or ""), str(pod["metadata"]["name"])
        report = explain(namespace, name)
        claims = [obj("PersistentVolumeClaim", v.claim, namespace) for v in report.volumes]
        out.append(
            F.error(
                F.POD_AFFINITY_CONFLICT,
                (obj("Pod", name, namespace), *claims),
                f"pod {namespace}/{name} is Pending with 'volume node affinity conflict': "
                f"{report.verdict.reason}",
                f"{report.verdict.action} (details: zonal explain pod {namespace}/{name})",
            )
        )
    return out


def check_ec2_volumes(cluster: Cluster, driver: str, volumes: Mapping[str, Volume]) -> list[Finding]:
    """PVs whose EBS volume EC2 does not have, or has in a zone the PV is not pinned to."""
    out = []
    for pv, info in relevant_pvs(cluster, driver):
        if not info.volume_id.startswith("vol-"):
            continue
        volume = volumes.get(info.volume_id)
        name = pv["metadata"]["name"]
        if volume is None:
            out.append(
                F.error(
                    F.PV_VOLUME_MISSING,
                    (pv_ref(pv),),
                    f"EC2 has no volume {info.volume_id}, which PV {name} names: its data is not reachable",
                    "restore the volume from a snapshot and recreate the PV with its id, or delete the PV "
                    "and its claim",
                )
            )
        elif info.zones and volume.zone not in info.zones:
            out.append(
                F.error(
                    F.PV_ZONE_MISMATCH,
                    (pv_ref(pv),),
                    f"PV {name} is pinned to {', '.join(info.zones)} but EC2 has volume {info.volume_id} in "
                    f"{volume.zone}: pods are sent where the attach fails",
                    f"recreate the PV object with nodeAffinity on {volume.zone} (kubectl patch pv {name} -p "
                    '\'{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}\' first)',
                )
            )
    return out


def volume_ids(cluster: Cluster, driver: str) -> list[str]:
    return sorted(
        {info.volume_id for _, info in relevant_pvs(cluster, driver) if info.volume_id.startswith("vol-")}
    )
