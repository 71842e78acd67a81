"""Undo an unfinished relocation: the claim bound to its original PV and volume again, and everything the
relocation made removed (the snapshot kept unless asked).

Why it exists: ``--rollback`` must work from any point a relocation can stop at, including a crash in the
middle of the rollback itself. Each sub-step looks at the cluster and EC2 as they are and does only what
is still needed, recording itself in the journal (mode ``rollback``) before and after. Before deleting
anything the relocation made it proves the source volume still exists, no pod uses the claim and the new
volume is attached nowhere; a finished relocation is not rolled back (relocate back instead).
It works through :class:`~provisioner.relocate.core.Relocator`'s ports and helpers and must not print.
"""

from __future__ import annotations

import contextlib

from provisioner.errors import FailedPrecondition, NotFound
from provisioner.ports.kube import Kind, KubeNotFound, Obj
from provisioner.provisioning.request import annotations_of
from provisioner.relocate import copies, world
from provisioner.relocate import objects as O
from provisioner.relocate.core import Relocator
from provisioner.relocate.journal import (
    ANN_JOURNAL,
    ANN_RELOCATION_ID,
    ANN_SAVED_CLAIM,
    CLAIM,
    DONE,
    PV,
    RETAIN,
    ROLLBACK,
    SNAPSHOT,
    STARTED,
    VOLUME,
    Journal,
)
from provisioner.relocate.report import Outcome


def rollback(
    rel: Relocator, namespace: str, name: str, *, delete_snapshot: bool = False, take_over: bool = False
) -> Outcome:
    found = world.find_journal(rel.kube, namespace, name)
    if found is None:
        raise FailedPrecondition(
            f"no relocation of {namespace}/{name} is recorded on any PV: nothing to undo"
        )
    if found.journal.finished:
        raise FailedPrecondition(
            f"the relocation of {namespace}/{name} to {found.journal.to_zone} is finished: to go back, "
            f"relocate it again (zonal relocate pvc {namespace}/{name} --to-zone {found.journal.from_zone})"
        )
    j = rel.take(found, f"the relocation of {namespace}/{name}", take_over)
    with rel.driving():
        return _rollback(rel, j, delete_snapshot)


def _rollback(rel: Relocator, j: Journal, delete_snapshot: bool) -> Outcome:
    if j.finished:  # finished by the process that held the lease until now
        raise FailedPrecondition(
            f"the relocation of {j.claim_ref} to {j.to_zone} is finished: to go back, relocate it again"
        )
    if rel.journal_pv != j.source_pv:
        raise FailedPrecondition(
            f"the source PV {j.source_pv} of {j.claim_ref} is gone: nothing to roll back to"
        )
    try:
        source = rel.cloud.get_volume(j.source_volume)
    except NotFound as e:
        raise FailedPrecondition(
            f"the source volume {j.source_volume} is gone, so the data lives only in "
            f"{j.volume_id or 'the new volume'}: finish with --resume instead"
        ) from e
    if source.zone != j.from_zone:
        raise FailedPrecondition(
            f"the source volume {j.source_volume} is in {source.zone}, not {j.from_zone}"
        )
    j.delete_snapshot = j.delete_snapshot or delete_snapshot
    if j.mode != ROLLBACK:
        j.mode = ROLLBACK
        rel.report.detail(
            f"rolling back relocation {j.id} of {j.claim_ref}, stopped at step {j.step} {j.state}"
        )
    for step, undo in ((CLAIM, _claim), (PV, _pv), (VOLUME, _volume), (SNAPSHOT, _snapshot)):
        rel.report.step("rollback", f"undo {step}")
        rel.record(j, step, STARTED)
        undo(rel, j)
        rel.record(j, step, DONE)
    rel.report.step("rollback", f"undo {RETAIN}")
    rel.record(j, RETAIN, STARTED)
    _retain(rel, j)  # the journal goes with it: nothing is left to resume
    leftovers = []
    if j.snapshot_id and not j.delete_snapshot:
        leftovers.append(
            f"snapshot {j.snapshot_id} is kept (a copy of {j.source_volume}); delete it when not needed"
        )
    return Outcome(j, "rolled-back", leftovers)


