"""ProvisionerCore: one claim → accessibility requirements → CreateVolume → PersistentVolume, and back.

Why it exists: every decision the loop makes about one object lives here, over the KubeApi and CsiClient
ports, so it is tested against stateful fakes without threads. It answers with an :class:`Outcome` that
tells the work queue what to do next; it never sleeps, never retries by itself and holds no thread.

The error → next step table (CreateVolume), as the sidecar's ``checkError``:

============================================  ==============================================================
RESOURCE_EXHAUSTED with a selected node        remove ``selected-node``: the scheduler picks again
ABORTED, UNAVAILABLE, DEADLINE_EXCEEDED,       the operation may still run: retry with the SAME cached
CANCELLED                                      requirements
INVALID_ARGUMENT                               slow retry (``retry_interval_max``)
UNIMPLEMENTED                                  stop; the event says so
anything else                                  retry with exponential backoff
============================================  ==============================================================
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import threading
import uuid

from provisioner.errors import (
    DeadlineExceeded,
    InvalidArgument,
    OperationInProgress,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    ZonalError,
)
from provisioner.model import TopologyRequirement
from provisioner.ports.clock import Clock
from provisioner.ports.csi import (
    Cancelled,
    ControllerCapability,
    CreatedVolume,
    CreateVolumeRequest,
    CsiClient,
    PluginCapability,
)
from provisioner.ports.kube import Kind, KubeAlreadyExists, KubeApi, KubeError, Lister, Obj
from provisioner.provisioning.claim_topology import build_cluster_view, claim_topology_input
from provisioner.provisioning.clone_protection import (
    CLONE_FINALIZER,
    add_clone_finalizer,
    has_finalizer,
    pending_clones,
    remove_clone_finalizer,
)
from provisioner.provisioning.deletion import VolumeDeleter
from provisioner.provisioning.outcome import Outcome, Step
from provisioner.provisioning.pv import build_pv
from provisioner.provisioning.request import (
    ExternalPopulator,
    Prepared,
    SnapshotApiMissing,
    annotations_of,
    clone_source_name,
    prepare,
)
from provisioner.provisioning.settings import (
    ANN_BETA_STORAGE_PROVISIONER,
    ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
    ProvisionerConfig,
)
from provisioner.topology.affinity import accessible_topology_problem, node_satisfies, volume_node_affinity
from provisioner.topology.requirements import (
    BINDING_IMMEDIATE,
    BINDING_WFFC,
    ClusterView,
    TopologyUnavailable,
    accessibility_requirements,
)

__all__ = ["IN_BACKGROUND", "Lister", "Outcome", "ProvisionerCore", "Step", "claim_key"]

log = logging.getLogger(__name__)

IN_BACKGROUND = (OperationInProgress, Unavailable, DeadlineExceeded, Cancelled)


def claim_key(claim: Obj) -> str:
    m = claim["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


class ProvisionerCore:
    def __init__(
        self,
        kube: KubeApi,
        csi: CsiClient,
        lister: Lister,
        config: ProvisionerConfig,
        *,
        driver: str,
        plugin_caps: frozenset[PluginCapability],
        controller_caps: frozenset[ControllerCapability],
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.kube = kube
        self.csi = csi
        self.lister = lister
        self.config = config
        self.driver = driver
        self.plugin_caps = plugin_caps
        self.controller_caps = controller_caps
        self.clock = clock
        self.rng = rng or random.Random()
        self.identity = config.identity or f"{int(clock.time() * 1000)}-{self.rng.randrange(10000)}-{driver}"
        self._cache: dict[str, TopologyRequirement | None] = {}
        self.deleter = VolumeDeleter(kube, csi, lister, driver, self.event)
        self._lock = threading.Lock()

    # --- which objects are ours -------------------------------------------------------------------------

    @property
    def supports_topology(self) -> bool:
        return PluginCapability.VOLUME_ACCESSIBILITY_CONSTRAINTS in self.plugin_caps

    def claim_is_ours(self, claim: Obj) -> bool:
        ann = annotations_of(claim)
        name = ann.get(ANN_STORAGE_PROVISIONER, ann.get(ANN_BETA_STORAGE_PROVISIONER, ""))
        return name == self.driver

    def cached_requirement(self, uid: str) -> tuple[bool, TopologyRequirement | None]:
        with self._lock:
            return (uid in self._cache, self._cache.get(uid))

    def forget_claim(self, uid: str) -> None:
        """The claim is gone: its cached requirement can never be used again."""
        if self.config.drop_cache_on_claim_delete:
            self._drop(uid)

    def _drop(self, uid: str) -> None:
        with self._lock:
            self._cache.pop(uid, None)

    # --- events ---------------------------------------------------------------------------------------

    def event(self, obj: Obj, kind: Kind, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        now = _rfc3339(self.clock.time())
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": kind.api_version,
                "kind": kind.kind_name,
                "name": meta["name"],
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": self.driver + "_zonal-provisioner"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.kube.create(Kind.EVENT, body)
        except KubeError as e:
            log.warning("could not record event %s on %s: %s", reason, meta["name"], e)

    # --- provisioning --------------------------------------------------------------------------------

    def provision(self, claim: Obj) -> Outcome:
        """One attempt at provisioning ``claim``; the outcome says what the queue does next."""
        meta, spec = claim["metadata"], claim.get("spec", {})
        if not self.claim_is_ours(claim) or spec.get("volumeName") or meta.get("deletionTimestamp"):
            return Outcome(Step.IGNORED, "not ours or already bound")
        if claim.get("status", {}).get("phase") not in (None, "", "Pending"):
            return Outcome(Step.IGNORED, "claim is not pending")
        sc_name = spec.get("storageClassName") or ""
        sc = self.lister.get(Kind.STORAGE_CLASS, sc_name) if sc_name else None
        if sc is None:
            self.event(
                claim, Kind.CLAIM, "Warning", "ProvisioningFailed", f'storageclass "{sc_name}" not found'
            )
            return Outcome(Step.RETRY, f"storage class {sc_name!r} not found")
        if sc.get("provisioner") != self.driver:
            return Outcome(Step.IGNORED, "class belongs to another provisioner")
        selected = annotations_of(claim).get(ANN_SELECTED_NODE, "")
        binding = sc.get("volumeBindingMode") or BINDING_IMMEDIATE
        if binding == BINDING_WFFC and not selected:
            return Outcome(Step.IGNORED, "waiting for the scheduler to select a node")
        prepared = self._prepare(claim, sc)
        if prepared is None:
            return Outcome(Step.IGNORED, "data source is filled by an external populator")
        if isinstance(prepared, Outcome):
            return prepared
        if self.lister.get(Kind.PV, prepared.pv_name) is not None:
            return Outcome(Step.DONE, f"PV {prepared.pv_name} already exists")
        uid = meta.get("uid", "")
        requirement = self._requirement(claim, sc, binding, selected)
        if isinstance(requirement, Outcome):
            return requirement
        protected = self._protect_clone_source(claim, sc)
        if protected is not None:
            return protected
        self.event(
            claim,
            Kind.CLAIM,
            "Normal",
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{claim_key(claim)}"',
        )
        request = _with_requirement(prepared, requirement)
        try:
            created = self.csi.create_volume(request)
        except ZonalError as e:
            return self._create_failed(claim, uid, requirement, selected, e)
        self._drop(uid)
        return self._finish(claim, sc, prepared, created, requirement, selected)

    def _prepare(self, claim: Obj, sc: Obj) -> Prepared | Outcome | None:
        try:
            return prepare(self.kube, claim, sc, self.config, self.driver, self.controller_caps)
        except ExternalPopulator as e:
            self.event(claim, Kind.CLAIM, "Normal", "Provisioning", f"Assuming an external populator: {e}")
            return None
        except SnapshotApiMissing as e:
            # Nothing changes until someone installs the CRDs: say so plainly and retry slowly.
            self.event(claim, Kind.CLAIM, "Warning", "ProvisioningFailed", _failed(sc, str(e)))
            return Outcome(Step.RETRY_SLOW, str(e))
        except (ZonalError, KubeError) as e:
            self.event(claim, Kind.CLAIM, "Warning", "ProvisioningFailed", _failed(sc, str(e)))
            return Outcome(Step.RETRY, str(e))

    def _protect_clone_source(self, claim: Obj, sc: Obj) -> Outcome | None:
        """Sidecar (setCloneFinalizer): the source claim gets the cloning finalizer before CreateVolume."""
        source = clone_source_name(claim)
        if not source:
            return None
        try:
            add_clone_finalizer(self.kube, claim["metadata"].get("namespace", ""), source)
        except KubeError as e:
            message = f"could not add finalizer {CLONE_FINALIZER} to source claim {source}: {e}"
            self.event(claim, Kind.CLAIM, "Warning", "ProvisioningFailed", _failed(sc, message))
            return Outcome(Step.RETRY, message)
        return None

    def release_clone_source(self, source: Obj) -> Outcome:
        """Sidecar (CloningProtectionController): a source being deleted loses the cloning finalizer once
        no claim cloning it is Pending."""
        meta = source["metadata"]
        if not has_finalizer(source, CLONE_FINALIZER) or not meta.get("deletionTimestamp"):
            return Outcome(Step.IGNORED, "not a clone source being deleted")
        pending = pending_clones(source, self.lister.list(Kind.CLAIM))
        if pending:
            return Outcome(Step.RETRY, f"PVC '{pending[0]}' is in 'Pending' state, cloning in progress")
        try:
            remove_clone_finalizer(self.kube, meta.get("namespace", ""), meta["name"])
        except KubeError as e:
            return Outcome(Step.RETRY, f"removing finalizer {CLONE_FINALIZER}: {e}")
        return Outcome(Step.DONE, f"finalizer {CLONE_FINALIZER} removed")

    def cluster_view(self) -> ClusterView:
        return build_cluster_view(self.lister.list(Kind.NODE), self.lister.list(Kind.CSINODE), self.driver)

    def _requirement(
        self, claim: Obj, sc: Obj, binding: str, selected: str
    ) -> TopologyRequirement | Outcome | None:
        if not self.supports_topology:
            return None
        uid = claim["metadata"].get("uid", "")
        hit, cached = self.cached_requirement(uid)
        if hit:
            # Sidecar: a CreateVolume that may still be running is retried with identical requirements.
            return cached
        inp = claim_topology_input(claim, sc, self.config)
        try:
            decision = accessibility_requirements(inp, self.cluster_view(), self.config.fixes, self.rng)
        except TopologyUnavailable as e:
            message = f"error generating accessibility requirements: {e}"
            self.event(claim, Kind.CLAIM, "Warning", "ProvisioningFailed", _failed(sc, message))
            if e.reschedule and selected:
                return self._reschedule(claim, message)
            return Outcome(Step.RETRY, message)
        log.debug("requirements for %s: %s", claim_key(claim), "; ".join(decision.explanation.steps))
        return decision.requirement

    def _reschedule(self, claim: Obj, why: str) -> Outcome:
        meta = claim["metadata"]
        try:
            self.kube.patch(
                Kind.CLAIM,
                meta["name"],
                meta.get("namespace", ""),
                {"metadata": {"annotations": {ANN_SELECTED_NODE: None}}},
            )
        except KubeError as e:
            return Outcome(Step.RETRY, f"could not remove {ANN_SELECTED_NODE}: {e}")
        return Outcome(Step.RESCHEDULED, why)

    def _create_failed(
        self, claim: Obj, uid: str, requirement: TopologyRequirement | None, selected: str, e: ZonalError
    ) -> Outcome:
        sc = {"metadata": {"name": claim.get("spec", {}).get("storageClassName", "")}}
        self.event(claim, Kind.CLAIM, "Warning", "ProvisioningFailed", _failed(sc, str(e)))
        if isinstance(e, IN_BACKGROUND):
            with self._lock:
                self._cache[uid] = requirement
            return Outcome(Step.RETRY, f"in background: {e}")
        self._drop(uid)
        if isinstance(e, ResourceExhausted) and selected and self.supports_topology:
            # CSI: RESOURCE_EXHAUSTED = unable to provision in accessible_topology; another node may do.
            return self._reschedule(claim, str(e))
        if isinstance(e, InvalidArgument):
            return Outcome(Step.RETRY_SLOW, str(e))
        if isinstance(e, Unimplemented):
            return Outcome(Step.STOP, f"the driver does not implement CreateVolume: {e}")
        return Outcome(Step.RETRY, str(e))

    def _finish(
        self,
        claim: Obj,
        sc: Obj,
        prepared: Prepared,
        created: CreatedVolume,
        requirement: TopologyRequirement | None,
        selected: str,
    ) -> Outcome:
        required = prepared.request.capacity.required_bytes
        capacity = created.capacity_bytes or required  # CSI: 0 means unknown; the claim's size is used
        problem = ""
        if capacity < required:
            problem = f"created volume capacity {capacity} less than requested capacity {required}"
        elif prepared.request.content_source is not None and created.content_source is None:
            problem = "volume content source missing"
        elif self.config.validate_answer and self.supports_topology:
            problem = self._topology_problem(created, requirement, selected)
        if problem:
            return self._discard(claim, sc, prepared, created, problem)
        pv = build_pv(
            prepared,
            claim,
            sc,
            created,
            driver=self.driver,
            identity=self.identity,
            capacity_bytes=capacity,
            with_zone_labels=self.config.pv_zone_labels,
            read_only=self._read_only(prepared),
            requirement=requirement,
        )
        try:
            self.kube.create(Kind.PV, pv)
        except KubeAlreadyExists:
            pass
        except KubeError as e:
            # The volume exists; CreateVolume is idempotent by name, so the next attempt finds it again.
            self.event(
                claim, Kind.CLAIM, "Warning", "ProvisioningFailed", f"saving PV {prepared.pv_name}: {e}"
            )
            return Outcome(Step.RETRY, str(e))
        self.event(
            claim,
            Kind.CLAIM,
            "Normal",
            "ProvisioningSucceeded",
            f"Successfully provisioned volume {prepared.pv_name}",
        )
        return Outcome(Step.DONE, prepared.pv_name)

    def _read_only(self, prepared: Prepared) -> bool:
        caps = prepared.request.capabilities
        return (
            self.config.controller_publish_read_only
            and len(caps) == 1
            and caps[0].access_mode.name == "MULTI_NODE_READER_ONLY"
        )

    def _topology_problem(
        self, created: CreatedVolume, requirement: TopologyRequirement | None, selected: str
    ) -> str:
        known = {k for keys in self.cluster_view().driver_keys().values() for k in keys}
        requisite = requirement.requisite if requirement else ()
        if not created.accessible_topology and not requisite:
            return ""  # CSI: a driver without topology answers nothing and nothing was asked
        problem = accessible_topology_problem(created.accessible_topology, requisite, known)
        if problem:
            return problem
        if selected:
            node = self.lister.get(Kind.NODE, selected)
            labels = dict((node or {}).get("metadata", {}).get("labels") or {})
            if node is not None and not node_satisfies(
                volume_node_affinity(created.accessible_topology), labels
            ):
                return f"selected node {selected} does not satisfy the volume's node affinity"
        return ""

    def _discard(
        self, claim: Obj, sc: Obj, prepared: Prepared, created: CreatedVolume, problem: str
    ) -> Outcome:
        message = f"{problem}; volume {created.volume_id} deleted"
        try:
            self.csi.delete_volume(created.volume_id, prepared.request.secrets)
        except ZonalError as e:
            message = f"{problem}; cleanup of volume {created.volume_id} failed, volume is orphaned: {e}"
        self.event(claim, Kind.CLAIM, "Warning", "ProvisioningFailed", _failed(sc, message))
        return Outcome(Step.RETRY, message)

    # --- deletion (the rules live in deletion.py) ----------------------------------------------------------

    def pv_is_ours(self, pv: Obj) -> bool:
        return self.deleter.pv_is_ours(pv)

    def delete(self, pv: Obj) -> Outcome:
        """Released + Delete → DeleteVolume, delete the PV, drop the finalizer; Retain: finalizer only."""
        return self.deleter.delete(pv)


def _with_requirement(prepared: Prepared, requirement: TopologyRequirement | None) -> CreateVolumeRequest:
    return dataclasses.replace(prepared.request, requirement=requirement)


def _failed(sc: Obj, message: str) -> str:
    return f'failed to provision volume with StorageClass "{sc["metadata"]["name"]}": {message}'


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
