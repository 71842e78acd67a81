"""Deletion of the volumes this driver provisioned: Released PV → DeleteVolume → PV gone, finalizer off.

Why it exists: the sidecar's Delete rules (reclaim policy, VolumeAttachment guard, deletion secrets from
the PV's annotations or else from its StorageClass, finalizer hand-over) in one place, over the KubeApi
and CsiClient ports. It answers with an :class:`Outcome`; it never sleeps, retries or provisions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from provisioner.errors import ZonalError
from provisioner.ports.csi import CsiClient
from provisioner.ports.kube import Kind, KubeApi, KubeConflict, KubeError, KubeNotFound, Lister, Obj
from provisioner.provisioning.outcome import Outcome, Step
from provisioner.provisioning.request import annotations_of, deletion_secret_reference, read_secret
from provisioner.provisioning.settings import (
    ANN_DELETION_SECRET_NAME,
    ANN_DELETION_SECRET_NAMESPACE,
    ANN_PROVISIONED_BY,
    FINALIZER,
)

log = logging.getLogger(__name__)

ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"  # still read by GetPersistentVolumeClass

EventSink = Callable[[Obj, Kind, str, str, str], None]  # (object, kind, type, reason, message)


class VolumeDeleter:
    def __init__(self, kube: KubeApi, csi: CsiClient, lister: Lister, driver: str, event: EventSink) -> None:
        self.kube = kube
        self.csi = csi
        self.lister = lister
        self.driver = driver
        self.event = event

    def pv_is_ours(self, pv: Obj) -> bool:
        return annotations_of(pv).get(ANN_PROVISIONED_BY) == self.driver

    def delete(self, pv: Obj) -> Outcome:
        """Released + Delete → DeleteVolume, delete the PV, drop the finalizer; Retain: finalizer only."""
        if not self.pv_is_ours(pv):
            return Outcome(Step.IGNORED, "not provisioned by this driver")
        spec, meta = pv.get("spec", {}), pv["metadata"]
        phase = pv.get("status", {}).get("phase", "")
        deleting = bool(meta.get("deletionTimestamp"))
        if phase not in ("Released", "Failed") and not (deleting and phase in ("Available", "")):
            return Outcome(Step.IGNORED, f"phase {phase}")
        if spec.get("persistentVolumeReclaimPolicy", "Delete") != "Delete":
            return self._drop_finalizer(pv)
        attached = [
            va
            for va in self.lister.list(Kind.VOLUME_ATTACHMENT)
            if va.get("spec", {}).get("source", {}).get("persistentVolumeName") == meta["name"]
        ]
        if attached:
            node = attached[0].get("spec", {}).get("nodeName", "")
            message = f"persistentvolume {meta['name']} is still attached to node {node}"
            self.event(pv, Kind.PV, "Warning", "VolumeFailedDelete", message)
            return Outcome(Step.RETRY, message)
        handle = (spec.get("csi") or {}).get("volumeHandle", "")
        try:
            self.csi.delete_volume(handle, self._deletion_secrets(pv))
        except ZonalError as e:
            self.event(pv, Kind.PV, "Warning", "VolumeFailedDelete", str(e))
            return Outcome(Step.RETRY, str(e))
        outcome = self._drop_finalizer(pv)
        if outcome.step is not Step.DONE:
            return outcome
        try:
            self.kube.delete(Kind.PV, meta["name"])
        except KubeNotFound:
            pass
        except KubeError as e:
            return Outcome(Step.RETRY, f"deleting PV: {e}")
        return Outcome(Step.DONE, f"deleted {handle}")

    def _deletion_secrets(self, pv: Obj) -> Mapping[str, str]:
        """The annotations' secret; without both annotations, the class's provisioner secret (sidecar's
        handleSecretsForDeletion). Raises InvalidArgument when the class's templates do not resolve."""
        ann = annotations_of(pv)
        if ANN_DELETION_SECRET_NAME in ann and ANN_DELETION_SECRET_NAMESPACE in ann:
            name, namespace = ann[ANN_DELETION_SECRET_NAME], ann[ANN_DELETION_SECRET_NAMESPACE]
        else:
            spec = pv.get("spec") or {}
            sc_name = spec.get("storageClassName") or ann.get(ANN_BETA_STORAGE_CLASS, "")
            sc = self.lister.get(Kind.STORAGE_CLASS, sc_name) if sc_name else None
            ref = deletion_secret_reference(pv, sc) if sc is not None else None
            namespace, name = ref or ("", "")
        if not (name and namespace):
            return {}
        try:
            return read_secret(self.kube, namespace, name)
        except ZonalError as e:  # the secret may already be gone; deletion proceeds without it
            log.warning("no deletion secret for %s: %s", pv["metadata"]["name"], e)
            return {}

    def _drop_finalizer(self, pv: Obj) -> Outcome:
        name = pv["metadata"]["name"]
        for _ in range(3):
            try:
                current = self.kube.get(Kind.PV, name)
            except KubeNotFound:
                return Outcome(Step.DONE, "PV already gone")
            finalizers = list(current["metadata"].get("finalizers") or ())
            if FINALIZER not in finalizers:
                return Outcome(Step.DONE, "no finalizer")
            current["metadata"]["finalizers"] = [f for f in finalizers if f != FINALIZER]
            try:
                self.kube.replace(Kind.PV, current)
                return Outcome(Step.DONE, "finalizer removed")
            except KubeConflict:
                continue
            except KubeNotFound:
                return Outcome(Step.DONE, "PV already gone")
            except KubeError as e:
                return Outcome(Step.RETRY, f"removing finalizer: {e}")
        return Outcome(Step.RETRY, "removing finalizer: conflicts")
