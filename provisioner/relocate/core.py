"""``Relocator``: move a claim's data to a new EBS volume in another zone and rebind the claim to it.

Why it exists: the manual recipe (snapshot, restore in the new zone, hand-edit PV and PVC) loses data
when a step is skipped or repeated at 3 a.m. This core runs it over the KubeApi and Cloud ports as steps
(:data:`~provisioner.relocate.journal.STEPS`), recording each on the source PV before and after it acts,
so a crash anywhere is resumed (:meth:`Relocator.resume`) or undone (:mod:`.rollback`) from the cluster's
own state. Only the process holding the relocation's lease (:mod:`.lease`) takes a step: it is taken
with the journal, renewed at every journal write and by a heartbeat while a step waits, and a process
that lost it stops at once. Every step is idempotent against that state: an EC2 object made just
before a crash is found again by its tags (the new volume also by its ClientToken; see
:mod:`.copies`), a PV or claim by its relocation annotation.

Safety rules it keeps: nothing starts unless every precondition holds (:mod:`.plan`); the source PV is
Retain before anything else; the data is fixed by the snapshot only while no pod uses the claim and the
volume is attached nowhere, checked again right before the snapshot and before the claim is deleted; the
claim is deleted only with its recorded UID as a precondition; the new PV is Retain until the claim is
Bound to it; the source volume and PV are deleted only when asked (``delete_source``) and only after the
claim is Bound; the snapshot is kept unless asked. Waits are bounded and report EC2's progress.
It must not print (a :class:`~.report.Reporter` is told), sleep except through the Clock, or import an
adapter.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller.waiter import Waiter
from provisioner.errors import AlreadyExists, FailedPrecondition, NotFound
from provisioner.model import Zone
from provisioner.ports.clock import Clock, Deadline
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind, KubeAlreadyExists, KubeApi, KubeConflict, KubeNotFound, Obj
from provisioner.provisioning.request import annotations_of
from provisioner.provisioning.settings import FINALIZER
from provisioner.relocate import copies, world
from provisioner.relocate import objects as O
from provisioner.relocate.journal import (
    ANN_JOURNAL,
    ANN_LEASE,
    ANN_RELOCATION_ID,
    ANN_SAVED_CLAIM,
    CLAIM,
    DONE,
    FINISH,
    PV,
    RETAIN,
    SNAPSHOT,
    STARTED,
    STEPS,
    VOLUME,
    Journal,
    journal_of,
)
from provisioner.relocate.lease import MAX_CONFLICTS, Holder, LeaseKeeper
from provisioner.relocate.report import Outcome, Plan, Reporter, SilentReporter

R = TypeVar("R")
STEP_TITLES = {
    RETAIN: "keep the source: PV to Retain, journal on it",
    SNAPSHOT: "snapshot the source volume",
    VOLUME: "create the new volume in the target zone",
    PV: "create the new PV",
    CLAIM: "rebind the claim",
    FINISH: "the new PV takes the reclaim policy; deletions only if asked",
}


@dataclass(frozen=True)
class RelocateSettings:
    snapshot_timeout: float = 3600.0  # EBS snapshots of large volumes take a while
    volume_timeout: float = 600.0
    kube_timeout: float = 120.0  # the claim's deletion, its binding
    poll: float = 1.0
    poll_max: float = 10.0


class Relocator:
    def __init__(
        self,
        kube: KubeApi,
        cloud: Cloud,
        clock: Clock,
        driver: DriverConfig,
        settings: RelocateSettings | None = None,
        reporter: Reporter | None = None,
        holder: Holder | None = None,
    ) -> None:
        self.kube = kube
        self.cloud = cloud
        self.clock = clock
        self.driver = driver
        self.settings = settings or RelocateSettings()
        self.report: Reporter = reporter or SilentReporter()
        self.waiter = Waiter(
            clock,
            ControllerConfig(
                wait_initial_delay=self.settings.poll, wait_factor=1.5, wait_max_delay=self.settings.poll_max
            ),
        )
        # The journal as last written and the PV it is written on; the CLI reads it after an interruption.
        self.current: Journal | None = None
        self.journal_pv = ""
        self.lease = LeaseKeeper(kube, clock, holder)

    # --- entry points ---------------------------------------------------------------------------------

    def start(self, plan: Plan, *, delete_source: bool = False, delete_snapshot: bool = False) -> Outcome:
        """Begin the planned relocation (every check passed) and run it to the end."""
        if not plan.ok or plan.journal is None:
            failed = "; ".join(f"{c.name}: {c.text}" for c in plan.failed()) or "no plan"
            raise FailedPrecondition(f"not relocating {plan.namespace}/{plan.claim}: {failed}")
        j = plan.journal
        j.delete_source, j.delete_snapshot = delete_source, delete_snapshot
        with self.driving():
            self._begin(j)
            return self._forward(j)

    def resume(
        self,
        namespace: str,
        name: str,
        *,
        delete_source: bool = False,
        delete_snapshot: bool = False,
        take_over: bool = False,
    ) -> Outcome:
        """Go on from where the journal says the relocation of ``namespace/name`` stopped. On a finished
        relocation, only the deletions asked for now (and not done before) are made."""
        found = world.find_journal(self.kube, namespace, name)
        if found is None:
            raise NotFound(f"no relocation of {namespace}/{name} is recorded on any PV")
        if found.journal.finished and not _asks_more(found.journal, delete_source, delete_snapshot):
            return self._already_done(found.journal)
        j = self.take(found, f"the relocation of {namespace}/{name}", take_over)
        with self.driving():
            return self._resume(j, delete_source, delete_snapshot)

    def take(self, found: world.Found, what: str, take_over: bool) -> Journal:
        """Take the lease on the journal's PV; the journal as it stands then is the one to go on from."""
        pv_name = found.pv["metadata"]["name"]
        j = journal_of(self.lease.acquire(pv_name, what, take_over))
        if j is None or j.id != found.journal.id:
            self.lease.release(pv_name)
            raise FailedPrecondition(f"{what} changed while this process took its lease; run again")
        self.current, self.journal_pv = j, pv_name
        return j

    @contextlib.contextmanager
    def driving(self) -> Iterator[None]:
        """Release the lease when this process stops on an error or Ctrl-C (a kill leaves it to expire)."""
        try:
            yield
        except (Exception, KeyboardInterrupt):
            if self.journal_pv:
                with contextlib.suppress(Exception):
                    self.lease.release(self.journal_pv)
            raise

    def _resume(self, j: Journal, delete_source: bool, delete_snapshot: bool) -> Outcome:
        if j.mode != "forward":
            raise FailedPrecondition(
                f"the relocation of {j.claim_ref} is being rolled back ({j.where()}): "
                "finish it with --rollback"
            )
        more = _asks_more(j, delete_source, delete_snapshot)
        j.delete_source = j.delete_source or delete_source
        j.delete_snapshot = j.delete_snapshot or delete_snapshot
        if j.finished and not more:  # finished by another process meanwhile
            self.lease.release(self.journal_pv)
            return self._already_done(j)
        if j.finished:
            self.report.detail(
                f"the relocation {j.id} of {j.claim_ref} is finished; now the deletions asked for"
            )
            j.step, j.state = FINISH, STARTED  # run the finish step again for the deletions asked now
        else:
            self.report.detail(
                f"resuming the relocation {j.id} of {j.claim_ref} to {j.to_zone} at {j.where()}"
            )
        return self._forward(j)

    def _already_done(self, j: Journal) -> Outcome:
        self.report.step(FINISH, f"the relocation of {j.claim_ref} to {j.to_zone} is already finished")
        return Outcome(j, "already-done", self._leftovers(j))

    # --- the journal ------------------------------------------------------------------------------------

    def now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock.time()))

    def record(self, j: Journal, step: str, state: str) -> None:
        """Write the step's state on the journal's PV (before the step acts, and after it)."""
        j.record(step, state, self.now())
        self.save(j)

    def save(self, j: Journal) -> None:
        """Write the journal, renewing the lease (released once finished); LeaseLost if it is not ours."""

        def journal(pv: Obj) -> None:
            pv["metadata"]["annotations"] = {**annotations_of(pv), ANN_JOURNAL: j.encode()}

        self.lease.write(self.journal_pv, journal, release=j.finished)
        self.current = j

    def _begin(self, j: Journal) -> None:
        """The retain step: journal, saved claim, Retain and the lease written on the source PV in one
        update, conditional on the PV's resourceVersion, so no second relocation can begin. A conflict is
        decided again on the PV as it is then (an unrelated update, e.g. its status, is retried)."""
        self.report.step(RETAIN, STEP_TITLES[RETAIN])
        j.started_at = self.now()
        j.record(RETAIN, STARTED, j.started_at)
        for _ in range(MAX_CONFLICTS):
            claim = self.kube.get(Kind.CLAIM, j.claim, j.namespace)
            pv = self.kube.get(Kind.PV, j.source_pv)
            earlier = journal_of(pv)  # a finished one (this PV was made by an earlier relocation) is replaced
            if str(claim["metadata"].get("uid") or "") != j.claim_uid or (
                earlier is not None and not earlier.finished
            ):
                raise FailedPrecondition(
                    f"claim {j.claim_ref} or PV {j.source_pv} changed since the plan; run again"
                )
            meta = pv["metadata"]
            meta["annotations"] = {
                **annotations_of(pv),
                ANN_JOURNAL: j.encode(),
                ANN_SAVED_CLAIM: json.dumps(O.saved_claim(claim), separators=(",", ":"), sort_keys=True),
            }
            pv["spec"]["persistentVolumeReclaimPolicy"] = "Retain"
            self.lease.stamp(pv)  # the lease is taken with the journal
            try:
                self.kube.replace(Kind.PV, pv)
                break
            except KubeConflict:
                continue
        else:
            raise FailedPrecondition(f"PV {j.source_pv} kept changing while the relocation began; run again")
        self.current, self.journal_pv = j, j.source_pv
        self.report.detail(
            f"PV {j.source_pv}: reclaim policy {j.reclaim_policy} → Retain; journal {ANN_JOURNAL} "
            f"(relocation {j.id})"
        )
        self.record(j, RETAIN, DONE)

    def _forward(self, j: Journal) -> Outcome:
        steps: dict[str, Callable[[Journal], None]] = {
            SNAPSHOT: lambda j: copies.snapshot_step(self, j),
            VOLUME: lambda j: copies.volume_step(self, j),
            PV: self._pv,
            CLAIM: self._claim,
            FINISH: self._finish,
        }
        for step in STEPS[1:]:
            if j.done(step):
                continue
            self.report.step(step, STEP_TITLES[step])
            self.record(j, step, STARTED)
            steps[step](j)
            if step == FINISH and j.delete_source:
                self._drop_source_pv(j)  # the journal moves to the new PV, then the source PV goes
            else:
                self.record(j, step, DONE)
        return Outcome(j, "relocated", self._leftovers(j))

    # --- waiting ----------------------------------------------------------------------------------------

    def renew(self) -> None:
        """Renew the lease now (LeaseLost, nothing written, if it was taken over)."""
        self.lease.write(self.journal_pv, lambda pv: None)

    def wait(self, seconds: float, check: Callable[[], R | None], what: Callable[[], str]) -> R:
        """Poll ``check``, renewing the lease (heartbeat) so a long wait does not let it expire."""

        def beating() -> R | None:
            if self.lease.heartbeat_due():
                self.renew()
            return check()

        return self.waiter.wait(Deadline(self.clock, seconds), beating, what)

    def at_rest(self, j: Journal, claim: bool = True) -> None:
        """Refuse (changing nothing) while a pod uses the claim or the source volume is attached."""
        why = world.in_use(
            self.kube, self.cloud, j.namespace, j.claim if claim else "", j.source_pv, j.source_volume
        )
        if why:
            raise FailedPrecondition(f"{why}: the data could still change, so this step is not taken")

    # --- the new PV -------------------------------------------------------------------------------------

    def zone(self, name: str) -> Zone:
        return next((z for z in self.cloud.availability_zones() if z.name == name), Zone(name, ""))

    def _pv(self, j: Journal) -> None:
        existing = world.get_or_none(self.kube, Kind.PV, j.new_pv)
        if existing is None:
            source = self.kube.get(Kind.PV, j.source_pv)
            with contextlib.suppress(KubeAlreadyExists):
                self.kube.create(Kind.PV, O.new_pv(source, j, j.volume_id, self.zone(j.to_zone)))
                self.report.detail(
                    f"PV {j.new_pv}: {j.volume_id}, pinned to {j.to_zone}, claimRef {j.claim_ref}"
                )
            existing = self.kube.get(Kind.PV, j.new_pv)
        handle = (existing.get("spec", {}).get("csi") or {}).get("volumeHandle")
        if annotations_of(existing).get(ANN_RELOCATION_ID) != j.id or handle != j.volume_id:
            raise AlreadyExists(f"PV {j.new_pv} exists and was not made by relocation {j.id}")

    # --- the claim --------------------------------------------------------------------------------------

    def saved_claim(self, j: Journal) -> Obj:
        pv = world.get_or_none(self.kube, Kind.PV, j.source_pv)
        text = annotations_of(pv).get(ANN_SAVED_CLAIM, "") if pv is not None else ""
        if not text:
            raise FailedPrecondition(f"the claim saved on PV {j.source_pv} ({ANN_SAVED_CLAIM}) is missing")
        saved: Obj = json.loads(text)
        return saved

    def remove_claim(self, j: Journal, claim: Obj, why: str) -> None:
        """Delete ``claim`` (with its UID as precondition) and wait until it is gone."""
        uid = str(claim["metadata"].get("uid") or "")
        if not claim["metadata"].get("deletionTimestamp"):
            self.report.detail(f"deleting claim {j.claim_ref} (uid {uid}) {why}")
            with contextlib.suppress(KubeNotFound):
                self.kube.delete(Kind.CLAIM, j.claim, j.namespace, uid=uid)

        def gone() -> bool | None:
            current = world.get_or_none(self.kube, Kind.CLAIM, j.claim, j.namespace)
            return True if current is None or current["metadata"].get("uid") != uid else None

        def still() -> str:
            current = world.get_or_none(self.kube, Kind.CLAIM, j.claim, j.namespace) or {"metadata": {}}
            finalizers = ", ".join(current["metadata"].get("finalizers") or ()) or "none"
            pods = world.pods_using(self.kube, j.namespace, j.claim)
            users = f"; pods using it: {world.describe_users(j.namespace, pods)}" if pods else ""
            return (
                f"claim {j.claim_ref} is still terminating (finalizers: {finalizers}){users}; "
                "--resume waits on"
            )

        self.wait(self.settings.kube_timeout, gone, still)

    def wait_bound(self, j: Journal, pv_name: str) -> Obj:
        def bound() -> Obj | None:
            claim = world.get_or_none(self.kube, Kind.CLAIM, j.claim, j.namespace)
            pv = world.get_or_none(self.kube, Kind.PV, pv_name)
            if claim is None or pv is None:
                return None
            uid = claim["metadata"].get("uid")
            ok = (
                claim.get("status", {}).get("phase") == "Bound"
                and claim.get("spec", {}).get("volumeName") == pv_name
                and (pv.get("spec", {}).get("claimRef") or {}).get("uid") == uid
            )
            return claim if ok else None

        return self.wait(
            self.settings.kube_timeout,
            bound,
            lambda: (
                f"claim {j.claim_ref} is not Bound to {pv_name} yet (is the PV controller running?); "
                "--resume waits on"
            ),
        )

    def _claim(self, j: Journal) -> None:
        for _ in (1, 2, 3):
            claim = world.get_or_none(self.kube, Kind.CLAIM, j.claim, j.namespace)
            if claim is not None and annotations_of(claim).get(ANN_RELOCATION_ID) == j.id:
                break  # recreated before an interruption
            if claim is not None and claim["metadata"].get("uid") == j.claim_uid:
                self.at_rest(j)
                self.remove_claim(j, claim, "to recreate it pre-bound to the new PV")
            elif claim is not None:
                raise FailedPrecondition(
                    f"claim {j.claim_ref} was created again by someone else "
                    f"(uid {claim['metadata'].get('uid')}, not {j.claim_uid}; a StatefulSet whose pods were "
                    "not scaled down?): scale its owner down, delete that claim, then --resume or --rollback"
                )
            try:
                created = self.kube.create(Kind.CLAIM, O.recreated_claim(self.saved_claim(j), j.new_pv, j.id))
            except KubeAlreadyExists:
                continue
            self.report.detail(
                f"claim {j.claim_ref} created again (uid {created['metadata'].get('uid')}), "
                f"pre-bound to {j.new_pv}"
            )
            break
        else:
            raise FailedPrecondition(
                f"claim {j.claim_ref} keeps coming back; scale its owner down and --resume"
            )
        self.wait_bound(j, j.new_pv)
        self.report.detail(f"claim {j.claim_ref} is Bound to {j.new_pv} in {j.to_zone}")

    # --- finish -----------------------------------------------------------------------------------------

    def _finish(self, j: Journal) -> None:
        new = self.kube.get(Kind.PV, j.new_pv)
        finalizers = list(new["metadata"].get("finalizers") or ())
        finalizers += [f for f in j.finalizers if f not in finalizers]
        self.kube.patch(
            Kind.PV,
            j.new_pv,
            "",
            {
                "metadata": {"finalizers": finalizers},
                "spec": {"persistentVolumeReclaimPolicy": j.reclaim_policy},
            },
        )
        self.report.detail(f"PV {j.new_pv}: reclaim policy {j.reclaim_policy}")
        if j.delete_snapshot and j.snapshot_id:
            with contextlib.suppress(NotFound):
                self.cloud.delete_snapshot(j.snapshot_id)
            self.report.detail(f"snapshot {j.snapshot_id} deleted (--delete-snapshot)")
        if j.delete_source:
            claim = world.get_or_none(self.kube, Kind.CLAIM, j.claim, j.namespace) or {}
            if (claim.get("spec") or {}).get("volumeName") != j.new_pv or (claim.get("status") or {}).get(
                "phase"
            ) != "Bound":
                raise FailedPrecondition(
                    f"claim {j.claim_ref} is not Bound to {j.new_pv}: the source is not deleted"
                )
            self.at_rest(j, claim=False)
            with contextlib.suppress(NotFound):
                self.cloud.delete_volume(j.source_volume)
            self.report.detail(f"source volume {j.source_volume} deleted (--delete-source)")

    def _drop_source_pv(self, j: Journal) -> None:
        """Move the journal to the new PV (finished), then delete the source PV (its volume is gone)."""
        self.renew()  # still ours (on the source PV): nobody else moves the journal
        self.journal_pv = j.new_pv
        j.record(FINISH, DONE, self.now())
        self.kube.patch(Kind.PV, j.new_pv, "", {"metadata": {"annotations": {ANN_JOURNAL: j.encode()}}})
        self.current = j
        pv = world.get_or_none(self.kube, Kind.PV, j.source_pv)
        if pv is None:
            return
        kept = [f for f in pv["metadata"].get("finalizers") or () if f != FINALIZER]
        released = {"finalizers": kept or None, "annotations": {ANN_LEASE: None}}  # the lease goes with it
        with contextlib.suppress(KubeNotFound):
            self.kube.patch(Kind.PV, j.source_pv, "", {"metadata": released})
            self.kube.delete(Kind.PV, j.source_pv)
        self.report.detail(f"PV {j.source_pv} deleted (--delete-source)")

    def _leftovers(self, j: Journal) -> list[str]:
        out = []
        if not j.delete_source:
            out.append(
                f"PV {j.source_pv} (Retain) and EBS volume {j.source_volume} in {j.from_zone}; once the data "
                f"is checked: zonal relocate pvc {j.claim_ref} --resume --delete-source"
            )
        if not j.delete_snapshot and j.snapshot_id:
            out.append(
                f"snapshot {j.snapshot_id}; when no longer wanted: zonal relocate pvc {j.claim_ref} --resume "
                "--delete-snapshot"
            )
        return out


def _asks_more(j: Journal, delete_source: bool, delete_snapshot: bool) -> bool:
    """Whether this run asks for a deletion the journal's run did not."""
    return (delete_source and not j.delete_source) or (delete_snapshot and not j.delete_snapshot)
