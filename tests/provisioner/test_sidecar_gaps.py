"""Deletion secrets from the class, clone protection of source claims, and missing snapshot CRDs."""

from __future__ import annotations

import base64
import threading

import pytest

from provisioner.ports.clock import SystemClock
from provisioner.ports.csi import ControllerCapability
from provisioner.ports.kube import Kind, KubeUnavailable, Obj
from provisioner.provisioning.clone_protection import CLONE_FINALIZER
from provisioner.provisioning.core import ProvisionerCore, Step
from provisioner.provisioning.loop import ProvisionerLoop, discover_driver
from provisioner.provisioning.settings import ProvisionerConfig
from tests.fakes.csi_client import FakeCsiClient
from tests.fakes.kube import FakeKube, claim, storage_class
from tests.provisioner.conftest import DRIVER, make_core
from tests.provisioner.test_loop import FAST, wait_for

ANN_SECRET_NAME = "volume.kubernetes.io/provisioner-deletion-secret-name"
ANN_SECRET_NAMESPACE = "volume.kubernetes.io/provisioner-deletion-secret-namespace"
SECRET_NAME = "csi.storage.k8s.io/provisioner-secret-name"
SECRET_NAMESPACE = "csi.storage.k8s.io/provisioner-secret-namespace"


def events(kube: FakeKube, reason: str) -> list[str]:
    return [e["message"] for e in kube.objects(Kind.EVENT) if e["reason"] == reason]


def add_secret(kube: FakeKube, name: str, namespace: str, value: str) -> None:
    data = {"key": base64.b64encode(value.encode()).decode()}
    kube.create(Kind.SECRET, {"metadata": {"name": name, "namespace": namespace}, "data": data})


# --- deletion secrets from the StorageClass ---------------------------------------------------------------


def released_without_annotations(kube: FakeKube, core: ProvisionerCore, name: str = "data-web-0") -> Obj:
    """A Released PV as an older provisioner left it: no deletion-secret annotations."""
    kube.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER))
    c = kube.create(Kind.CLAIM, claim(name, "fast", DRIVER, node_name="node-1"))
    assert core.provision(c).step is Step.DONE
    pv = kube.find(Kind.PV, f"pvc-{c['metadata']['uid']}")
    assert pv is not None
    for key in (ANN_SECRET_NAME, ANN_SECRET_NAMESPACE):
        del pv["metadata"]["annotations"][key]
    kube.replace(Kind.PV, pv)
    return kube.set_status(Kind.PV, pv["metadata"]["name"], "", {"phase": "Released"})


def recreate_class(kube: FakeKube, **params: str) -> None:
    kube.delete(Kind.STORAGE_CLASS, "fast")
    sc = storage_class("fast", DRIVER)
    sc["parameters"] = dict(params)
    kube.create(Kind.STORAGE_CLASS, sc)


