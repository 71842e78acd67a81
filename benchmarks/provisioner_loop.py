"""Benchmark 3: the provisioner loop's own speed and memory.

N WaitForFirstConsumer claims (each with a selected node) arrive at once in a cluster of three zones;
an instant CSI driver answers CreateVolume at once, so what is measured is the loop: informers, work
queues, the requirements function, PV building and the API writes. Prints PVs per second and the
process's peak RSS, then the RSS with ``--cached`` extra PVs held by the informers.

Two ways to run the cluster:
  (default)  the in-memory cluster in this process (the loop's cost alone);
  --http     the same cluster behind the HTTP fake API server, the loop in a child process talking to
             it through the official Kubernetes client (RSS is then the child's alone).

    python benchmarks/provisioner_loop.py --claims 1000 --cached 10000
    python benchmarks/provisioner_loop.py --http --claims 1000 --cached 10000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.embedded.kube.fakeapi import FakeApiServer
from provisioner.embedded.kube.memory import MemoryKube
from provisioner.model import ZONE_KEY
from provisioner.ports.clock import SystemClock
from provisioner.ports.csi import (
    ControllerCapability,
    CreatedVolume,
    CreateVolumeRequest,
    PluginCapability,
    PluginInfo,
)
from provisioner.ports.kube import Kind, KubeApi
from provisioner.provisioning import ProvisionerConfig
from provisioner.provisioning.loop import ProvisionerLoop, discover_driver

DRIVER = "zonal.csi.dev"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


class InstantCsi:
    """A driver that creates every volume at once in the first preferred zone."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def probe(self) -> bool:
        return True

    def plugin_info(self) -> PluginInfo:
        return PluginInfo(DRIVER, "bench")

    def plugin_capabilities(self) -> frozenset[PluginCapability]:
        return frozenset(
            {PluginCapability.CONTROLLER_SERVICE, PluginCapability.VOLUME_ACCESSIBILITY_CONSTRAINTS}
        )

    def controller_capabilities(self) -> frozenset[ControllerCapability]:
        return frozenset({ControllerCapability.CREATE_DELETE_VOLUME})

    def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        with self._lock:
            self._n += 1
            n = self._n
        req = request.requirement
        zone = ZONES[0]
        if req is not None and (req.preferred or req.requisite):
            zone = (req.preferred or req.requisite)[0].get(ZONE_KEY, zone)
        return CreatedVolume(
            volume_id=f"vol-{n:017x}",
            capacity_bytes=request.capacity.required_bytes,
            accessible_topology=({ZONE_KEY: zone},),
        )

    def delete_volume(self, volume_id: str, secrets: Mapping[str, str] | None = None) -> None:
        return None


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(current RSS, peak RSS) in MB from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def seed_cluster(kube: KubeApi, cached: int) -> None:
    for i, zone in enumerate(ZONES):
        name = f"node-{i}"
        kube.create(Kind.NODE, {"metadata": {"name": name, "labels": {ZONE_KEY: zone}}})
        kube.create(
            Kind.CSINODE,
            {
                "metadata": {"name": name},
                "spec": {"drivers": [{"name": DRIVER, "nodeID": f"i-{i}", "topologyKeys": [ZONE_KEY]}]},
            },
        )
    kube.create(
        Kind.STORAGE_CLASS,
        {
            "metadata": {"name": "gp3"},
            "provisioner": DRIVER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
            "parameters": {"type": "gp3"},
        },
    )
    for i in range(cached):
        zone = ZONES[i % 3]
        kube.create(Kind.PV, _bound_pv(f"pvc-cached-{i}", zone))


def _bound_pv(name: str, zone: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER}},
        "spec": {
            "capacity": {"storage": "4Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "gp3",
            "csi": {"driver": DRIVER, "volumeHandle": f"vol-{name}", "fsType": "ext4"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": ZONE_KEY, "operator": "In", "values": [zone]}]}
                    ]
                }
            },
        },
        "status": {"phase": "Bound"},
    }


def claim(i: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"data-{i}",
            "namespace": "default",
            "uid": str(uuid.uuid4()),
            "annotations": {
                "volume.kubernetes.io/storage-provisioner": DRIVER,
                "volume.kubernetes.io/selected-node": f"node-{i % 3}",
            },
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "gp3",
            "resources": {"requests": {"storage": "4Gi"}},
            "volumeMode": "Filesystem",
        },
        "status": {"phase": "Pending"},
    }


