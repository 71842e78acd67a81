"""``explain_pvc``: why a claim's volume is (or will be) in the zone it is in, and whether that is a problem.

Why it exists: users see "volume node affinity conflict" and cannot tell which of the StorageClass, the
scheduler's selected node, the provisioner's requirements, the driver's zone choice or the PV's affinity
went wrong. This core gathers each of them through the ports and runs the SAME requirements glue as the
provisioner loop (:mod:`provisioner.provisioning.claim_topology`) and the SAME zone choice as the
controller (:func:`provisioner.topology.zones.choose_zone`), then gives one verdict with a reason and an
action. It reads only; it never writes to the cluster or the cloud, and never prints.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from provisioner.errors import InvalidArgument, NotFound, ResourceExhausted, ZonalError
from provisioner.explain import facts
from provisioner.explain.report import (
    CONFLICT,
    IN_TREE_LABELS_ONLY,
    LOST,
    NO_AFFINITY,
    NO_CLASS,
    OK,
    PENDING,
    UNKNOWN_KEY,
    WAITING_FOR_CONSUMER,
    ClassInfo,
    NodeInfo,
    PvcReport,
    RequirementsInfo,
    Verdict,
    VolumeInfo,
    ZoneChoiceInfo,
)
from provisioner.model import ZONE_ID_KEY, ZONE_KEYS, TopologyRequirement, Zone
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind, KubeApi, KubeNotFound, Obj
from provisioner.provisioning.claim_topology import (
    build_cluster_view,
    claim_topology_input,
    selected_node,
)
from provisioner.provisioning.pv import decode_requirement
from provisioner.provisioning.request import annotations_of, make_volume_name
from provisioner.provisioning.settings import ANN_REQUIREMENTS, ANN_STORAGE_PROVISIONER, ProvisionerConfig
from provisioner.topology.requirements import (
    BINDING_IMMEDIATE,
    BINDING_WFFC,
    ClusterView,
    TopologyUnavailable,
    accessibility_requirements,
)
from provisioner.topology.zones import choose_zone, requested_zones


def explain_pvc(
    kube: KubeApi,
    namespace: str,
    name: str,
    driver_name: str | None = None,
    cloud: Cloud | None = None,
    config: ProvisionerConfig | None = None,
) -> PvcReport:
    """The report for claim ``namespace/name``. Raises NotFound when the claim does not exist."""
    config = config or ProvisionerConfig()
    try:
        claim = kube.get(Kind.CLAIM, name, namespace)
    except KubeNotFound as e:
        raise NotFound(f'persistentvolumeclaim "{namespace}/{name}" not found') from e
    spec = claim.get("spec", {})
    sc_name = str(spec.get("storageClassName") or "")
    sc = _get(kube, Kind.STORAGE_CLASS, sc_name) if sc_name else None
    driver = (
        driver_name
        or (str(sc.get("provisioner") or "") if sc else "")
        or annotations_of(claim).get(ANN_STORAGE_PROVISIONER, "")
    )
    nodes = list(kube.list(Kind.NODE).items)
    node_map = facts.by_name(nodes)
    view = build_cluster_view(nodes, kube.list(Kind.CSINODE).items, driver)

    report = PvcReport(
        namespace=namespace,
        name=name,
        phase=str(claim.get("status", {}).get("phase") or "Pending"),
        verdict=Verdict(PENDING, "", ""),
        driver=driver,
        storage_class=facts.class_info(sc_name, sc, view) if sc_name else None,
    )
    chosen = selected_node(claim)
    if chosen:
        report.selected_node = facts.node_info(chosen, node_map, view)
    pv, pv_name = facts.find_pv(kube, claim)
    if pv is not None:
        report.volume = facts.volume_info(pv, nodes, cloud)
        if report.volume.driver and driver and report.volume.driver != driver:
            report.notes.append(f"the PV belongs to driver {report.volume.driver}, not {driver}")
    if sc is not None:
        report.requirements, requirement = _requirements(claim, sc, view, config, bound=pv is not None)
        recorded = _recorded(pv)
        if recorded is not None:
            report.requirements, requirement = recorded, _as_requirement(recorded)
        if requirement is not None:
            report.zone_choice = _zone_choice(requirement, claim, config, nodes, cloud, report.notes)
    if report.storage_class is None:
        report.notes.append("the claim names no StorageClass: only a pre-created PV can bind it")
    report.verdict = _verdict(report, pv_name, view, node_map)
    return report


def _get(kube: KubeApi, kind: Kind, name: str) -> Obj | None:
    try:
        return kube.get(kind, name)
    except KubeNotFound:
        return None


def _recorded(pv: Obj | None) -> RequirementsInfo | None:
    """The requirements zonal's provisioner recorded on the PV when it created it, if any."""
    text = annotations_of(pv).get(ANN_REQUIREMENTS, "") if pv is not None else ""
    requirement = decode_requirement(text) if text else None
    if requirement is None:
        return None
    return RequirementsInfo(
        status="sent",
        when=f"sent to CreateVolume (recorded on the PV in {ANN_REQUIREMENTS})",
        requisite=[dict(s) for s in requirement.requisite],
        preferred=[dict(s) for s in requirement.preferred],
        steps=["recorded by zonal's provisioner when it created the PV"],
    )


