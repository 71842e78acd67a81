"""Mixed load: no action's throttles slow another action.

``--count`` volume lifecycles, each CreateVolume → ControllerPublish → CreateSnapshot →
ControllerUnpublish → DeleteVolume (EC2's CreateVolume, AttachVolume, CreateSnapshot, DetachVolume,
DeleteVolume), against ``zonal controller`` and the EC2 simulator's HTTP server. Like the CSI sidecars
(provisioner, attacher, snapshotter), each step has its own pool of ``--workers`` callers fed by the
step before, so every action is under load at once and a slow step only backs up its own queue.
``--per-instance`` volumes of a zone share an instance (10: well under the 26 attachments an m5.large
node reports, 28 Nitro slots less its ENI and root volume), so one volume attaches while another of the
same instance detaches and zonal must skip the device name EC2 still lists as detaching. The account's
buckets are all 2× the documented ones and a neighbour spends 3/4 of DeleteVolume's refill; zonal is
told none of it.

Every second zonal's /metrics (the limiter's rate per action) and then the simulator's count of
throttled answers per action are read. An action's rate that fell while that action had no throttled
answer of its own (in that second or the one before) would be one action's throttles slowing another;
the run counts those (the goal is none).

    python benchmarks/mixed_load.py              # about 2 minutes
    python benchmarks/mixed_load.py --count 200  # quicker
"""

from __future__ import annotations

import argparse
import functools
import itertools
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._procs import simulator, zonal
from benchmarks._rates import (
    CAP,
    Tally,
    controller_args,
    create_request,
    free_port,
    get_json,
    limiter_state,
    load,
    retrying,
)
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc

ACTIONS = ("CreateVolume", "AttachVolume", "CreateSnapshot", "DetachVolume", "DeleteVolume")
SIM_ARGS = ("--scale", "2", "--burst-scale", "2", "--neighbour", "DeleteVolume=7.5", "--create-delay", "2")
# (seconds, zonal's limiter rate per action, the account's throttled answers per action so far)
Sample = tuple[float, dict[str, float], dict[str, float]]


@dataclass
class Volume:
    index: int
    node: str
    zone: str
    volume_id: str = ""


@dataclass
class Mixed:
    count: int
    workers: int
    per_instance: int = 1
    instances: int = 0
    wall: float = 0.0
    tally: Tally = field(default_factory=Tally)
    finished: dict[str, list[float]] = field(default_factory=lambda: {a: [] for a in ACTIONS})
    samples: list[Sample] = field(default_factory=list)
    counters: dict[str, dict[str, Any]] = field(default_factory=dict)
    neighbour_spent: float = 0.0


def _requests(stub: csi_pb2_grpc.ControllerStub, timeout: float) -> dict[str, Callable[[Volume], Any]]:
    """Per action, the CSI call that makes zonal call it for one volume."""

    def create(v: Volume) -> Any:
        answer = stub.CreateVolume(create_request(f"pvc-mixed-{v.index:05d}", v.zone), timeout=timeout)
        v.volume_id = answer.volume.volume_id
        return answer

    return {
        "CreateVolume": create,
        "AttachVolume": lambda v: stub.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=v.volume_id, node_id=v.node, volume_capability=CAP
            ),
            timeout=timeout,
        ),
        "CreateSnapshot": lambda v: stub.CreateSnapshot(
            csi_pb2.CreateSnapshotRequest(source_volume_id=v.volume_id, name=f"snap-mixed-{v.index:05d}"),
            timeout=timeout,
        ),
        "DetachVolume": lambda v: stub.ControllerUnpublishVolume(
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=v.volume_id, node_id=v.node), timeout=timeout
        ),
        "DeleteVolume": lambda v: stub.DeleteVolume(
            csi_pb2.DeleteVolumeRequest(volume_id=v.volume_id), timeout=timeout
        ),
    }


