"""Every ``zonal doctor`` finding: a cluster that has it and a near miss that does not, each read from the
in-memory cluster and through the official client against the HTTP fake API. EC2 checks run against the
simulator (through boto3), and against an endpoint that does not answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import CloudConfig
from provisioner.doctor import findings as F
from provisioner.doctor import run_doctor
from provisioner.doctor.findings import DoctorReport, Severity
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.embedded.kube.memory import MemoryKube
from provisioner.kube.client import KubeClient, k8s
from provisioner.model import EBS_ZONE_KEY, LEGACY_ZONE_KEY, ZONE_KEY, VolumeSpec
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind, KubeApi, Obj
from provisioner.relocate.journal import ANN_JOURNAL, Journal
from tests.fakes.kube import storage_class
from tests.fakes.kube_http import FakeApiServer

DRIVER = "zonal.csi.dev"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
CONFLICT = "0/3 nodes are available: 3 node(s) had volume node affinity conflict."


@dataclass
class Cluster:
    kube: MemoryKube
    sim: Simulator
    cloud: Ec2Cloud
    instances: dict[str, str]
    volume: str  # the EBS volume of claim default/data, in us-east-1b


def affinity(zone: str, key: str = ZONE_KEY) -> dict[str, Any]:
    return {
        "required": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": "In", "values": [zone]}]}]
        }
    }


def add_node(
    c: Cluster, name: str, zone: str, *, csinode: bool = True, labels: dict[str, str] | None = None
) -> None:
    instance = c.sim.create_instance(zone) if zone in ZONES else f"i-{abs(hash(name)) % 10**17:017x}"
    c.instances[name] = instance
    node_labels = {ZONE_KEY: zone} if labels is None else labels
    c.kube.create(
        Kind.NODE,
        {
            "metadata": {"name": name, "labels": node_labels},
            "spec": {"providerID": f"aws:///{zone}/{instance}"},
        },
    )
    if csinode:
        c.kube.create(
            Kind.CSINODE,
            {
                "metadata": {"name": name},
                "spec": {"drivers": [{"name": DRIVER, "nodeID": instance, "topologyKeys": [ZONE_KEY]}]},
            },
        )


def csi_pv(name: str, claim: str, volume_id: str, zone: str | None) -> Obj:
    spec: dict[str, Any] = {
        "capacity": {"storage": "4Gi"},
        "accessModes": ["ReadWriteOnce"],
        "csi": {"driver": DRIVER, "volumeHandle": volume_id},
        "claimRef": {"namespace": "default", "name": claim},
        "storageClassName": "gp3",
        "persistentVolumeReclaimPolicy": "Delete",
    }
    if zone:
        spec["nodeAffinity"] = affinity(zone)
    return {"metadata": {"name": name}, "spec": spec}


def bound_claim(c: Cluster, name: str, pv: Obj) -> None:
    c.kube.create(
        Kind.CLAIM,
        {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "gp3",
                "volumeName": pv["metadata"]["name"],
            },
        },
    )
    created = c.kube.get(Kind.CLAIM, name, "default")
    pv["spec"]["claimRef"]["uid"] = created["metadata"]["uid"]
    c.kube.create(Kind.PV, pv)
    c.kube.set_status(Kind.CLAIM, name, "default", {"phase": "Bound"})
    c.kube.set_status(Kind.PV, pv["metadata"]["name"], "", {"phase": "Bound"})


def pod(
    name: str, claim: str, node: str = "", message: str = "", tolerations: list[Obj] | None = None
) -> Obj:
    status: dict[str, Any] = {"phase": "Running" if node else "Pending"}
    if message:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ]
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "busybox"}],
        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
    }
    if node:
        spec["nodeName"] = node
    if tolerations:
        spec["tolerations"] = tolerations
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": status}


def healthy() -> Cluster:
    """Three zones with a node running the driver in each, a WaitForFirstConsumer class, and claim
    default/data bound to a PV pinned to us-east-1b whose EBS volume is there, used by a running pod."""
    kube = MemoryKube()
    sim = Simulator(SimConfig(zones=ZONES, throttling=False, delays=Delays.instant()))
    cloud = Ec2Cloud(sim.client(), sim.region)
    volume = cloud.create_volume(VolumeSpec("pv-data", 4), "us-east-1b", "t-data").volume_id
    c = Cluster(kube, sim, cloud, {}, volume)
    for zone, name in zip(ZONES, ("node-a", "node-b", "node-c"), strict=True):
        add_node(c, name, zone)
    kube.create(Kind.STORAGE_CLASS, storage_class("gp3", DRIVER, type="gp3"))
    bound_claim(c, "data", csi_pv("pv-data", "data", volume, "us-east-1b"))
    kube.create(Kind.POD, pod("web-0", "data", node="node-b"))
    return c


# --- each finding: (code, make the cluster have it, a near miss that does not) ---------------------------


def cordon(c: Cluster, name: str) -> None:
    c.kube.patch(Kind.NODE, name, "", {"spec": {"unschedulable": True}})


def cordoned(c: Cluster, name: str, then: Callable[[], None]) -> None:
    cordon(c, name)
    then()


def taint(c: Cluster, name: str) -> None:
    c.kube.patch(
        Kind.NODE,
        name,
        "",
        {"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}},
    )


def sc(
    c: Cluster,
    name: str,
    binding: str = "WaitForFirstConsumer",
    zones: tuple[str, ...] = (),
    key: str = ZONE_KEY,
    driver: str = DRIVER,
) -> None:
    obj = storage_class(name, driver, binding=binding)
    if zones:
        obj["allowedTopologies"] = [{"matchLabelExpressions": [{"key": key, "values": list(zones)}]}]
    c.kube.create(Kind.STORAGE_CLASS, obj)


def journal(c: Cluster, finished: bool) -> None:
    j = Journal(
        "r1", "default", "data", "uid", "pv-data", c.volume, "us-east-1b", "us-east-1c", "Delete", "pvc-r1"
    )
    j.record("snapshot", "started", "2024-01-01T00:00:00Z")
    if finished:
        j.record("finish", "done", "2024-01-01T00:10:00Z")
    c.kube.patch(Kind.PV, "pv-data", "", {"metadata": {"annotations": {ANN_JOURNAL: j.encode()}}})


def in_tree_pv(c: Cluster, labels: bool) -> None:
    pv: Obj = {
        "metadata": {"name": "pv-old", "labels": {LEGACY_ZONE_KEY: "us-east-1a"} if labels else {}},
        "spec": {
            "capacity": {"storage": "4Gi"},
            "accessModes": ["ReadWriteOnce"],
            "awsElasticBlockStore": {"volumeID": "aws://us-east-1a/vol-0123456789abcdef0"},
            "claimRef": {"namespace": "default", "name": "old"},
        },
    }
    if not labels:
        pv["spec"]["nodeAffinity"] = affinity("us-east-1a")
    bound_claim(c, "old", pv)


def labelled_csinode(c: Cluster, node_labels: dict[str, str]) -> None:
    """node-x whose CSINode lists the EBS zone key for the driver."""
    c.kube.create(Kind.NODE, {"metadata": {"name": "node-x", "labels": node_labels}})
    entry = {"name": DRIVER, "nodeID": "i-x", "topologyKeys": [EBS_ZONE_KEY]}
    c.kube.create(Kind.CSINODE, {"metadata": {"name": "node-x"}, "spec": {"drivers": [entry]}})


def tainted_zone(c: Cluster, tolerate: bool) -> None:
    """node-b tainted; the pods using the claim (web-1 only) tolerate it or not."""
    taint(c, "node-b")
    c.kube.delete(Kind.POD, "web-0", "default")
    tolerations = [{"key": "dedicated", "operator": "Exists"}] if tolerate else None
    c.kube.create(Kind.POD, pod("web-1", "data", message="waiting", tolerations=tolerations))


def pending_pod(c: Cluster, message: str) -> None:
    c.kube.create(Kind.POD, pod("web-1", "data", message=message))


def pv_affinity(c: Cluster, zone: str, key: str = ZONE_KEY) -> None:
    c.kube.patch(Kind.PV, "pv-data", "", {"spec": {"nodeAffinity": affinity(zone, key)}})


Mutation = Callable[[Cluster], None]
# (code, an object the finding names, make the cluster have it, a near miss that does not)
SCENARIOS: list[tuple[str, str, Mutation, Mutation]] = [
    (
        F.IMMEDIATE_BINDING,
        "StorageClass imm",
        lambda c: sc(c, "imm", "Immediate"),
        lambda c: sc(c, "imm", "Immediate", driver="nfs.csi.k8s.io"),  # not a topology-aware driver
    ),
    (
        F.ALLOWED_KEY_UNKNOWN,
        "StorageClass rack",
        lambda c: sc(c, "rack", key="topology.example.com/rack", zones=("r1",)),
        lambda c: sc(c, "rack", zones=("us-east-1a",)),
    ),
    (
        F.ALLOWED_VALUE_UNKNOWN,
        "StorageClass ad",
        lambda c: sc(c, "ad", zones=("us-east-1a", "us-east-1d")),
        lambda c: sc(c, "ad", zones=("us-east-1a", "us-east-1b")),
    ),
    (
        F.CLASS_ZONES_WITHOUT_NODES,
        "StorageClass only-c",
        lambda c: cordoned(c, "node-c", lambda: sc(c, "only-c", zones=("us-east-1c",))),
        lambda c: sc(c, "only-c", zones=("us-east-1c",)),
    ),
    (
        F.CLASS_ZONE_WITHOUT_NODES,
        "StorageClass bc",
        lambda c: cordoned(c, "node-c", lambda: sc(c, "bc", "Immediate", zones=("us-east-1b", "us-east-1c"))),
        lambda c: cordoned(c, "node-c", lambda: sc(c, "bc", zones=("us-east-1b", "us-east-1c"))),
    ),
    (
        F.CSINODE_KEY_NOT_LABELLED,
        "CSINode node-x",
        lambda c: labelled_csinode(c, {ZONE_KEY: "us-east-1a"}),
        lambda c: labelled_csinode(c, {ZONE_KEY: "us-east-1a", EBS_ZONE_KEY: "us-east-1a"}),
    ),
    (
        F.NODE_WITHOUT_ZONE,
        "Node node-x",
        lambda c: add_node(c, "node-x", "us-east-1a", labels={}),
        lambda c: add_node(c, "node-x", "us-east-1a"),
    ),
    (
        F.ZONE_WITHOUT_DRIVER,
        "Node node-d",
        lambda c: add_node(c, "node-d", "us-east-1d", csinode=False),
        lambda c: add_node(c, "node-d", "us-east-1d"),
    ),
    (
        F.CLAIM_AT_RISK,
        "PersistentVolumeClaim default/data",
        lambda c: cordon(c, "node-b"),
        lambda c: cordoned(c, "node-b", lambda: add_node(c, "node-b2", "us-east-1b")),
    ),
    (
        F.CLAIM_AT_RISK,
        "PersistentVolumeClaim default/data",
        lambda c: tainted_zone(c, tolerate=False),
        lambda c: tainted_zone(c, tolerate=True),
    ),
    (
        F.POD_AFFINITY_CONFLICT,
        "Pod default/web-1",
        lambda c: pending_pod(c, CONFLICT),
        lambda c: pending_pod(c, "0/3 nodes are available: 3 Insufficient cpu."),
    ),
    (
        F.PV_NO_AFFINITY,
        "PersistentVolume pv-free",
        lambda c: bound_claim(c, "free", csi_pv("pv-free", "free", c.volume, None)),
        lambda c: bound_claim(c, "free", csi_pv("pv-free", "free", c.volume, "us-east-1b")),
    ),
    (
        F.IN_TREE_LABELS_ONLY,
        "PersistentVolume pv-old",
        lambda c: in_tree_pv(c, labels=True),
        lambda c: in_tree_pv(c, labels=False),
    ),
    (
        F.RELOCATION_UNFINISHED,
        "PersistentVolume pv-data",
        lambda c: journal(c, finished=False),
        lambda c: journal(c, finished=True),
    ),
]
EC2_SCENARIOS: list[tuple[str, str, Mutation, Mutation]] = [
    (
        F.NODE_ZONE_MISMATCH,
        "Node node-x",
        lambda c: add_node(c, "node-x", "us-east-1c", labels={ZONE_KEY: "us-east-1a"}),
        lambda c: add_node(c, "node-x", "us-east-1c"),
    ),
    (
        F.PV_ZONE_MISMATCH,
        "PersistentVolume pv-data",
        lambda c: pv_affinity(c, "us-east-1a"),
        lambda c: pv_affinity(c, "us-east-1b", EBS_ZONE_KEY),
    ),
    (
        F.PV_VOLUME_MISSING,
        "PersistentVolume pv-gone",
        lambda c: bound_claim(c, "gone", csi_pv("pv-gone", "gone", "vol-00000000000000bad", "us-east-1b")),
        lambda c: bound_claim(c, "gone", csi_pv("pv-gone", "gone", c.volume, "us-east-1b")),
    ),
]


@pytest.fixture(params=["memory", "official-client"])
def reader(request: pytest.FixtureRequest) -> Iterator[Callable[[MemoryKube], KubeApi]]:
    """How doctor reads the cluster: the MemoryKube itself, or the official client over HTTP."""
    servers: list[tuple[FakeApiServer, KubeClient]] = []

    def over_http(kube: MemoryKube) -> KubeApi:
        server = FakeApiServer(kube).start()
        cfg: Any = k8s.Configuration()
        cfg.host = server.url
        client = KubeClient(cfg, qps=0)
        servers.append((server, client))
        return client

    yield (lambda kube: kube) if request.param == "memory" else over_http
    for server, client in servers:
        client.close()
        server.stop()


def doctor(
    c: Cluster, read: Callable[[MemoryKube], KubeApi], cloud: Cloud | None = None, **kw: Any
) -> DoctorReport:
    return run_doctor(read(c.kube), kw.pop("driver", DRIVER), cloud, **kw)


def codes(report: DoctorReport) -> list[str]:
    return [f.code for f in report.findings]


def test_the_healthy_cluster_has_no_finding(reader: Callable[[MemoryKube], KubeApi]) -> None:
    c = healthy()
    report = doctor(c, reader, c.cloud)
    assert report.findings == [] and report.exit_status() == 0
    assert report.ec2_checked and report.ec2 == "EC2 us-east-1: 1 volume(s), 3 instance(s) checked"
    assert report.checked["nodes"] == 3 and report.checked["persistentvolumes"] == 1


@pytest.mark.parametrize(
    ("code", "obj", "make", "near"), SCENARIOS + EC2_SCENARIOS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_finding_and_its_near_miss(
    reader: Callable[[MemoryKube], KubeApi], code: str, obj: str, make: Mutation, near: Mutation
) -> None:
    c = healthy()
    make(c)
    report = doctor(c, reader, c.cloud)
    found = [f for f in report.findings if f.code == code]
    assert found, report.to_dict()
    assert any(obj in f.objects for f in found), found
    finding = found[0]
    assert finding.why and finding.remedy
    expected = 2 if any(f.severity is Severity.ERROR for f in report.findings) else 1
    assert report.exit_status() == expected

    other = healthy()
    near(other)
    assert code not in codes(doctor(other, reader, other.cloud))


def test_a_claim_at_risk_names_the_zone_to_relocate_to(reader: Callable[[MemoryKube], KubeApi]) -> None:
    c = healthy()
    cordon(c, "node-b")
    report = doctor(c, reader)
    assert codes(report) == [F.CLAIM_AT_RISK, F.ZONE_WITHOUT_DRIVER]  # errors first
    finding = report.findings[0]
    assert finding.severity is Severity.ERROR
    assert (
        "node-b cordoned (spec.unschedulable)" in finding.why
        and "used by pod(s) default/web-0" in finding.why
    )
    assert "zonal relocate pvc default/data --to-zone us-east-1a" in finding.remedy


def test_driver_not_installed_under_another_name(reader: Callable[[MemoryKube], KubeApi]) -> None:
    c = healthy()
    report = doctor(c, reader, driver="ebs.csi.aws.com")
    assert F.DRIVER_NOT_INSTALLED in codes(report)
    assert F.DRIVER_NOT_INSTALLED not in codes(doctor(healthy(), reader))


def test_without_ec2_the_ec2_checks_are_skipped_in_one_line(reader: Callable[[MemoryKube], KubeApi]) -> None:
    c = healthy()
    pv_affinity(c, "us-east-1a")
    report = doctor(c, reader, None, no_cloud_reason="no AWS region")
    assert F.PV_ZONE_MISMATCH not in codes(report)
    assert report.ec2 == (
        "EC2 checks skipped (node-zone-mismatch, pv-zone-mismatch, pv-volume-missing): no AWS region"
    )


@pytest.mark.parametrize("required", [True, False])
def test_an_unreachable_ec2_is_one_line_and_a_warning_only_when_asked_for(
    reader: Callable[[MemoryKube], KubeApi], required: bool
) -> None:
    from provisioner.cli.cloud import build_cloud

    dead = build_cloud(
        CloudConfig(
            kind="aws",
            region="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            retry_mode="standard",
            max_attempts=1,
            connect_timeout=1,
            read_timeout=1,
        )
    )
    report = doctor(healthy(), reader, dead, cloud_required=required)
    assert report.ec2.startswith("EC2 not reachable in us-east-1 (")
    assert "\n" not in report.ec2 and "Traceback" not in report.ec2
    assert codes(report) == ([F.EC2_UNREACHABLE] if required else [])
    assert report.exit_status() == (1 if required else 0)