def _as_requirement(info: RequirementsInfo) -> TopologyRequirement:
    return TopologyRequirement(requisite=tuple(info.requisite), preferred=tuple(info.preferred))


def _requirements(
    claim: Obj, sc: Obj, view: ClusterView, config: ProvisionerConfig, *, bound: bool
) -> tuple[RequirementsInfo, TopologyRequirement | None]:
    when = "would be sent now (recomputed from the cluster as it is)" if bound else "will be sent"
    inp = claim_topology_input(claim, sc, config)
    try:
        # A fixed seed: the decision only uses randomness for nameless claims and the sidecar's key pick.
        decision = accessibility_requirements(inp, view, config.fixes, random.Random(0))
    except TopologyUnavailable as e:
        waiting = inp.binding_mode == BINDING_WFFC and not inp.selected_node
        return (
            RequirementsInfo(
                status="waiting" if waiting else "unavailable",
                when=when,
                steps=list(e.explanation.steps),
                error=e.message,
            ),
            None,
        )
    why = decision.explanation
    if decision.requirement is None:
        return RequirementsInfo(status="none", when=when, steps=list(why.steps)), None
    req = decision.requirement
    info = RequirementsInfo(
        status="computed",
        when=when,
        requisite=[dict(s) for s in req.requisite],
        preferred=[dict(s) for s in req.preferred],
        steps=list(why.steps),
    )
    return info, req


def _zone_choice(
    requirement: TopologyRequirement,
    claim: Obj,
    config: ProvisionerConfig,
    nodes: Sequence[Obj],
    cloud: Cloud | None,
    notes: list[str],
) -> ZoneChoiceInfo:
    zones: list[Zone] = []
    zones_from = ""
    if cloud is not None:
        try:
            zones = list(cloud.availability_zones())
            zones_from = f"the zones of region {cloud.region} (EC2)"
        except ZonalError as e:
            notes.append(f"could not list the region's zones: {e}")
    if not zones:
        zones = _zones_seen(requirement, nodes)
        zones_from = "zones seen on nodes plus the zones requested (no AWS access: assumed to exist)"
    meta = claim["metadata"]
    try:
        volume_name = make_volume_name(
            config.volume_name_prefix, str(meta.get("uid") or ""), config.volume_name_uuid_length
        )
    except InvalidArgument:
        volume_name = str(meta.get("name") or "")
    info = ZoneChoiceInfo(zones_from=zones_from, candidates=sorted(z.name for z in zones))
    try:
        choice = choose_zone(requirement, zones, volume_name)
    except ResourceExhausted as e:
        info.error = str(e)
        return info
    info.zone, info.source, info.index = choice.zone, choice.source, choice.index
    info.description = choice.describe()
    return info


def _zones_seen(requirement: TopologyRequirement, nodes: Sequence[Obj]) -> list[Zone]:
    found: dict[str, Zone] = {}
    for node in nodes:
        labels = facts.labels_of(node)
        zone = facts.node_zone(labels)
        if zone:
            found.setdefault(zone, Zone(zone, labels.get(ZONE_ID_KEY, "")))
    for value in requested_zones(requirement):
        is_name = any(s.get(k) == value for s in requirement.requisite for k in ZONE_KEYS)
        is_name = is_name or any(s.get(k) == value for s in requirement.preferred for k in ZONE_KEYS)
        if is_name:
            found.setdefault(value, Zone(value, ""))
    return list(found.values())


# --- the verdict -----------------------------------------------------------------------------------------


def _verdict(report: PvcReport, pv_name: str, view: ClusterView, nodes: dict[str, Obj]) -> Verdict:
    if report.volume is not None:
        return _bound_verdict(report, report.volume)
    if pv_name:
        return Verdict(
            LOST,
            f"the claim is bound to PV {pv_name}, which does not exist",
            "restore the PV object (its EBS volume may still exist), or delete and recreate the claim",
        )
    sc = report.storage_class
    if sc is None or not sc.found:
        name = sc.name if sc else ""
        return Verdict(
            NO_CLASS,
            f'StorageClass "{name}" does not exist' if name else "the claim names no StorageClass",
            "create the StorageClass or fix spec.storageClassName (it is immutable: recreate the claim)",
        )
    if sc.unknown_keys:
        return _unknown_key(sc, report.driver, view)
    node = report.selected_node
    if sc.binding_mode == BINDING_WFFC and node is None:
        return Verdict(
            WAITING_FOR_CONSUMER,
            f"StorageClass {sc.name} is WaitForFirstConsumer and no pod using the claim has been scheduled",
            "create (or fix) a pod that uses the claim; the volume is created in its node's zone",
        )
    allowed = facts.allowed_zones(sc)
    if node is not None and node.exists and node.zone and allowed and node.zone not in allowed:
        return Verdict(
            CONFLICT,
            f"selected node {node.name} is in {node.zone}, which the class's allowedTopologies "
            f"({', '.join(sorted(allowed))}) do not allow",
            "let the pod run only in allowed zones (nodeSelector/affinity), or widen allowedTopologies",
        )
    req = report.requirements
    if req is not None and req.status == "unavailable":
        return Verdict(
            PENDING,
            f"the provisioner cannot build the requirements yet: {req.error}",
            "check the node's CSINode and zone labels (is the node plugin running there?)",
        )
    choice = report.zone_choice
    if choice is not None and choice.error:
        return Verdict(
            CONFLICT,
            f"CreateVolume would fail: {choice.error}",
            "fix allowedTopologies to name zones of the cluster's region",
        )
    if choice is not None and choice.zone:
        eligible = _nodes_in_zone(choice.zone, nodes, view)
        if not eligible:
            cause = " (Immediate binding chooses the zone before any pod is scheduled)"
            return Verdict(
                CONFLICT,
                f"the volume would be created in {choice.zone}, where no schedulable node runs the "
                f"driver{cause if sc.binding_mode == BINDING_IMMEDIATE else ''}",
                "use volumeBindingMode: WaitForFirstConsumer, or restrict allowedTopologies to zones "
                "with nodes",
            )
        return Verdict(
            PENDING,
            f"being provisioned: CreateVolume asks for {choice.zone} ({choice.description})",
            "wait; if it stays Pending, read the claim's events (kubectl describe pvc)",
        )
    return Verdict(
        PENDING,
        "being provisioned: no zone is requested, the driver picks one",
        "wait; if it stays Pending, read the claim's events (kubectl describe pvc)",
    )