def test_deletion_secret_comes_from_the_class_with_the_pv_name_template(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    pv = released_without_annotations(kube, core)
    name = pv["metadata"]["name"]
    recreate_class(kube, **{SECRET_NAME: "creds-${pv.name}", SECRET_NAMESPACE: "kube-system"})
    add_secret(kube, f"creds-{name}", "kube-system", "from-class")
    assert core.delete(pv).step is Step.DONE
    assert csi.delete_secrets == [{"key": "from-class"}]
    assert kube.find(Kind.PV, name) is None


def test_claim_templates_resolve_from_the_claim_ref_as_the_sidecar_does(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    pv = released_without_annotations(kube, core)
    recreate_class(kube, **{SECRET_NAME: "creds-${pvc.name}", SECRET_NAMESPACE: "${pvc.namespace}"})
    add_secret(kube, "creds-data-web-0", "default", "claim-ref")
    assert core.delete(pv).step is Step.DONE
    assert csi.delete_secrets == [{"key": "claim-ref"}]


def test_annotations_win_over_the_class_and_empty_ones_mean_no_secret(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    kube.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER))
    c = kube.create(Kind.CLAIM, claim("data-web-0", "fast", DRIVER, node_name="node-1"))
    assert core.provision(c).step is Step.DONE
    name = f"pvc-{c['metadata']['uid']}"
    pv = kube.set_status(Kind.PV, name, "", {"phase": "Released"})
    assert pv["metadata"]["annotations"][ANN_SECRET_NAME] == ""  # recorded: "no secret"
    recreate_class(kube, **{SECRET_NAME: "creds", SECRET_NAMESPACE: "kube-system"})
    add_secret(kube, "creds", "kube-system", "ignored")
    assert core.delete(pv).step is Step.DONE
    assert csi.delete_secrets == [{}]


def test_missing_class_or_secret_deletes_without_secrets(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    pv = released_without_annotations(kube, core)
    recreate_class(kube, **{SECRET_NAME: "absent", SECRET_NAMESPACE: "kube-system"})
    assert core.delete(pv).step is Step.DONE  # the secret may already be gone: deletion proceeds
    kube.delete(Kind.STORAGE_CLASS, "fast")
    pv2 = released_without_annotations(kube, core, "data-web-1")
    kube.delete(Kind.STORAGE_CLASS, "fast")
    assert core.delete(pv2).step is Step.DONE
    assert csi.delete_secrets == [{}, {}]


def test_unresolvable_class_template_fails_the_deletion(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    pv = released_without_annotations(kube, core)
    recreate_class(kube, **{SECRET_NAME: "${pvc.annotations['team']}", SECRET_NAMESPACE: "kube-system"})
    outcome = core.delete(pv)
    assert outcome.step is Step.RETRY and "invalid tokens" in outcome.message
    assert csi.deletes == []
    assert events(kube, "VolumeFailedDelete")


# --- clone protection -------------------------------------------------------------------------------------

CLONING = frozenset(
    {
        ControllerCapability.CREATE_DELETE_VOLUME,
        ControllerCapability.CLONE_VOLUME,
        ControllerCapability.CREATE_DELETE_SNAPSHOT,
    }
)


@pytest.fixture
def cloning_csi() -> FakeCsiClient:
    return FakeCsiClient(name=DRIVER, controller_caps=CLONING)


def add_source(kube: FakeKube) -> Obj:
    kube.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER))
    pv = {
        "metadata": {"name": "pv-src"},
        "spec": {"csi": {"driver": DRIVER, "volumeHandle": "vol-src"}, "capacity": {"storage": "4Gi"}},
    }
    kube.create(Kind.PV, pv)
    src = claim("src", "fast", DRIVER, node_name="node-1")
    src["spec"]["volumeName"] = "pv-src"
    src["status"] = {"phase": "Bound"}
    return kube.create(Kind.CLAIM, src)


def add_clone(kube: FakeKube, name: str = "copy") -> Obj:
    c = claim(name, "fast", DRIVER, node_name="node-1")
    c["spec"]["dataSource"] = {"kind": "PersistentVolumeClaim", "name": "src"}
    return kube.create(Kind.CLAIM, c)


def source_finalizers(kube: FakeKube) -> list[str] | None:
    src = kube.find(Kind.CLAIM, "src", "default")
    return None if src is None else list(src["metadata"].get("finalizers") or ())


def test_source_claim_is_protected_before_create_volume(kube: FakeKube, cloning_csi: FakeCsiClient) -> None:
    core = make_core(kube, cloning_csi)
    add_source(kube)
    assert core.provision(add_clone(kube)).step is Step.DONE
    assert source_finalizers(kube) == [CLONE_FINALIZER]
    assert cloning_csi.creates[0].content_source is not None
    assert cloning_csi.creates[0].content_source.volume_id == "vol-src"
    # A second clone does not add the finalizer twice.
    assert core.provision(add_clone(kube, "copy-2")).step is Step.DONE
    assert source_finalizers(kube) == [CLONE_FINALIZER]


def test_failing_to_protect_the_source_stops_before_create_volume(
    kube: FakeKube, cloning_csi: FakeCsiClient
) -> None:
    core = make_core(kube, cloning_csi)
    add_source(kube)
    kube.fail_next["replace"] = KubeUnavailable("etcd is slow")
    outcome = core.provision(add_clone(kube))
    assert outcome.step is Step.RETRY and CLONE_FINALIZER in outcome.message
    assert cloning_csi.creates == []
    assert any(CLONE_FINALIZER in m for m in events(kube, "ProvisioningFailed"))


def test_source_is_released_only_when_deleted_and_no_clone_is_pending(
    kube: FakeKube, cloning_csi: FakeCsiClient
) -> None:
    core = make_core(kube, cloning_csi)
    add_source(kube)
    clone = add_clone(kube)
    assert core.provision(clone).step is Step.DONE
    src = kube.find(Kind.CLAIM, "src", "default")
    assert src is not None
    assert core.release_clone_source(src).step is Step.IGNORED  # not being deleted: kept, as the sidecar
    kube.delete(Kind.CLAIM, "src", "default")
    src = kube.find(Kind.CLAIM, "src", "default")
    assert src is not None and src["metadata"].get("deletionTimestamp")
    outcome = core.release_clone_source(src)
    assert outcome.step is Step.RETRY and "'copy' is in 'Pending' state" in outcome.message
    assert source_finalizers(kube) == [CLONE_FINALIZER]
    kube.set_status(Kind.CLAIM, "copy", "default", {"phase": "Bound"})
    assert core.release_clone_source(src).step is Step.DONE
    assert source_finalizers(kube) is None  # its last finalizer gone, the claim is deleted


def test_deleted_clone_releases_the_source(kube: FakeKube, cloning_csi: FakeCsiClient) -> None:
    core = make_core(kube, cloning_csi)
    add_source(kube)
    assert core.provision(add_clone(kube)).step is Step.DONE
    kube.delete(Kind.CLAIM, "src", "default")
    kube.delete(Kind.CLAIM, "copy", "default")
    src = kube.find(Kind.CLAIM, "src", "default")
    assert src is not None
    assert core.release_clone_source(src).step is Step.DONE
    assert source_finalizers(kube) is None


def test_loop_releases_the_source_when_the_clone_binds(kube: FakeKube, cloning_csi: FakeCsiClient) -> None:
    add_source(kube)
    loop = ProvisionerLoop(
        kube, cloning_csi, FAST, discover_driver(cloning_csi, SystemClock(), threading.Event())
    )
    loop.start(sync_timeout=5)
    try:
        clone = add_clone(kube)
        wait_for(lambda: kube.find(Kind.PV, f"pvc-{clone['metadata']['uid']}"))
        assert source_finalizers(kube) == [CLONE_FINALIZER]
        kube.delete(Kind.CLAIM, "src", "default")
        wait_for(lambda: any(k == "default/src" and o.step is Step.RETRY for k, o in loop.outcomes))
        assert source_finalizers(kube) == [CLONE_FINALIZER]
        kube.set_status(Kind.CLAIM, "copy", "default", {"phase": "Bound"})
        wait_for(lambda: source_finalizers(kube) is None)
    finally:
        loop.stop()


# --- snapshot CRDs ----------------------------------------------------------------------------------------


def add_restore(kube: FakeKube) -> Obj:
    kube.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER))
    c = claim("restored", "fast", DRIVER, node_name="node-1")
    c["spec"]["dataSource"] = {
        "apiGroup": "snapshot.storage.k8s.io",
        "kind": "VolumeSnapshot",
        "name": "snap",
    }
    return kube.create(Kind.CLAIM, c)


def test_missing_snapshot_crds_are_named_and_retried_slowly(
    kube: FakeKube, cloning_csi: FakeCsiClient
) -> None:
    core = make_core(kube, cloning_csi)
    kube.unserved.add(Kind.VOLUME_SNAPSHOT)
    outcome = core.provision(add_restore(kube))
    assert outcome.step is Step.RETRY_SLOW
    assert cloning_csi.creates == []
    failed = events(kube, "ProvisioningFailed")
    assert len(failed) == 1 and "snapshot CRDs" in failed[0] and "default/snap" in failed[0]


def test_missing_snapshot_with_crds_installed_is_a_plain_not_found(
    kube: FakeKube, cloning_csi: FakeCsiClient
) -> None:
    core = make_core(kube, cloning_csi, ProvisionerConfig())
    outcome = core.provision(add_restore(kube))
    assert outcome.step is Step.RETRY
    assert "snapshot default/snap not found" in outcome.message and "CRDs" not in outcome.message