def _claim(rel: Relocator, j: Journal) -> None:
    """The claim bound to the source PV: the recreated one removed, the original created again if gone."""
    _new_pv_retained(rel, j)  # a finish step under way may have set the class's policy: never Delete now
    claim = world.get_or_none(rel.kube, Kind.CLAIM, j.claim, j.namespace)
    if claim is not None and annotations_of(claim).get(ANN_RELOCATION_ID) == j.id:
        pods = world.pods_using(rel.kube, j.namespace, j.claim)
        if pods:
            raise FailedPrecondition(
                f"pods use the relocated claim: {world.describe_users(j.namespace, pods)}; data they wrote "
                "would be lost"
            )
        rel.remove_claim(j, claim, "(it is bound to the new volume)")
        claim = None
    elif claim is not None and claim["metadata"].get("uid") == j.claim_uid:
        if claim["metadata"].get("deletionTimestamp"):  # its deletion cannot be stopped: wait, then recreate
            rel.remove_claim(j, claim, "")
            claim = None
    elif claim is not None and claim.get("spec", {}).get("volumeName") == j.source_pv:
        pass  # created again by an interrupted rollback: already pre-bound to the source
    elif claim is not None:
        raise FailedPrecondition(
            f"claim {j.claim_ref} was created by someone else (uid {claim['metadata'].get('uid')}): scale "
            "its owner down, delete that claim, then --rollback again"
        )
    if claim is None:
        saved = rel.saved_claim(j)
        # The source PV still names the deleted claim's UID; without it the PV binds the claim made now.
        rel.kube.patch(
            Kind.PV, j.source_pv, "", {"spec": {"claimRef": {"uid": None, "resourceVersion": None}}}
        )
        created = rel.kube.create(Kind.CLAIM, O.restored_claim(saved, j.source_pv))
        rel.report.detail(
            f"claim {j.claim_ref} created again (uid {created['metadata'].get('uid')}), "
            f"pre-bound to {j.source_pv}"
        )
    rel.wait_bound(j, j.source_pv)
    rel.report.detail(f"claim {j.claim_ref} is Bound to {j.source_pv} in {j.from_zone}")


def _new_pv_retained(rel: Relocator, j: Journal) -> Obj | None:
    """The new PV (if there is one) with reclaim policy Retain and without the finalizers the finish step
    gave it, so that neither the provisioner nor a deletion of the object can take the new volume."""
    pv = world.get_or_none(rel.kube, Kind.PV, j.new_pv)
    if pv is None or annotations_of(pv).get(ANN_RELOCATION_ID) != j.id:
        return None
    finalizers = [f for f in pv["metadata"].get("finalizers") or () if f not in j.finalizers]
    if pv["spec"].get("persistentVolumeReclaimPolicy") != "Retain" or len(finalizers) != len(
        pv["metadata"].get("finalizers") or ()
    ):
        patch = {
            "metadata": {"finalizers": finalizers or None},
            "spec": {"persistentVolumeReclaimPolicy": "Retain"},
        }
        with contextlib.suppress(KubeNotFound):
            pv = rel.kube.patch(Kind.PV, j.new_pv, "", patch)
    return pv


def _pv(rel: Relocator, j: Journal) -> None:
    if _new_pv_retained(rel, j) is None:
        rel.report.detail(f"no PV {j.new_pv} was made")
        return
    # Retain, so deleting the object never deletes a volume (the volume step deletes it, checked).
    with contextlib.suppress(KubeNotFound):
        rel.kube.delete(Kind.PV, j.new_pv)
    rel.report.detail(f"PV {j.new_pv} deleted")


def _volume(rel: Relocator, j: Journal) -> None:
    volume = copies.find_volume(rel, j)
    if volume is None:
        rel.report.detail("no new volume was made")
        return
    attached = world.ec2_attachments(volume)
    if attached:
        raise FailedPrecondition(
            f"the new volume {volume.volume_id} is attached to {', '.join(attached)}; detach it, "
            "then --rollback"
        )
    with contextlib.suppress(NotFound):
        rel.cloud.delete_volume(volume.volume_id)
    rel.report.detail(f"new volume {volume.volume_id} deleted")


def _snapshot(rel: Relocator, j: Journal) -> None:
    snap = copies.find_snapshot(rel, j)
    if snap is None:
        rel.report.detail("no snapshot was taken")
        return
    if j.snapshot_id != snap.snapshot_id:
        j.snapshot_id = snap.snapshot_id
        rel.save(j)
    if not j.delete_snapshot:
        rel.report.detail(f"snapshot {snap.snapshot_id} kept (--delete-snapshot deletes it)")
        return
    with contextlib.suppress(NotFound):
        rel.cloud.delete_snapshot(snap.snapshot_id)
    rel.report.detail(f"snapshot {snap.snapshot_id} deleted")


def _retain(rel: Relocator, j: Journal) -> None:
    def restored(pv: Obj) -> None:
        meta = pv["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        finalizers += [
            f for f in j.finalizers if f not in finalizers
        ]  # the provisioner may have dropped its own
        meta["finalizers"] = finalizers
        meta["annotations"] = {
            k: v for k, v in annotations_of(pv).items() if k not in (ANN_JOURNAL, ANN_SAVED_CLAIM)
        }
        pv["spec"]["persistentVolumeReclaimPolicy"] = j.reclaim_policy

    rel.lease.write(j.source_pv, restored, release=True)  # the journal and the lease go together
    rel.report.detail(f"PV {j.source_pv}: reclaim policy {j.reclaim_policy} again; journal removed")
