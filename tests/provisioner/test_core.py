"""ProvisionerCore against the stateful fake cluster and fake driver: one call, one decision."""

from __future__ import annotations

import base64

from provisioner.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    OperationInProgress,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from provisioner.model import AccessMode, AccessType
from provisioner.ports.csi import Cancelled
from provisioner.ports.kube import Kind, Obj
from provisioner.provisioning.core import ProvisionerCore, Step
from provisioner.provisioning.pv import decode_requirement, encode_requirement
from provisioner.provisioning.settings import FINALIZER, ProvisionerConfig
from provisioner.topology.affinity import node_satisfies
from tests.fakes.csi_client import FakeCsiClient
from tests.fakes.kube import ZONE, FakeKube, claim, storage_class
from tests.provisioner.conftest import DRIVER, make_core

SELECTED = "volume.kubernetes.io/selected-node"


def add_claim(kube: FakeKube, name: str = "data-web-0", node_name: str = "node-1", **sc_kw: object) -> Obj:
    if kube.find(Kind.STORAGE_CLASS, "fast") is None:
        kube.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER, **sc_kw))  # type: ignore[arg-type]
    return kube.create(Kind.CLAIM, claim(name, "fast", DRIVER, node_name=node_name))


def events(kube: FakeKube, reason: str) -> list[str]:
    return [e["message"] for e in kube.objects(Kind.EVENT) if e["reason"] == reason]


