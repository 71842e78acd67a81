"""The running provisioner: informers feed two work queues (claims, PVs) whose workers call the core.

Why it exists: it is the only place with threads. It wires events to keys, keys to
:class:`~provisioner.provisioning.core.ProvisionerCore` calls, and outcomes back to the queue (forget,
back off, slow retry). It reads the driver's identity and capabilities at start and refuses to run when
the driver cannot create volumes. It must not make provisioning decisions itself.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from provisioner.errors import FailedPrecondition, first_line
from provisioner.ports.clock import Clock, SystemClock
from provisioner.ports.csi import Cancelled, ControllerCapability, CsiClient, PluginCapability
from provisioner.ports.kube import Kind, KubeApi, Obj
from provisioner.ports.observers import LoopObserver
from provisioner.provisioning.clone_protection import CLONE_FINALIZER, has_finalizer
from provisioner.provisioning.core import Outcome, ProvisionerCore, Step
from provisioner.provisioning.informer import Informer, Stores
from provisioner.provisioning.leader import LeaderElector
from provisioner.provisioning.request import clone_source_name
from provisioner.provisioning.settings import ProvisionerConfig
from provisioner.provisioning.workqueue import Backoff, WorkQueue, start_workers

log = logging.getLogger(__name__)

WATCHED = (Kind.CLAIM, Kind.PV, Kind.STORAGE_CLASS, Kind.NODE, Kind.CSINODE, Kind.VOLUME_ATTACHMENT)


@dataclass(frozen=True)
class DriverFacts:
    name: str
    plugin_caps: frozenset[PluginCapability]
    controller_caps: frozenset[ControllerCapability]


def discover_driver(
    csi: CsiClient,
    clock: Clock,
    stop: threading.Event,
    probe_interval: float = 1.0,
    report: Callable[[float, str], None] | None = None,
    report_every: float = 10.0,
) -> DriverFacts:
    """Wait for Probe, then read the plugin's name and capabilities.

    While it waits, ``report(seconds waited, last error)`` is called every ``report_every`` seconds of
    ``clock`` time, so a driver that never comes is visible. Raises Cancelled when ``stop`` is set
    before the driver answers, and FailedPrecondition when the driver cannot create volumes (no
    CONTROLLER_SERVICE plugin capability or no CREATE_DELETE_VOLUME controller capability).
    """
    started = clock.monotonic()
    next_report = started + report_every
    while not stop.is_set():
        try:
            if csi.probe():
                break
            last = "Probe answered not ready"
        except Exception as e:  # unreachable or unhealthy: keep probing, as the sidecar does
            last = first_line(e)
            log.info("waiting for the CSI driver: %s", last)
        now = clock.monotonic()
        if report is not None and now >= next_report:
            report(now - started, last)
            next_report = now + report_every
        stop.wait(probe_interval)
    if stop.is_set():
        raise Cancelled("stopped before the CSI driver answered")
    info = csi.plugin_info()
    plugin = csi.plugin_capabilities()
    if PluginCapability.CONTROLLER_SERVICE not in plugin:
        raise FailedPrecondition(
            f"CSI driver {info.name} does not support dynamic provisioning: "
            "plugin CONTROLLER_SERVICE capability is not reported"
        )
    controller = csi.controller_capabilities()
    if ControllerCapability.CREATE_DELETE_VOLUME not in controller:
        raise FailedPrecondition(
            f"CSI driver {info.name} does not support dynamic provisioning: "
            "controller CREATE_DELETE_VOLUME capability is not reported"
        )
    return DriverFacts(info.name, plugin, controller)


class ProvisionerLoop:
    def __init__(
        self,
        kube: KubeApi,
        csi: CsiClient,
        config: ProvisionerConfig,
        facts: DriverFacts,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: LoopObserver | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._first_seen: dict[str, float] = {}  # claim key → when the loop first queued it
        self.clock = clock or SystemClock()
        self.informers: dict[Kind, Informer] = {
            kind: Informer(kube, kind, watch_timeout=config.watch_timeout) for kind in WATCHED
        }
        self.informers[Kind.CLAIM].handler = self._on_claim
        self.informers[Kind.PV].handler = self._on_pv
        self.stores = Stores(self.informers)
        self.core = ProvisionerCore(
            kube,
            csi,
            self.stores,
            config,
            driver=facts.name,
            plugin_caps=facts.plugin_caps,
            controller_caps=facts.controller_caps,
            clock=self.clock,
            rng=rng,
        )
        backoff = (config.retry_interval_start, config.retry_interval_max)
        self.claims = WorkQueue(Backoff(*backoff))
        self.volumes = WorkQueue(Backoff(*backoff))
        self.clone_sources = WorkQueue(Backoff(*backoff))  # claims holding the cloning finalizer
        self.outcomes: list[tuple[str, Outcome]] = []  # the latest outcomes, for /healthz and tests
        self._stop = threading.Event()
        if metrics is not None:
            metrics.watch_queue_depth("claims", self.claims.pending)
            metrics.watch_queue_depth("volumes", self.volumes.pending)

    # --- events → keys ----------------------------------------------------------------------------------

    def _on_claim(self, type_: str, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        assert obj is not None
        meta = obj["metadata"]
        key = f"{meta.get('namespace', '')}/{meta['name']}"
        self._on_clone_change(key, obj, new)
        if type_ == "DELETED":
            self._first_seen.pop(key, None)
            self.core.forget_claim(meta.get("uid", ""))
            self.claims.forget(key)
            return
        if self.core.claim_is_ours(obj) and not obj.get("spec", {}).get("volumeName"):
            self._first_seen.setdefault(key, self.clock.monotonic())
            self.claims.add(key)

    def _on_clone_change(self, key: str, obj: Obj, new: Obj | None) -> None:
        """A source claim with the cloning finalizer, or any change to a clone, re-checks the source."""
        if new is not None and has_finalizer(new, CLONE_FINALIZER):
            self.clone_sources.add(key)
        source = clone_source_name(obj)
        if source:
            self.clone_sources.add(f"{obj['metadata'].get('namespace', '')}/{source}")

    def _on_pv(self, type_: str, old: Obj | None, new: Obj | None) -> None:
        if new is not None and type_ != "DELETED" and self.core.pv_is_ours(new):
            self.volumes.add(new["metadata"]["name"])

    # --- keys → core ------------------------------------------------------------------------------------

    def _apply(self, queue: WorkQueue, key: str, outcome: Outcome) -> None:
        self.outcomes = [*self.outcomes[-999:], (key, outcome)]
        if self.metrics is not None:
            self._observe(queue, key, outcome, self.metrics)
        if outcome.step is Step.RETRY:
            delay = queue.add_rate_limited(key)
            log.info("%s: %s (retry in %.1fs)", key, outcome.message, delay)
        elif outcome.step is Step.RETRY_SLOW:
            queue.add_after(key, self.config.retry_interval_max)
            log.info("%s: %s (retry in %.0fs)", key, outcome.message, self.config.retry_interval_max)
        else:
            queue.forget(key)
            if outcome.step is Step.STOP:
                log.error("%s: %s", key, outcome.message)
            elif outcome.step is not Step.IGNORED:
                log.info("%s: %s %s", key, outcome.step.value, outcome.message)

    def _observe(self, queue: WorkQueue, key: str, outcome: Outcome, metrics: LoopObserver) -> None:
        if queue is self.claims and outcome.step in (Step.DONE, Step.STOP):
            started = self._first_seen.pop(key, None)
            if started is not None:
                result = "provisioned" if outcome.step is Step.DONE else "failed"
                metrics.observe_claim(result, self.clock.monotonic() - started)

    def _process_claim(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        claim = self.stores.get(Kind.CLAIM, name, namespace)
        if claim is None:
            self.claims.forget(key)
            return
        self._apply(self.claims, key, self.core.provision(claim))
        current = self.stores.get(Kind.CLAIM, name, namespace)
        uid = claim["metadata"].get("uid", "")
        if current is None or current["metadata"].get("uid") != uid:
            # Deleted while CreateVolume ran: the attempt may have cached its requirement after the
            # DELETED event dropped it.
            self.core.forget_claim(uid)

    def _process_clone_source(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        source = self.stores.get(Kind.CLAIM, name, namespace)
        if source is None:
            self.clone_sources.forget(key)
            return
        self._apply(self.clone_sources, key, self.core.release_clone_source(source))

    def _process_volume(self, key: str) -> None:
        pv = self.stores.get(Kind.PV, key)
        if pv is None:
            self.volumes.forget(key)
            return
        self._apply(self.volumes, key, self.core.delete(pv))

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self, sync_timeout: float = 60.0) -> None:
        """Start informers, wait for their first listing, then start the workers."""
        for informer in self.informers.values():
            informer.start(self._stop)
        if not self.stores.wait_synced(sync_timeout):
            raise FailedPrecondition("informers did not sync; is the API server reachable?")
        workers = max(1, self.config.worker_threads)
        start_workers(self.claims, self._process_claim, workers, "claims")
        start_workers(self.volumes, self._process_volume, max(1, workers // 4), "volumes")
        start_workers(self.clone_sources, self._process_clone_source, max(1, workers // 10), "clone-sources")

    def stop(self) -> None:
        self._stop.set()
        self.claims.shut_down()
        self.volumes.shut_down()
        self.clone_sources.shut_down()

    def idle(self) -> bool:
        return (
            self.claims.pending() == 0 and self.volumes.pending() == 0 and self.clone_sources.pending() == 0
        )


def run_provisioner(
    kube: KubeApi,
    csi: CsiClient,
    config: ProvisionerConfig,
    facts: DriverFacts,
    stop: threading.Event,
    clock: Clock | None = None,
    on_loop: list[ProvisionerLoop] | None = None,
    metrics: LoopObserver | None = None,
) -> None:
    """Run until ``stop`` (or until leadership is lost). ``on_loop`` receives the loop once it starts."""
    clock = clock or SystemClock()
    loop = ProvisionerLoop(kube, csi, config, facts, clock, metrics=metrics)

    def started() -> None:
        loop.start()
        if on_loop is not None:
            on_loop.append(loop)

    if not config.leader_election:
        started()
        stop.wait()
        loop.stop()
        return
    elector = LeaderElector(
        kube,
        namespace=config.leader_election_namespace,
        name=lease_name(facts.name),
        identity=config.identity or "zonal-provisioner",
        clock=clock,
        lease_duration=config.leader_election_lease_duration,
        renew_deadline=config.leader_election_renew_deadline,
        retry_period=config.leader_election_retry_period,
    )
    elector.run(stop, started, loop.stop)


def lease_name(driver: str) -> str:
    """The sidecar's Lease name: the driver name with characters outside [a-z0-9-] replaced by '-'."""
    return "".join(c if c.isalnum() or c == "-" else "-" for c in driver.lower())