def count_pvs(kube: KubeApi) -> int:
    return sum(1 for pv in kube.list(Kind.PV).items if not pv["metadata"]["name"].startswith("pvc-cached-"))


def start_loop(kube: KubeApi, workers: int) -> ProvisionerLoop:
    csi = InstantCsi()
    facts = discover_driver(csi, SystemClock(), threading.Event())
    config = ProvisionerConfig(worker_threads=workers, retry_interval_start=0.05, watch_timeout=60)
    loop = ProvisionerLoop(kube, csi, config, facts)  # type: ignore[arg-type]
    loop.start(sync_timeout=120)
    return loop


def provision(kube: KubeApi, claims: int, timeout: float) -> float:
    """Create the claims at once, return seconds until every one has a PV."""
    start = time.perf_counter()
    for i in range(claims):
        kube.create(Kind.CLAIM, claim(i))
    deadline = time.monotonic() + timeout
    while count_pvs(kube) < claims:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {count_pvs(kube)} of {claims} PVs after {timeout:.0f}s")
        time.sleep(0.05)
    return time.perf_counter() - start


def in_memory(args: argparse.Namespace) -> dict[str, Any]:
    base_rss, _ = rss_mb()
    kube = MemoryKube()
    seed_cluster(kube, 0)
    loop = start_loop(kube, args.workers)
    try:
        seconds = provision(kube, args.claims, args.timeout)
        rss, peak = rss_mb()
    finally:
        loop.stop()
    result: dict[str, Any] = {
        "mode": "in-memory",
        "claims": args.claims,
        "seconds": round(seconds, 2),
        "pvs_per_second": round(args.claims / seconds, 1),
        "rss_mb_after": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_mb_at_start": round(base_rss, 1),
    }
    if args.cached:
        cached_kube = MemoryKube()
        seed_cluster(cached_kube, args.cached)
        before, _ = rss_mb()
        loop = start_loop(cached_kube, args.workers)
        after, _ = rss_mb()
        loop.stop()
        # The in-memory cluster holds the same objects; the informers' share is the growth on start.
        result["cached_pvs"] = args.cached
        result["rss_mb_with_cache"] = round(after, 1)
        result["informer_cache_mb"] = round(after - before, 1)
    return result


def over_http(args: argparse.Namespace) -> dict[str, Any]:
    kube = MemoryKube()
    seed_cluster(kube, args.cached)
    api = FakeApiServer(kube).start()
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", api.url, "--workers", str(args.workers)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready = child.stdout.readline()  # the child prints once its informers synced
        if not ready.startswith("synced"):
            raise SystemExit(f"child failed: {ready!r}")
        rss_cached, _ = rss_mb(child.pid)
        seconds = provision(kube, args.claims, args.timeout)
        rss, peak = rss_mb(child.pid)
    finally:
        child.terminate()
        child.wait(10)
        api.stop()
    return {
        "mode": "http (official client, loop in its own process)",
        "claims": args.claims,
        "seconds": round(seconds, 2),
        "pvs_per_second": round(args.claims / seconds, 1),
        "cached_pvs": args.cached,
        "loop_rss_mb_with_cache_before_claims": round(rss_cached, 1),
        "loop_rss_mb_after": round(rss, 1),
        "loop_peak_rss_mb": round(peak, 1),
    }


def child(url: str, workers: int) -> None:
    from provisioner.embedded.kube.fakeapi import kubeconfig_for
    from provisioner.kube.client import KubeClient, load_configuration

    config_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-kubeconfig-{os.getpid()}"
    config_file.write_text(kubeconfig_for(url))
    try:
        kube = KubeClient(load_configuration(str(config_file)), qps=0, burst=1000)
    finally:
        config_file.unlink()
    loop = start_loop(kube, workers)
    print("synced", flush=True)
    threading.Event().wait()
    loop.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--cached", type=int, default=10000, help="extra bound PVs in the informer cache")
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--http", action="store_true", help="cluster over HTTP, loop in a child process")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workers)
        return
    result = over_http(args) if args.http else in_memory(args)
    for key, value in result.items():
        print(f"{key:>40}: {value}")


if __name__ == "__main__":
    main()
