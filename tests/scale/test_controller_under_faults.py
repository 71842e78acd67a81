"""The controller core over the EC2 adapter over a throttling, failing simulator: many concurrent
CreateVolume calls, retried the way the CSI sidecar retries, end with exactly one volume per name, each
in the requested zone."""

from __future__ import annotations

import threading
import time
from collections import Counter

from provisioner.aws.batcher import BatchSettings
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import CloudConfig, ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.embedded.ec2 import Delays, Faults, SimConfig, Simulator
from provisioner.errors import DeadlineExceeded, Internal, OperationInProgress, Unavailable
from provisioner.model import GIB, TAG_VOLUME_NAME, ZONE_KEY, CapacityRange, TopologyRequirement
from provisioner.ports.clock import Deadline, SystemClock, deadline_scope
from provisioner.ports.csi import CreatedVolume
from tests.controller.helpers import MOUNT_RWO
from tests.scale.conftest import ZONE_A, ZONE_B, ZONE_C, zonal_client

ZONES = (ZONE_A, ZONE_B, ZONE_C)
SCALE = 40.0
# What the sidecar retries (with backoff): the call may succeed later.
RETRIED = (OperationInProgress, Unavailable, DeadlineExceeded, Internal)


def _core(sim: Simulator) -> ControllerCore:
    client = zonal_client(sim, CloudConfig(region=sim.region, max_attempts=3, rate_scale=SCALE))
    cloud = Ec2Cloud(client, sim.region, BatchSettings(window=0.01, min_interval=0.05, target_batch=0))
    config = ControllerConfig(wait_initial_delay=0.02, wait_factor=1.5, wait_max_delay=0.1)
    return ControllerCore(cloud, SystemClock(), DriverConfig(), config)


def _create_until_ok(core: ControllerCore, name: str, zone: str, failures: Counter[str]) -> CreatedVolume:
    requirement = TopologyRequirement(requisite=({ZONE_KEY: zone},), preferred=({ZONE_KEY: zone},))
    for _ in range(200):
        deadline = Deadline(SystemClock(), 2.0)
        try:
            with deadline_scope(deadline):
                return core.create_volume(
                    name, CapacityRange(GIB), (MOUNT_RWO,), {}, {}, requirement, None, deadline
                )
        except RETRIED as e:
            failures[type(e).__name__] += 1
            time.sleep(0.01)
    raise AssertionError(f"{name} never succeeded: {failures}")


def test_concurrent_creates_under_throttles_and_faults_end_with_one_volume_per_name_in_its_zone() -> None:
    sim = Simulator(
        SimConfig(
            scale=SCALE,
            delays=Delays(volume_create=0.05, attach=0.05, detach=0.05),
            faults=Faults(throttle_rate=0.1, server_error_rate=0.05, volume_error_rate=0.05),
            seed=11,
        )
    )
    core = _core(sim)
    names = [f"pvc-{i:03d}" for i in range(50)]
    results: dict[str, CreatedVolume] = {}
    failures: Counter[str] = Counter()
    lock = threading.Lock()

    def run(i: int) -> None:
        created = _create_until_ok(core, names[i], ZONES[i % 3], failures)
        with lock:
            results[names[i]] = created

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert sorted(results) == names  # every request eventually OK
    for i, name in enumerate(names):
        assert results[name].accessible_topology == ({ZONE_KEY: ZONES[i % 3]},)
    live: dict[str, list[tuple[str, str]]] = {}
    for volume in sim.client().describe_volumes()["Volumes"]:
        if volume["State"] in ("deleting", "deleted"):
            continue
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        live.setdefault(tags[TAG_VOLUME_NAME], []).append((volume["VolumeId"], volume["AvailabilityZone"]))
    assert {name: len(vols) for name, vols in live.items()} == dict.fromkeys(names, 1)  # no duplicates
    for i, name in enumerate(names):
        assert live[name] == [(results[name].volume_id, ZONES[i % 3])]  # no wrong zone
    counts = sim.counters.snapshot()
    assert counts["CreateVolume"].throttled + counts["CreateVolume"].errors > 0  # the faults did happen

    again = _create_until_ok(core, names[0], ZONES[0], failures)  # the sidecar's retry after success
    assert again.volume_id == results[names[0]].volume_id
