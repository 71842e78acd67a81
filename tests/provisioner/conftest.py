"""Shared pieces for the provisioner-loop tests: a fake cluster with three zones and a core over it."""

from __future__ import annotations

import random

import pytest

from provisioner.ports.kube import Kind, Obj
from provisioner.provisioning.core import ProvisionerCore
from provisioner.provisioning.settings import ProvisionerConfig
from tests.fakes.clock import FakeClock
from tests.fakes.csi_client import FakeCsiClient
from tests.fakes.kube import FakeKube, three_zone_cluster

DRIVER = "zonal.csi.dev"


class DirectLister:
    """The core's Lister read straight from the fake cluster (no informer lag)."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def get(self, kind: Kind, name: str, namespace: str = "") -> Obj | None:
        return self.kube.find(kind, name, namespace)

    def list(self, kind: Kind) -> list[Obj]:
        return self.kube.objects(kind)


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    three_zone_cluster(k, DRIVER)
    return k


@pytest.fixture
def csi() -> FakeCsiClient:
    return FakeCsiClient(name=DRIVER)


def make_core(kube: FakeKube, csi: FakeCsiClient, config: ProvisionerConfig | None = None) -> ProvisionerCore:
    return ProvisionerCore(
        kube,
        csi,
        DirectLister(kube),
        config or ProvisionerConfig(),
        driver=DRIVER,
        plugin_caps=csi.plugin_caps,
        controller_caps=csi.controller_caps,
        clock=FakeClock(),
        rng=random.Random(1),
    )


@pytest.fixture
def core(kube: FakeKube, csi: FakeCsiClient) -> ProvisionerCore:
    return make_core(kube, csi)
