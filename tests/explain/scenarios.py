"""Cluster scenarios for the explain tests, built with the MemoryKube builders and the real loop core."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from provisioner.model import LEGACY_ZONE_KEY, ZONE_KEY, Volume, VolumeState
from provisioner.ports.csi import CreatedVolume, CreateVolumeRequest
from provisioner.ports.kube import Kind, Obj
from provisioner.provisioning.core import ProvisionerCore, Step
from provisioner.provisioning.settings import ProvisionerConfig
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud
from tests.fakes.csi_client import FakeCsiClient
from tests.fakes.kube import FakeKube, claim, storage_class, three_zone_cluster
from tests.provisioner.conftest import DirectLister

DRIVER = "zonal.csi.dev"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


class EbsCsiClient(FakeCsiClient):
    """The fake CSI controller answering with EBS-shaped volume ids (``vol-`` + 17 hex digits)."""

    def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        created = super().create_volume(request)
        number = int(created.volume_id.removeprefix("vol-"))
        return dataclasses.replace(created, volume_id=f"vol-{number + 0xABC000:017x}")


def cluster() -> FakeKube:
    kube = FakeKube()
    three_zone_cluster(kube, DRIVER, ZONES)
    return kube


def loop_core(kube: FakeKube, csi: FakeCsiClient) -> ProvisionerCore:
    return ProvisionerCore(
        kube,
        csi,
        DirectLister(kube),
        ProvisionerConfig(),
        driver=DRIVER,
        plugin_caps=csi.plugin_caps,
        controller_caps=csi.controller_caps,
        clock=FakeClock(),
        rng=random.Random(1),
    )


def add_claim(
    kube: FakeKube,
    name: str,
    binding: str = "WaitForFirstConsumer",
    node_name: str = "",
    allowed_zones: tuple[str, ...] = (),
    sc_name: str = "gp3",
) -> Obj:
    if kube.find(Kind.STORAGE_CLASS, sc_name) is None:
        kube.create(
            Kind.STORAGE_CLASS,
            storage_class(sc_name, DRIVER, binding=binding, allowed_zones=allowed_zones, type="gp3"),
        )
    return kube.create(Kind.CLAIM, claim(name, sc_name, DRIVER, node_name=node_name))


def provision(kube: FakeKube, name: str, namespace: str = "default") -> tuple[Obj, FakeCsiClient]:
    """Run the real loop core on the claim, then bind claim and PV as the PV controller would."""
    csi = EbsCsiClient(name=DRIVER)
    outcome = loop_core(kube, csi).provision(kube.get(Kind.CLAIM, name, namespace))
    assert outcome.step is Step.DONE, outcome
    pv_name = outcome.message
    bind(kube, name, pv_name, namespace)
    return kube.get(Kind.PV, pv_name), csi


def bind(kube: FakeKube, claim_name: str, pv_name: str, namespace: str = "default") -> None:
    kube.patch(Kind.CLAIM, claim_name, namespace, {"spec": {"volumeName": pv_name}})
    kube.set_status(Kind.CLAIM, claim_name, namespace, {"phase": "Bound"})
    kube.set_status(Kind.PV, pv_name, "", {"phase": "Bound"})


def csi_pv(name: str, claim_name: str, zones: tuple[str, ...], handle: str = "vol-0123456789abcdef0") -> Obj:
    """A CSI PV pinned by nodeAffinity to ``zones`` (empty: no affinity)."""
    spec: dict[str, Any] = {
        "capacity": {"storage": "4Gi"},
        "accessModes": ["ReadWriteOnce"],
        "csi": {"driver": DRIVER, "volumeHandle": handle},
        "claimRef": {"namespace": "default", "name": claim_name},
        "storageClassName": "gp3",
    }
    if zones:
        spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": ZONE_KEY, "operator": "In", "values": list(zones)}]}
                ]
            }
        }
    return {"metadata": {"name": name}, "spec": spec}


def in_tree_pv(name: str, claim_name: str, zone: str) -> Obj:
    """A PV the in-tree plugin created: zone labels (PersistentVolumeLabel admission), no nodeAffinity."""
    return {
        "metadata": {
            "name": name,
            "labels": {LEGACY_ZONE_KEY: zone, "failure-domain.beta.kubernetes.io/region": "us-east-1"},
        },
        "spec": {
            "capacity": {"storage": "4Gi"},
            "accessModes": ["ReadWriteOnce"],
            "awsElasticBlockStore": {"volumeID": f"aws://{zone}/vol-0123456789abcdef0", "fsType": "ext4"},
            "claimRef": {"namespace": "default", "name": claim_name},
            "storageClassName": "gp2",
        },
    }


def bound_claim_with_pv(
    kube: FakeKube, claim_name: str, pv: Obj, binding: str = "WaitForFirstConsumer"
) -> None:
    sc_name = str(pv["spec"].get("storageClassName") or "gp3")
    add_claim(kube, claim_name, binding=binding, sc_name=sc_name)
    kube.create(Kind.PV, pv)
    bind(kube, claim_name, pv["metadata"]["name"])


def cloud_with(volume_id: str, zone: str, zones: tuple[str, ...] = ZONES) -> FakeCloud:
    from provisioner.model import Zone

    cloud = FakeCloud(zones=tuple(Zone(z, f"use1-az{i}") for i, z in enumerate(zones, 1)))
    cloud.add_volume(Volume(volume_id, 4, zone, VolumeState.IN_USE))
    return cloud


STUCK = (
    "0/3 nodes are available: 3 node(s) had volume node affinity conflict. "
    "preemption: 0/3 nodes are available"
)


def pod(name: str, claims: dict[str, str], message: str = STUCK, node_name: str = "") -> Obj:
    """A pod using ``claims`` (volume name → claim name); Pending with ``message`` unless ``node_name``."""
    status: dict[str, Any] = {"phase": "Running" if node_name else "Pending"}
    if not node_name:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        ]
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "busybox"}],
        "volumes": [{"name": v, "persistentVolumeClaim": {"claimName": c}} for v, c in claims.items()],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": status}