def run(
    count: int = 500, workers: int = 50, timeout: float = 60.0, log_dir: str = "", per_instance: int = 10
) -> Mixed:
    out = Mixed(count, workers, per_instance)
    with tempfile.TemporaryDirectory(prefix="zonal-mixed-") as tmp, simulator(SIM_ARGS) as sim:
        endpoint, zones = sim["endpoint_url"], sim["zones"]
        volumes = []
        nodes: dict[tuple[str, int], str] = {}
        for i in range(count):
            zone = zones[i % len(zones)]
            # Round robin over the zone's instances, per_instance volumes each: callers working on
            # consecutive volumes meet on different instances, as pods spread over nodes.
            shared = -(-len(range(i % len(zones), count, len(zones))) // per_instance)
            key = (zone, (i // len(zones)) % shared)
            if key not in nodes:
                nodes[key] = get_json(f"{endpoint}/_zonal/instances?zone={zone}", "POST")["instance_id"]
            volumes.append(Volume(i, nodes[key], zone))
        out.instances = len(nodes)
        port = free_port()
        metrics = f"http://127.0.0.1:{port}/metrics"
        args = controller_args(sim, port)
        queues: list[queue.Queue[Volume | None]] = [queue.Queue() for _ in ACTIONS]
        stop = threading.Event()
        with (
            (Path(log_dir or tmp) / "zonal-mixed.log").open("w") as log,
            zonal(args, Path(tmp) / "csi.sock", log) as channel,
        ):
            calls = _requests(csi_pb2_grpc.ControllerStub(channel), timeout)
            started = time.monotonic()

            def stage(step: int) -> None:
                action = ACTIONS[step]
                while (v := queues[step].get()) is not None:
                    if retrying(functools.partial(calls[action], v), action, out.tally) is None:
                        continue
                    with out.tally.lock:
                        out.finished[action].append(time.monotonic() - started)
                    if step + 1 < len(ACTIONS):
                        queues[step + 1].put(v)

            def sample() -> None:
                while not stop.wait(1.0):
                    try:
                        rates, _ = limiter_state(metrics)  # first: a cut follows its throttle
                        counts = get_json(endpoint + "/_zonal/counters")
                    except OSError:
                        continue
                    throttled = {a: float(c["throttled"]) for a, c in counts.items()}
                    out.samples.append((time.monotonic() - started, rates, throttled))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            pools = [
                [threading.Thread(target=stage, args=(k,)) for _ in range(workers)]
                for k in range(len(ACTIONS))
            ]
            for pool in pools:
                for t in pool:
                    t.start()
            for v in volumes:
                queues[0].put(v)
            for k, pool in enumerate(pools):  # a step's callers stop once the step before has finished
                for _ in pool:
                    queues[k].put(None)
                for t in pool:
                    t.join()
            out.wall = time.monotonic() - started
            stop.set()
            sampler.join()
        out.counters = get_json(endpoint + "/_zonal/counters")
        out.neighbour_spent = get_json(f"{endpoint}/_zonal/neighbours?action=DeleteVolume")["spent"]
    return out


def falls(samples: list[Sample], action: str) -> tuple[list[float], list[float]]:
    """Seconds at which ``action``'s rate fell: after a throttled answer of its own, and without one."""
    own: list[float] = []
    foreign: list[float] = []
    for i, ((_, rates0, _), (t, rates1, throttled1)) in enumerate(itertools.pairwise(samples)):
        if rates1.get(action, 0.0) < rates0.get(action, 0.0):
            before = samples[max(0, i - 1)][2]  # two seconds back: the throttle may precede a read
            (own if throttled1.get(action, 0.0) > before.get(action, 0.0) else foreign).append(round(t, 1))
    return own, foreign


def report(m: Mixed) -> None:
    done = len(m.finished["DeleteVolume"])
    calls = sum(c["calls"] for c in m.counters.values())
    print(
        f"\nMixed load: {m.count} volume lifecycles (create, attach, snapshot, detach, delete), {m.workers} "
        "callers per step;\nevery bucket 2× documented, a neighbour spending 7.5/s of DeleteVolume's 10/s "
        "(zonal told none of it)"
    )
    print(f"  {m.instances} instances, up to {m.per_instance} volumes each")
    print(f"  wall {m.wall:.1f} s; {done} lifecycles done; failed {dict(m.tally.failed) or 0}")
    per = calls / max(1, done)
    print(f"  client retries {dict(m.tally.retries) or 0}; EC2 calls {calls} ({per:.2f} per lifecycle)")
    spent = m.neighbour_spent
    print(f"  the neighbour spent {spent:.0f} DeleteVolume tokens ({spent / m.wall:.2f}/s)")
    print(
        f"  {'action':15s} {'calls':>6s} {'throttled':>9s} {'limiter start':>13s} {'lowest':>7s} "
        f"{'final':>7s} {'last done':>9s}  rate fell (own throttle / none)"
    )
    foreign_total = 0
    for action in ACTIONS:
        c = m.counters.get(action, {"calls": 0, "throttled": 0})
        seen = [rates[action] for _, rates, _ in m.samples if action in rates] or [float("nan")]
        own, foreign = falls(m.samples, action)
        foreign_total += len(foreign)
        last = max(m.finished[action], default=float("nan"))
        print(
            f"  {action:15s} {c['calls']:6d} {c['throttled']:9d} {seen[0]:11.2f}/s {min(seen):7.2f} "
            f"{seen[-1]:7.2f} {last:8.1f}s  {len(own)} / {len(foreign)}"
        )
    verdict = "met" if foreign_total == 0 else "MISSED"
    print(f"  a limiter rate fell without a throttle of its own action: {foreign_total} times ({verdict})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--workers", type=int, default=50, help="callers per step")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--log-dir", default="", help="keep zonal's log in this folder")
    p.add_argument("--per-instance", type=int, default=10, help="volumes of a zone sharing an instance")
    args = p.parse_args()
    if args.per_instance < 1:
        p.error("--per-instance must be at least 1")
    print(f"load average at start: {load()}", flush=True)
    report(run(args.count, args.workers, args.timeout, args.log_dir, args.per_instance))
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
