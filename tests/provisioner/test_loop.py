"""The running loop (informers, work queues, workers, leader election) against the fake cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from provisioner.errors import FailedPrecondition, OperationInProgress, ResourceExhausted, Unavailable
from provisioner.ports.clock import SystemClock
from provisioner.ports.csi import Cancelled, ControllerCapability, PluginCapability
from provisioner.ports.kube import Kind, Obj
from provisioner.provisioning.loop import DriverFacts, ProvisionerLoop, discover_driver, run_provisioner
from provisioner.provisioning.settings import ProvisionerConfig
from provisioner.provisioning.workqueue import Backoff
from tests.fakes.clock import FakeClock
from tests.fakes.csi_client import FakeCsiClient
from tests.fakes.kube import ZONE, FakeKube, claim, storage_class
from tests.provisioner.conftest import DRIVER

FAST = ProvisionerConfig(
    worker_threads=4, retry_interval_start=0.01, retry_interval_max=0.05, watch_timeout=0.2, identity="test"
)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def facts(csi: FakeCsiClient) -> DriverFacts:
    return discover_driver(csi, SystemClock(), threading.Event())


@pytest.fixture
def loop(kube: FakeKube, csi: FakeCsiClient) -> Iterator[ProvisionerLoop]:
    kube.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER))
    kube.create(Kind.STORAGE_CLASS, storage_class("now", DRIVER, binding="Immediate"))
    running = ProvisionerLoop(kube, csi, FAST, facts(csi))
    running.start(sync_timeout=5)
    yield running
    running.stop()


def pv_zone(kube: FakeKube, uid: str) -> str | None:
    pv = kube.find(Kind.PV, f"pvc-{uid}")
    if pv is None:
        return None
    return str(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    )


def test_backoff_doubles_from_one_second_to_five_minutes() -> None:
    b = Backoff(1.0, 300.0)
    delays = [b.when("k") for _ in range(11)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    b.forget("k")
    assert b.when("k") == 1


def test_refuses_a_driver_that_cannot_create_volumes() -> None:
    no_ctrl = FakeCsiClient(plugin_caps=frozenset())
    with pytest.raises(FailedPrecondition, match="CONTROLLER_SERVICE"):
        facts(no_ctrl)
    no_create = FakeCsiClient(
        plugin_caps=frozenset({PluginCapability.CONTROLLER_SERVICE}), controller_caps=frozenset()
    )
    with pytest.raises(FailedPrecondition, match=ControllerCapability.CREATE_DELETE_VOLUME.value):
        facts(no_create)


def test_wffc_and_immediate_claims(kube: FakeKube, loop: ProvisionerLoop) -> None:
    waiting = kube.create(Kind.CLAIM, claim("data-a", "fast", DRIVER))
    wffc = kube.create(Kind.CLAIM, claim("data-b", "fast", DRIVER, node_name="node-2"))
    now = kube.create(Kind.CLAIM, claim("data-c", "now", DRIVER))
    wait_for(lambda: pv_zone(kube, wffc["metadata"]["uid"]) and pv_zone(kube, now["metadata"]["uid"]))
    assert pv_zone(kube, wffc["metadata"]["uid"]) == "us-east-1c"
    assert pv_zone(kube, waiting["metadata"]["uid"]) is None
    # The scheduler picks a node for the waiting claim: the annotation change is enough to act.
    kube.patch(
        Kind.CLAIM,
        "data-a",
        "default",
        {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "node-0"}}},
    )
    wait_for(lambda: pv_zone(kube, waiting["metadata"]["uid"]) == "us-east-1a")


def test_reschedule_then_provision_on_the_new_node(
    kube: FakeKube, csi: FakeCsiClient, loop: ProvisionerLoop
) -> None:
    csi.errors.append(ResourceExhausted("us-east-1b is full"))
    c = kube.create(Kind.CLAIM, claim("data-r", "fast", DRIVER, node_name="node-1"))

    def unselected() -> bool:
        current = kube.find(Kind.CLAIM, "data-r", "default")
        return (
            current is not None
            and "volume.kubernetes.io/selected-node" not in current["metadata"]["annotations"]
        )

    wait_for(unselected)
    kube.patch(
        Kind.CLAIM,
        "data-r",
        "default",
        {"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "node-2"}}},
    )
    wait_for(lambda: pv_zone(kube, c["metadata"]["uid"]) == "us-east-1c")


def test_retry_after_aborted_sends_identical_requirements(
    kube: FakeKube, csi: FakeCsiClient, loop: ProvisionerLoop
) -> None:
    csi.errors.extend([OperationInProgress("creating"), OperationInProgress("still creating")])
    c = kube.create(Kind.CLAIM, claim("data-x-1", "now", DRIVER))
    wait_for(lambda: pv_zone(kube, c["metadata"]["uid"]))
    creates = csi.creates_for(f"pvc-{c['metadata']['uid']}")
    assert len(creates) == 3
    assert creates[0].requirement is not None
    assert all(r.requirement == creates[0].requirement for r in creates)


def test_deletion_with_and_without_attachment(
    kube: FakeKube, csi: FakeCsiClient, loop: ProvisionerLoop
) -> None:
    c = kube.create(Kind.CLAIM, claim("data-d", "fast", DRIVER, node_name="node-0"))
    name = f"pvc-{c['metadata']['uid']}"
    wait_for(lambda: kube.find(Kind.PV, name))
    va = {
        "metadata": {"name": "va-1"},
        "spec": {"nodeName": "node-0", "source": {"persistentVolumeName": name}},
    }
    seen = threading.Event()

    def on_attachment(type_: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None and new["metadata"]["name"] == "va-1":
            seen.set()

    # The informer stores an object before it emits the event: once seen, the deleter's view holds it.
    loop.informers[Kind.VOLUME_ATTACHMENT].handler = on_attachment
    kube.create(Kind.VOLUME_ATTACHMENT, va)
    assert seen.wait(30), "the VolumeAttachment informer never saw va-1"
    kube.set_status(Kind.PV, name, "", {"phase": "Released"})
    wait_for(lambda: any(e["reason"] == "VolumeFailedDelete" for e in kube.objects(Kind.EVENT)))
    assert csi.deletes == [] and kube.find(Kind.PV, name) is not None
    kube.delete(Kind.VOLUME_ATTACHMENT, "va-1")
    wait_for(lambda: kube.find(Kind.PV, name) is None)
    assert csi.deletes == ["vol-0000"]


def test_wrong_zone_answer_is_caught(kube: FakeKube, csi: FakeCsiClient, loop: ProvisionerLoop) -> None:
    csi.force_zone = "us-east-1a"
    c = kube.create(Kind.CLAIM, claim("data-w", "fast", DRIVER, node_name="node-2"))
    wait_for(lambda: len(csi.deletes) >= 1)
    assert kube.find(Kind.PV, f"pvc-{c['metadata']['uid']}") is None
    warnings = [e["message"] for e in kube.objects(Kind.EVENT) if e["type"] == "Warning"]
    assert any("node affinity" in w for w in warnings)
    csi.force_zone = ""
    wait_for(lambda: pv_zone(kube, c["metadata"]["uid"]) == "us-east-1c")


def test_watch_expiry_relists_and_keeps_working(kube: FakeKube, loop: ProvisionerLoop) -> None:
    informer = loop.informers[Kind.CLAIM]
    before = informer.relists
    kube.compact()
    c = kube.create(Kind.CLAIM, claim("data-g", "fast", DRIVER, node_name="node-0"))
    wait_for(lambda: pv_zone(kube, c["metadata"]["uid"]))
    wait_for(lambda: informer.relists > before)


def test_claim_deletion_drops_the_cached_requirement(
    kube: FakeKube, csi: FakeCsiClient, loop: ProvisionerLoop
) -> None:
    csi.errors.extend([Unavailable("down")] * 1000)
    c = kube.create(Kind.CLAIM, claim("data-z", "fast", DRIVER, node_name="node-0"))
    uid = c["metadata"]["uid"]
    wait_for(lambda: loop.core.cached_requirement(uid)[0])
    kube.delete(Kind.CLAIM, "data-z", "default")
    wait_for(lambda: not loop.core.cached_requirement(uid)[0])
    csi.errors.clear()


def test_two_replicas_with_leader_election_provision_each_claim_once(
    kube: FakeKube, csi: FakeCsiClient
) -> None:
    kube.create(Kind.STORAGE_CLASS, storage_class("now", DRIVER, binding="Immediate"))
    config = ProvisionerConfig(
        worker_threads=4,
        retry_interval_start=0.01,
        retry_interval_max=0.05,
        watch_timeout=0.2,
        leader_election=True,
        leader_election_lease_duration=0.6,
        leader_election_renew_deadline=0.4,
        leader_election_retry_period=0.05,
    )
    stops = {"a": threading.Event(), "b": threading.Event()}
    loops: dict[str, list[ProvisionerLoop]] = {"a": [], "b": []}
    threads = []
    for name in ("a", "b"):
        cfg = ProvisionerConfig(**{**config.__dict__, "identity": f"replica-{name}"})
        t = threading.Thread(
            target=run_provisioner,
            args=(kube, csi, cfg, facts(csi), stops[name]),
            kwargs={"on_loop": loops[name]},
            daemon=True,
        )
        t.start()
        threads.append(t)
    claims = [kube.create(Kind.CLAIM, claim(f"data-s-{i}", "now", DRIVER)) for i in range(6)]
    wait_for(lambda: all(pv_zone(kube, c["metadata"]["uid"]) for c in claims))
    wait_for(lambda: loops["a"] or loops["b"])
    leader = "a" if loops["a"] else "b"
    follower = "b" if leader == "a" else "a"
    assert loops[follower] == []
    for c in claims:
        assert len(csi.creates_for(f"pvc-{c['metadata']['uid']}")) == 1
    lease = kube.find(Kind.LEASE, "zonal-csi-dev", "default")
    assert lease is not None and lease["spec"]["holderIdentity"] == f"replica-{leader}"

    stops[leader].set()  # graceful stop releases the Lease; the other replica takes over
    wait_for(lambda: loops[follower])
    late = kube.create(Kind.CLAIM, claim("data-late", "now", DRIVER))
    wait_for(lambda: pv_zone(kube, late["metadata"]["uid"]))
    assert len(csi.creates_for(f"pvc-{late['metadata']['uid']}")) == 1
    assert len(csi.creates) == 7
    stops[follower].set()
    for t in threads:
        t.join(timeout=5)
    assert ZONE in kube.objects(Kind.NODE)[0]["metadata"]["labels"]


class _LateDriver(FakeCsiClient):
    """A driver whose Probe fails ``failures`` times (each try moves the clock 3 s), then answers; with
    ``stop`` it never answers and sets ``stop`` instead."""

    def __init__(self, clock: FakeClock, failures: int, stop: threading.Event | None = None) -> None:
        super().__init__()
        self.clock, self.failures, self.stop, self.probes = clock, failures, stop, 0

    def probe(self) -> bool:
        self.probes += 1
        self.clock.advance(3.0)
        if self.probes > self.failures and self.stop is None:
            return True
        if self.probes > self.failures and self.stop is not None:
            self.stop.set()
        raise Unavailable("no socket at /x")


def test_discover_driver_reports_its_wait_every_interval_of_clock_time() -> None:
    clock = FakeClock()
    reports: list[tuple[float, str]] = []
    found = discover_driver(
        _LateDriver(clock, failures=10),
        clock,
        threading.Event(),
        probe_interval=0.0,
        report=lambda seconds, error: reports.append((seconds, error)),
        report_every=10.0,
    )
    assert found.name == "zonal.csi.dev"
    # Ten failed probes of 3 s each: a report at the first probe at or past each 10 s mark.
    assert reports == [(12.0, "no socket at /x"), (24.0, "no socket at /x")]


def test_discover_driver_stopped_while_waiting_is_cancelled_not_an_error() -> None:
    clock, stop = FakeClock(), threading.Event()
    with pytest.raises(Cancelled, match="stopped before the CSI driver answered"):
        discover_driver(_LateDriver(clock, 2, stop), clock, stop, probe_interval=0.0)
