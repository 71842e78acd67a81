"""Preconditions and the plan of a relocation: everything checked, and every change listed, before any.

Why it exists: ``zonal relocate`` must refuse before it touches anything when the move cannot be made
safely (a pod still uses the claim, the volume is attached, the target zone has no node that can run the
pod, another relocation is under way), and ``--dry-run`` must show exactly what a real run would do. This
reads through the ports and returns a :class:`~provisioner.relocate.report.Plan`; it writes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from provisioner.config import DriverConfig
from provisioner.errors import NotFound
from provisioner.explain import facts
from provisioner.model import TAG_SNAPSHOT_NAME, ZONE_KEYS, Volume, Zone
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind, KubeApi, Obj
from provisioner.provisioning.quantity import parse_quantity
from provisioner.relocate import objects as O
from provisioner.relocate import world
from provisioner.relocate.journal import ANN_JOURNAL, ANN_SAVED_CLAIM, TAG_RELOCATION, Journal
from provisioner.relocate.report import FAIL, OK, WARN, Check, Plan


class Facts:
    """The objects a plan is made from (filled in as far as they exist)."""

    def __init__(self) -> None:
        self.claim: Obj | None = None
        self.pv: Obj | None = None
        self.volume: Volume | None = None
        self.zone: Zone | None = None


def make_plan(
    kube: KubeApi,
    cloud: Cloud,
    driver: DriverConfig,
    namespace: str,
    name: str,
    to_zone: str,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> tuple[Plan, Facts]:
    """Check every precondition and describe the run. Raises NotFound when the claim does not exist."""
    plan = Plan(namespace, name, to_zone)
    got = Facts()
    claim = world.get_or_none(kube, Kind.CLAIM, name, namespace)
    if claim is None:
        raise NotFound(f'persistentvolumeclaim "{namespace}/{name}" not found')
    got.claim = claim
    checks = plan.checks
    pv = _bound_pv(kube, claim, driver.driver_name, checks)
    running = world.find_journal(kube, namespace, name)
    if running is not None and not running.journal.finished:
        j = running.journal
        checks.append(
            Check(
                "no relocation under way",
                FAIL,
                f"a relocation of {namespace}/{name} to {j.to_zone} stopped at {j.where()} (journal on PV "
                f"{running.pv['metadata']['name']}): zonal relocate pvc {namespace}/{name} --resume, or "
                "--rollback",
            )
        )
    pods = world.pods_using(kube, namespace, name)
    if pods:
        checks.append(Check("no pod uses the claim", FAIL, world.describe_users(namespace, pods)))
    else:
        checks.append(Check("no pod uses the claim", OK, "none"))
    if pv is None:
        return plan, got
    got.pv = pv
    pv_name = pv["metadata"]["name"]
    nodes = world.attachments(kube, pv_name)
    if nodes:
        checks.append(
            Check(
                "not attached", FAIL, f"PV {pv_name} is attached to {', '.join(nodes)}; wait for the detach"
            )
        )
    volume = _source_volume(cloud, pv, checks)
    zone = _target_zone(kube, cloud, driver.driver_name, to_zone, volume, checks)
    _size_and_class(kube, claim, pv, to_zone, checks)
    policy = str(pv.get("spec", {}).get("persistentVolumeReclaimPolicy") or "Delete")
    checks.append(
        Check(
            "reclaim policy recorded",
            OK,
            f"{policy}: PV {pv_name} is set to Retain first, the new PV gets {policy} at the end",
        )
    )
    got.volume, got.zone = volume, zone
    if volume is None or zone is None:
        return plan, got
    relocation = new_id()
    journal = Journal(
        id=relocation,
        namespace=namespace,
        claim=name,
        claim_uid=str(claim["metadata"].get("uid") or ""),
        source_pv=pv_name,
        source_volume=volume.volume_id,
        from_zone=volume.zone,
        to_zone=to_zone,
        reclaim_policy=policy,
        new_pv=f"pvc-{relocation}",
        finalizers=O.kept_finalizers(pv),
    )
    plan.journal = journal
    plan.actions = _actions(journal, claim, pv, volume, zone, driver)
    return plan, got


def _bound_pv(kube: KubeApi, claim: Obj, driver: str, checks: list[Check]) -> Obj | None:
    meta, spec = claim["metadata"], claim.get("spec", {})
    ref = f"{meta.get('namespace')}/{meta['name']}"
    phase = claim.get("status", {}).get("phase") or "Pending"
    pv_name = str(spec.get("volumeName") or "")
    if phase != "Bound" or not pv_name:
        checks.append(
            Check("claim is Bound", FAIL, f"claim {ref} is {phase}: only a Bound claim has data to move")
        )
        return None
    pv = world.get_or_none(kube, Kind.PV, pv_name)
    if pv is None:
        checks.append(Check("claim is Bound", FAIL, f"claim {ref} names PV {pv_name}, which does not exist"))
        return None
    claim_ref = pv.get("spec", {}).get("claimRef") or {}
    if claim_ref.get("uid") and claim_ref.get("uid") != meta.get("uid"):
        checks.append(
            Check("claim is Bound", FAIL, f"PV {pv_name} is bound to another claim (uid {claim_ref['uid']})")
        )
        return None
    checks.append(Check("claim is Bound", OK, f"to PV {pv_name}"))
    pv_driver = facts.pv_driver(pv)
    if pv_driver != driver:
        how = (
            "an in-tree PV: translate it to CSI first (zonal translate pv)"
            if not (pv.get("spec") or {}).get("csi")
            else f"pass --driver-name {pv_driver} if zonal runs under that name"
        )
        checks.append(
            Check(
                "PV of this driver",
                FAIL,
                f"PV {pv_name} belongs to {pv_driver or 'no driver'}, not {driver}: {how}",
            )
        )
        return None
    checks.append(Check("PV of this driver", OK, driver))
    return pv


def _source_volume(cloud: Cloud, pv: Obj, checks: list[Check]) -> Volume | None:
    volume_id = facts.pv_volume_id(pv)
    try:
        volume = cloud.get_volume(volume_id)
    except NotFound:
        checks.append(Check("source volume", FAIL, f"EC2 has no volume {volume_id or '(none named)'}"))
        return None
    attached = [a.instance_id for a in volume.attachments if a.state != "detached"]
    if attached:
        checks.append(Check("source volume", FAIL, f"{volume_id} is attached to {', '.join(attached)}"))
        return None
    if volume.state.value != "available":
        checks.append(Check("source volume", FAIL, f"{volume_id} is {volume.state.value}, not available"))
        return None
    checks.append(Check("source volume", OK, f"{volume_id} in {volume.zone}, available"))
    return volume


def _target_zone(
    kube: KubeApi, cloud: Cloud, driver: str, to_zone: str, volume: Volume | None, checks: list[Check]
) -> Zone | None:
    zones = {z.name: z for z in cloud.availability_zones()}
    zone = zones.get(to_zone)
    if zone is None:
        known = ", ".join(sorted(zones))
        checks.append(
            Check("target zone exists", FAIL, f"region {cloud.region} has no zone {to_zone} ({known})")
        )
        return None
    if volume is not None and volume.zone == to_zone:
        checks.append(
            Check("target zone exists", FAIL, f"the volume is already in {to_zone}: nothing to move")
        )
        return None
    checks.append(
        Check("target zone exists", OK, f"{to_zone} ({zone.zone_id or 'no zone id'}) in {cloud.region}")
    )
    ok, why_not = world.usable_nodes(kube, driver, to_zone)
    if ok:
        checks.append(Check("target zone has nodes", OK, f"schedulable, running {driver}: {', '.join(ok)}"))
    else:
        reasons = "; ".join(why_not) or "no node is there"
        checks.append(
            Check(
                "target zone has nodes", FAIL, f"no schedulable node in {to_zone} runs {driver} ({reasons})"
            )
        )
    return zone


def _size_and_class(kube: KubeApi, claim: Obj, pv: Obj, to_zone: str, checks: list[Check]) -> None:
    requested = str(
        ((claim.get("spec", {}).get("resources") or {}).get("requests") or {}).get("storage") or "0"
    )
    capacity = str((pv.get("spec", {}).get("capacity") or {}).get("storage") or "0")
    try:
        growing = parse_quantity(requested) > parse_quantity(capacity)
    except ValueError:
        growing = False
    if growing:
        checks.append(
            Check(
                "no resize pending",
                FAIL,
                f"the claim asks {requested}, the PV has {capacity}: let the resize finish first",
            )
        )
    sc_name = str(claim.get("spec", {}).get("storageClassName") or "")
    sc = world.get_or_none(kube, Kind.STORAGE_CLASS, sc_name) if sc_name else None
    if sc is None:
        return
    allowed = {v for t in facts.allowed_terms(sc) for k, vs in t.items() if k in ZONE_KEYS for v in vs}
    if allowed and to_zone not in allowed:
        checks.append(
            Check(
                "class allows the zone",
                WARN,
                f"StorageClass {sc_name} allows only {', '.join(sorted(allowed))}; the relocated PV is "
                f"pinned to {to_zone} anyway (a pre-bound PV is not checked against the class)",
            )
        )


def _actions(
    journal: Journal, claim: Obj, pv: Obj, volume: Volume, zone: Zone, driver: DriverConfig
) -> list[str]:
    j = journal
    spec = O.restore_spec(volume, "<the snapshot>", j, driver)
    dropped = O.dropped_from_claim(claim)
    finalizers = j.finalizers
    return [
        f"retain: PV {j.source_pv}: persistentVolumeReclaimPolicy {j.reclaim_policy} → Retain; annotations "
        f"{ANN_JOURNAL} (the journal) and {ANN_SAVED_CLAIM} (the claim as you made it)",
        f"snapshot: EC2 CreateSnapshot of {j.source_volume} (tags {TAG_SNAPSHOT_NAME}={O.snapshot_name(j)}, "
        f"{TAG_RELOCATION}={j.id}); "
        "wait until completed, showing EC2's progress",
        f"volume: EC2 CreateVolume from the snapshot in {j.to_zone}: {O.describe_spec(spec)}; tags as the "
        f"source plus CSIVolumeName={j.new_pv}; ClientToken from the relocation id (a resume never makes "
        "a second volume); wait until available",
        f"pv: create PV {j.new_pv} for the new volume: nodeAffinity {zone.name}, claimRef {j.claim_ref} "
        "(no uid), Retain until the end",
        f"claim: delete claim {j.claim_ref} (uid {j.claim_uid}), wait until it is gone, create it again "
        f"pre-bound to {j.new_pv} with the same spec, labels and annotations"
        + (f" (dropped: {'; '.join(dropped)})" if dropped else "")
        + "; wait until Bound",
        f"finish: PV {j.new_pv}: reclaim policy {j.reclaim_policy}"
        + (f", finalizers {', '.join(finalizers)}" if finalizers else "")
        + f"; keep PV {j.source_pv} (Retain) and volume {j.source_volume} unless --delete-source; keep the "
        "snapshot unless --delete-snapshot",
    ]