def test_wffc_claim_becomes_a_pv_in_the_selected_nodes_zone(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    c = add_claim(kube)
    outcome = core.provision(c)
    assert outcome.step is Step.DONE
    pv_name = f"pvc-{c['metadata']['uid']}"
    pv = kube.find(Kind.PV, pv_name)
    assert pv is not None
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == DRIVER
    assert pv["metadata"]["finalizers"] == [FINALIZER]
    assert pv["spec"]["capacity"] == {"storage": "4Gi"}
    assert pv["spec"]["csi"]["volumeHandle"] == "vol-0000"
    assert pv["spec"]["claimRef"]["uid"] == c["metadata"]["uid"]
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["us-east-1b"]}]}]
    assert node_satisfies(pv["spec"]["nodeAffinity"], {ZONE: "us-east-1b"})
    req = csi.creates[0]
    assert req.name == pv_name
    assert req.capacity.required_bytes == 4 * 1024**3
    assert [(c.access_type, c.access_mode) for c in req.capabilities] == [
        (AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
    ]
    assert req.requirement is not None and req.requirement.preferred[0] == {ZONE: "us-east-1b"}
    # What was sent is recorded on the PV, for `zonal explain`.
    recorded = pv["metadata"]["annotations"]["zonal.dev/accessibility-requirements"]
    assert decode_requirement(recorded) == req.requirement
    assert events(kube, "Provisioning") and events(kube, "ProvisioningSucceeded")


def test_wffc_claim_without_selected_node_waits(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    assert core.provision(add_claim(kube, node_name="")).step is Step.IGNORED
    assert csi.creates == []


def test_immediate_claim_is_provisioned_at_once_and_spread(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    zones = []
    for i in range(3):
        c = add_claim(kube, name=f"data-x-{i}", node_name="", binding="Immediate")
        assert core.provision(c).step is Step.DONE
        pv = kube.find(Kind.PV, f"pvc-{c['metadata']['uid']}")
        assert pv is not None
        zones.append(
            pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
        )
    assert sorted(zones) == ["us-east-1a", "us-east-1b", "us-east-1c"]


def test_foreign_claims_and_bound_claims_are_ignored(kube: FakeKube, core: ProvisionerCore) -> None:
    c = add_claim(kube)
    other = dict(
        c, metadata={**c["metadata"], "annotations": {"volume.kubernetes.io/storage-provisioner": "x"}}
    )
    assert core.provision(other).step is Step.IGNORED
    bound = dict(c, spec={**c["spec"], "volumeName": "pv-1"})
    assert core.provision(bound).step is Step.IGNORED


def test_resource_exhausted_reschedules(kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore) -> None:
    c = add_claim(kube)
    csi.errors.append(ResourceExhausted("no capacity in us-east-1b"))
    outcome = core.provision(c)
    assert outcome.step is Step.RESCHEDULED
    current = kube.find(Kind.CLAIM, "data-web-0", "default")
    assert current is not None and SELECTED not in current["metadata"]["annotations"]
    assert core.cached_requirement(c["metadata"]["uid"]) == (False, None)
    assert any("no capacity" in m for m in events(kube, "ProvisioningFailed"))


def test_resource_exhausted_without_selected_node_backs_off(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    c = add_claim(kube, node_name="", binding="Immediate")
    csi.errors.append(ResourceExhausted("full"))
    assert core.provision(c).step is Step.RETRY


def test_aborted_retries_with_identical_requirements(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    c = add_claim(kube)
    for err in (
        OperationInProgress("pending"),
        Unavailable("down"),
        DeadlineExceeded("slow"),
        Cancelled("gone"),
    ):
        csi.errors.append(err)
        assert core.provision(c).step is Step.RETRY
    # Meanwhile the cluster changes: a new zone appears and the selected node's zone label changes.
    kube.create(Kind.NODE, {"metadata": {"name": "node-9", "labels": {ZONE: "us-east-1d"}}})
    kube.create(
        Kind.CSINODE,
        {"metadata": {"name": "node-9"}, "spec": {"drivers": [{"name": DRIVER, "topologyKeys": [ZONE]}]}},
    )
    assert core.provision(c).step is Step.DONE
    first = csi.creates[0].requirement
    assert all(r.requirement == first for r in csi.creates)
    assert len(csi.creates) == 5
    assert core.cached_requirement(c["metadata"]["uid"]) == (False, None)


def test_invalid_argument_is_a_slow_retry_and_unimplemented_stops(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    c = add_claim(kube)
    csi.errors.append(InvalidArgument("bad type"))
    assert core.provision(c).step is Step.RETRY_SLOW
    csi.errors.append(Unimplemented("no"))
    assert core.provision(c).step is Step.STOP
    csi.errors.append(Internal("boom"))
    assert core.provision(c).step is Step.RETRY


def test_wrong_zone_answer_is_deleted_and_reported(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    c = add_claim(kube, allowed_zones=("us-east-1b", "us-east-1c"))
    csi.force_zone = "us-east-1a"
    outcome = core.provision(c)
    assert outcome.step is Step.RETRY
    assert "does not intersect" in outcome.message
    assert csi.deletes == ["vol-0000"] and csi.volumes == {}
    assert kube.objects(Kind.PV) == []
    assert any("vol-0000 deleted" in m for m in events(kube, "ProvisioningFailed"))


def test_answer_outside_the_selected_nodes_zone_is_caught(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    c = add_claim(kube)  # selected node-1 in us-east-1b; requisite is all three zones
    csi.force_zone = "us-east-1c"
    outcome = core.provision(c)
    assert outcome.step is Step.RETRY and "node affinity" in outcome.message
    assert kube.objects(Kind.PV) == []


def test_wrong_zone_is_accepted_with_the_fix_off(kube: FakeKube, csi: FakeCsiClient) -> None:
    core = make_core(kube, csi, ProvisionerConfig(validate_answer=False))
    csi.force_zone = "us-east-1c"
    assert core.provision(add_claim(kube)).step is Step.DONE


def test_smaller_volume_is_deleted_and_retried(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    csi.capacity_override = 1024**3
    outcome = core.provision(add_claim(kube))
    assert outcome.step is Step.RETRY and "less than requested" in outcome.message
    assert csi.deletes == ["vol-0000"]


def test_vanished_selected_node_reschedules(kube: FakeKube, core: ProvisionerCore) -> None:
    c = add_claim(kube, node_name="node-7")
    assert core.provision(c).step is Step.RESCHEDULED
    current = kube.find(Kind.CLAIM, "data-web-0", "default")
    assert current is not None and SELECTED not in current["metadata"]["annotations"]


def test_vanished_selected_node_retries_with_the_sidecar_behaviour(
    kube: FakeKube, csi: FakeCsiClient
) -> None:
    from provisioner.topology.requirements import RequirementFixes

    core = make_core(kube, csi, ProvisionerConfig(fixes=RequirementFixes.sidecar()))
    assert core.provision(add_claim(kube, node_name="node-7")).step is Step.RETRY


def test_cache_is_dropped_when_the_claim_goes(kube: FakeKube, csi: FakeCsiClient) -> None:
    for drop, kept in ((True, False), (False, True)):
        core = make_core(kube, csi, ProvisionerConfig(drop_cache_on_claim_delete=drop))
        c = add_claim(kube, name=f"c-{drop}")
        csi.errors.append(OperationInProgress("pending"))
        assert core.provision(c).step is Step.RETRY
        assert core.cached_requirement(c["metadata"]["uid"])[0]
        core.forget_claim(c["metadata"]["uid"])
        assert core.cached_requirement(c["metadata"]["uid"])[0] is kept


def test_request_parameters_secrets_and_metadata(kube: FakeKube, csi: FakeCsiClient) -> None:
    kube.create(
        Kind.SECRET,
        {
            "metadata": {"name": "creds-default", "namespace": "default"},
            "data": {"k": base64.b64encode(b"v").decode()},
        },
    )
    params = {
        "type": "gp3",
        "csi.storage.k8s.io/fstype": "xfs",
        "csi.storage.k8s.io/provisioner-secret-name": "creds-${pvc.namespace}",
        "csi.storage.k8s.io/provisioner-secret-namespace": "${pvc.namespace}",
        "csi.storage.k8s.io/node-stage-secret-name": "stage-${pvc.name}",
        "csi.storage.k8s.io/node-stage-secret-namespace": "kube-system",
    }
    core = make_core(kube, csi, ProvisionerConfig(extra_create_metadata=True, volume_name_uuid_length=8))
    c = add_claim(kube, **params)
    assert core.provision(c).step is Step.DONE
    req = csi.creates[0]
    pv_name = "pvc-" + c["metadata"]["uid"].replace("-", "")[:8]
    assert req.name == pv_name
    assert dict(req.parameters) == {
        "type": "gp3",
        "csi.storage.k8s.io/pvc/name": "data-web-0",
        "csi.storage.k8s.io/pvc/namespace": "default",
        "csi.storage.k8s.io/pv/name": pv_name,
    }
    assert dict(req.secrets) == {"k": "v"}
    assert req.capabilities[0].fs_type == "xfs"
    pv = kube.find(Kind.PV, pv_name)
    assert pv is not None
    assert pv["spec"]["csi"]["fsType"] == "xfs"
    assert pv["spec"]["csi"]["nodeStageSecretRef"] == {"namespace": "kube-system", "name": "stage-data-web-0"}
    ann = pv["metadata"]["annotations"]
    assert ann["volume.kubernetes.io/provisioner-deletion-secret-name"] == "creds-default"


def test_unknown_reserved_parameter_fails_the_claim(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    c = add_claim(kube, **{"csi.storage.k8s.io/bogus": "1"})
    assert core.provision(c).step is Step.RETRY
    assert csi.creates == []
    assert any("unknown parameter key" in m for m in events(kube, "ProvisioningFailed"))


def test_pv_zone_labels(kube: FakeKube, csi: FakeCsiClient) -> None:
    core = make_core(kube, csi, ProvisionerConfig(pv_zone_labels=True))
    c = add_claim(kube)
    assert core.provision(c).step is Step.DONE
    pv = kube.find(Kind.PV, f"pvc-{c['metadata']['uid']}")
    assert pv is not None
    assert pv["metadata"]["labels"] == {ZONE: "us-east-1b", "topology.kubernetes.io/region": "us-east-1"}


# --- deletion --------------------------------------------------------------------------------------------


def provisioned(kube: FakeKube, core: ProvisionerCore, reclaim: str = "Delete") -> Obj:
    c = add_claim(kube)
    assert core.provision(c).step is Step.DONE
    name = f"pvc-{c['metadata']['uid']}"
    pv = kube.find(Kind.PV, name)
    assert pv is not None
    pv["spec"]["persistentVolumeReclaimPolicy"] = reclaim
    kube.replace(Kind.PV, pv)
    return kube.set_status(Kind.PV, name, "", {"phase": "Released"})


def test_released_pv_is_deleted_with_its_volume(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    pv = provisioned(kube, core)
    assert core.delete(pv).step is Step.DONE
    assert csi.deletes == ["vol-0000"]
    assert kube.objects(Kind.PV) == []


def test_deletion_waits_for_attachments(kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore) -> None:
    pv = provisioned(kube, core)
    va = {
        "metadata": {"name": "csi-123"},
        "spec": {
            "attacher": DRIVER,
            "nodeName": "node-1",
            "source": {"persistentVolumeName": pv["metadata"]["name"]},
        },
    }
    kube.create(Kind.VOLUME_ATTACHMENT, va)
    outcome = core.delete(pv)
    assert outcome.step is Step.RETRY and "still attached to node node-1" in outcome.message
    assert csi.deletes == []
    assert events(kube, "VolumeFailedDelete")
    kube.delete(Kind.VOLUME_ATTACHMENT, "csi-123")
    assert core.delete(pv).step is Step.DONE
    assert csi.deletes == ["vol-0000"]


def test_failed_delete_volume_backs_off(kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore) -> None:
    pv = provisioned(kube, core)
    csi.delete_errors.append(Unavailable("ec2 throttled"))
    assert core.delete(pv).step is Step.RETRY
    assert kube.find(Kind.PV, pv["metadata"]["name"]) is not None


def test_retained_pv_loses_only_the_finalizer(
    kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore
) -> None:
    pv = provisioned(kube, core, reclaim="Retain")
    assert core.delete(pv).step is Step.DONE
    assert csi.deletes == []
    left = kube.find(Kind.PV, pv["metadata"]["name"])
    assert left is not None and left["metadata"]["finalizers"] == []


def test_bound_pv_is_left_alone(kube: FakeKube, csi: FakeCsiClient, core: ProvisionerCore) -> None:
    pv = provisioned(kube, core)
    pv = kube.set_status(Kind.PV, pv["metadata"]["name"], "", {"phase": "Bound"})
    assert core.delete(pv).step is Step.IGNORED
    assert csi.deletes == []


def test_the_pv_records_the_requirements_that_were_sent() -> None:
    from provisioner.model import TopologyRequirement

    req = TopologyRequirement(
        requisite=(
            {"topology.kubernetes.io/zone": "us-east-1a"},
            {"topology.kubernetes.io/zone": "us-east-1b"},
        ),
        preferred=(
            {"topology.kubernetes.io/zone": "us-east-1b"},
            {"topology.kubernetes.io/zone": "us-east-1a"},
        ),
    )
    assert decode_requirement(encode_requirement(req)) == req
    assert decode_requirement("not json") is None
