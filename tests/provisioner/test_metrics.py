"""The provisioner loop records its queue depth and per-claim provisioning time."""

from __future__ import annotations

from provisioner.metrics import Metrics
from provisioner.ports.kube import Kind
from provisioner.provisioning.loop import ProvisionerLoop
from tests.fakes.csi_client import FakeCsiClient
from tests.fakes.kube import FakeKube, claim, storage_class
from tests.provisioner.conftest import DRIVER
from tests.provisioner.test_loop import FAST, facts, pv_zone, wait_for


def test_claim_time_and_queue_depth_are_recorded(kube: FakeKube, csi: FakeCsiClient) -> None:
    kube.create(Kind.STORAGE_CLASS, storage_class("now", DRIVER, binding="Immediate"))
    metrics = Metrics()
    loop = ProvisionerLoop(kube, csi, FAST, facts(csi), metrics=metrics)
    loop.start(sync_timeout=5)
    try:
        created = [kube.create(Kind.CLAIM, claim(f"data-{i}", "now", DRIVER)) for i in range(3)]
        wait_for(lambda: all(pv_zone(kube, c["metadata"]["uid"]) for c in created))
        wait_for(
            lambda: (
                metrics.registry.get_sample_value(
                    "zonal_provisioner_claim_duration_seconds_count", {"result": "provisioned"}
                )
                == 3
            )
        )
    finally:
        loop.stop()
    text = metrics.exposition().decode()
    assert 'zonal_provisioner_queue_depth{queue="claims"}' in text
    assert metrics.registry.get_sample_value("zonal_provisioner_queue_depth", {"queue": "claims"}) == 0