def _nodes_in_zone(zone: str, nodes: dict[str, Obj], view: ClusterView) -> list[str]:
    with_driver = view.driver_keys()
    return sorted(
        name
        for name, node in nodes.items()
        if name in with_driver
        and facts.schedulable(node)[0]
        and facts.node_zone(facts.labels_of(node)) == zone
    )


def _unknown_key(sc: ClassInfo, driver: str, view: ClusterView) -> Verdict:
    reported = sorted(facts.driver_keys(view))
    return Verdict(
        UNKNOWN_KEY,
        f"StorageClass {sc.name} uses allowedTopologies key(s) {', '.join(sc.unknown_keys)}, which no "
        f"CSINode of driver {driver} reports (reported: {', '.join(reported) or 'none'})",
        f"use a key the driver reports (e.g. {reported[0] if reported else 'topology.kubernetes.io/zone'}) "
        "in allowedTopologies: zonal translate storageclass rewrites in-tree classes",
    )


def _bound_verdict(report: PvcReport, vol: VolumeInfo) -> Verdict:
    zones = ", ".join(vol.zones)
    if vol.pinned_by == "none":
        return Verdict(
            NO_AFFINITY,
            f"PV {vol.pv} has neither nodeAffinity nor zone labels: pods can land in any zone, and the "
            "attach fails outside the volume's zone",
            "give the PV nodeAffinity on topology.kubernetes.io/zone (zonal translate pv for in-tree PVs)",
        )
    if facts.is_known_zone(vol.ebs_zone) and vol.zones and vol.ebs_zone not in vol.zones:
        return Verdict(
            CONFLICT,
            f"PV {vol.pv} is pinned to {zones} but EBS volume {vol.volume_id} is in {vol.ebs_zone}",
            f"recreate the PV object with its affinity on {vol.ebs_zone} (reclaimPolicy Retain first)",
        )
    node: NodeInfo | None = report.selected_node
    if node is not None and node.exists and node.zone and vol.zones and node.zone not in vol.zones:
        return Verdict(
            CONFLICT,
            f"selected node {node.name} is in {node.zone} but PV {vol.pv} is pinned to {zones}",
            f"delete the pod so it is rescheduled onto a node in {zones}",
        )
    if not vol.nodes_in_zone:
        sc = report.storage_class
        immediate = sc is not None and sc.binding_mode == BINDING_IMMEDIATE
        why = " (Immediate binding chose the zone before any pod was scheduled)" if immediate else ""
        return Verdict(
            CONFLICT,
            f"no schedulable node satisfies PV {vol.pv}'s {vol.pinned_by} ({zones}){why}",
            f"add or uncordon a node in {zones}, or move the data to a zone with nodes: zonal relocate pvc "
            f"{report.namespace}/{report.name} --to-zone ZONE",
        )
    if vol.pinned_by == "zone-labels":
        return Verdict(
            IN_TREE_LABELS_ONLY,
            f"PV {vol.pv} carries in-tree zone labels ({zones}) but no nodeAffinity",
            "zonal translate pv: give it nodeAffinity on topology.kubernetes.io/zone (recreate the PV)",
        )
    if report.phase != "Bound":
        return Verdict(
            PENDING,
            f"PV {vol.pv} exists in {zones}; the claim is not bound yet",
            "wait for the PV controller to bind it",
        )
    where = [f"affinity {zones}"]
    if facts.is_known_zone(vol.ebs_zone):
        where.insert(0, f"EBS volume in {vol.ebs_zone}")
    if node is not None and node.zone:
        where.append(f"selected node {node.name} in {node.zone}")
    return Verdict(OK, "; ".join(where), "nothing to do")
