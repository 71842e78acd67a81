"""The controllers an in-memory cluster lacks: the PV controller's binding rules and the protection
finalizers, enough for the embedded world (``zonal demo``, tests) to bind, release and protect claims.

Why it exists: a real cluster binds a pre-bound claim to its PV, releases a PV whose claim is gone, adds
``kubernetes.io/pvc-protection`` to claims and removes it once no pod uses a terminating claim.
``zonal relocate`` depends on each of these (it deletes a claim and creates it again pre-bound), so the
embedded world must behave the same. :meth:`PvController.sync` makes one pass over the objects;
:meth:`PvController.run` repeats it in a thread. It works on
:class:`~provisioner.embedded.kube.memory.MemoryKube` only and decides nothing a real controller would not.
"""

from __future__ import annotations

import threading
from typing import Any

from provisioner.embedded.kube.memory import MemoryKube
from provisioner.ports.kube import Kind, KubeConflict, KubeNotFound, Obj

PVC_PROTECTION = "kubernetes.io/pvc-protection"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
FINISHED = ("Succeeded", "Failed")


class PvController:
    def __init__(self, kube: MemoryKube) -> None:
        self.kube = kube
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one pass -----------------------------------------------------------------------------------------

    def sync(self) -> int:
        """Apply every rule once; return how many objects changed."""
        changed = 0
        for claim in self.kube.objects(Kind.CLAIM):
            changed += self._protect(claim)
        for claim in self.kube.objects(Kind.CLAIM):
            changed += self._bind(claim)
        for pv in self.kube.objects(Kind.PV):
            changed += self._release(pv)
        return changed

    def _users(self, claim: Obj) -> list[str]:
        meta = claim["metadata"]
        out = []
        for pod in self.kube.objects(Kind.POD):
            if pod["metadata"].get("namespace") != meta.get("namespace"):
                continue
            if pod.get("status", {}).get("phase") in FINISHED:
                continue
            if any(
                (v.get("persistentVolumeClaim") or {}).get("claimName") == meta["name"]
                for v in pod.get("spec", {}).get("volumes") or ()
            ):
                out.append(pod["metadata"]["name"])
        return out

    def _protect(self, claim: Obj) -> int:
        """The admission plugin adds pvc-protection; the controller lifts it once no pod uses the claim."""
        meta = claim["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        if not meta.get("deletionTimestamp"):
            if PVC_PROTECTION in finalizers:
                return 0
            return self._patch(Kind.CLAIM, claim, {"metadata": {"finalizers": [*finalizers, PVC_PROTECTION]}})
        if PVC_PROTECTION not in finalizers or self._users(claim):
            return 0
        kept = [f for f in finalizers if f != PVC_PROTECTION]
        return self._patch(Kind.CLAIM, claim, {"metadata": {"finalizers": kept or None}})

    def _bind(self, claim: Obj) -> int:
        meta, spec = claim["metadata"], claim.get("spec", {})
        if meta.get("deletionTimestamp") or claim.get("status", {}).get("phase") == "Bound":
            return 0
        uid = meta.get("uid")
        if spec.get("volumeName"):
            pv = self.kube.find(Kind.PV, spec["volumeName"])
        else:  # a provisioned PV names the claim with its UID
            pvs = self.kube.objects(Kind.PV)
            pv = next((p for p in pvs if (p["spec"].get("claimRef") or {}).get("uid") == uid), None)
        if pv is None or pv["metadata"].get("deletionTimestamp"):
            return 0
        ref = pv.get("spec", {}).get("claimRef") or {}
        if ref.get("name") != meta["name"] or ref.get("namespace") != meta.get("namespace"):
            return 0
        if ref.get("uid") and ref["uid"] != uid:
            return 0
        changed = 0
        if ref.get("uid") != uid or pv.get("status", {}).get("phase") != "Bound":
            changed += self._patch(
                Kind.PV,
                pv,
                {
                    "spec": {"claimRef": {**ref, "uid": uid, "resourceVersion": meta.get("resourceVersion")}},
                    "status": {"phase": "Bound"},
                },
            )
        annotations = {**(meta.get("annotations") or {}), BIND_COMPLETED: "yes"}
        status = {
            "phase": "Bound",
            "accessModes": pv["spec"].get("accessModes") or spec.get("accessModes") or [],
            "capacity": pv["spec"].get("capacity") or {},
        }
        changed += self._patch(
            Kind.CLAIM,
            claim,
            {
                "metadata": {"annotations": annotations},
                "spec": {"volumeName": pv["metadata"]["name"]},
                "status": status,
            },
        )
        return changed

    def _release(self, pv: Obj) -> int:
        """A PV whose claim is gone is Released; a Released PV pre-bound by name only is Available again."""
        ref = pv.get("spec", {}).get("claimRef") or {}
        phase = pv.get("status", {}).get("phase")
        if not ref.get("name") or not ref.get("uid"):
            return 0 if phase == "Available" else self._patch(Kind.PV, pv, {"status": {"phase": "Available"}})
        claim = self.kube.find(Kind.CLAIM, str(ref["name"]), str(ref.get("namespace") or ""))
        gone = claim is None or claim["metadata"].get("uid") != ref["uid"]
        if gone and phase == "Bound":
            return self._patch(Kind.PV, pv, {"status": {"phase": "Released"}})
        return 0

    def _patch(self, kind: Kind, obj: Obj, patch: dict[str, Any]) -> int:
        meta = obj["metadata"]
        try:
            self.kube.patch(kind, meta["name"], str(meta.get("namespace") or ""), patch)
        except (KubeNotFound, KubeConflict):
            return 0
        return 1

    # --- running in the background ----------------------------------------------------------------------

    def run(self, interval: float = 0.1) -> PvController:
        """Sync every ``interval`` seconds in a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(interval):
                self.sync()

        self._thread = threading.Thread(target=loop, name="zonal-pv-controller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
