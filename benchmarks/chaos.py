"""Chaos: kill -9 the plugin at seeded random moments during create/delete lifecycles; nothing is lost.

``zonal controller`` runs as a real process against the EC2 simulator's HTTP server (another process,
so EC2's state survives every kill), with the simulator's delays on: volumes spend ``--create-delay``
seconds in ``creating``, so kills land while CreateVolume waits. ``--workers`` client threads each run
lifecycles like the external-provisioner sidecar: CreateVolume with a fixed name and a one-zone
requirement, retried with backoff (the same request) on ABORTED, UNAVAILABLE, DEADLINE_EXCEEDED and
connection errors until it answers; then DeleteVolume of the answered id, retried the same way. A
killer thread waits a seeded random ``--kill-interval``, then up to one second more for a CreateVolume
to be in flight, sends SIGKILL and starts a new plugin at once.

At the end it reads the simulator's full state (DescribeVolumes without filters: every volume of the
account, not only what zonal lists) and prints:

* leaked volumes: live at the end although every lifecycle deleted its volume;
* duplicated names: names for which more than one volume id was ever seen (answered to the client,
  or in EC2's state, which a monitor thread samples during the run);
* wrong-zone volumes: a volume (seen in EC2 or answered) outside its name's requested zone;
* failed lifecycles (a code no sidecar retries), kills (and how many landed mid-create), retries by
  code, and the lifecycle time p50/p99 (first CreateVolume attempt to DeleteVolume answered).

    python benchmarks/chaos.py                       # 240 lifecycles, seed 11
    python benchmarks/chaos.py --lifecycles 400 --seed 7 --kill-interval 0.5 3
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import boto3
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._procs import BENCH_ENV, simulator
from benchmarks._rates import ZONE_KEY, create_request
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc

R = TypeVar("R")
TAG = "CSIVolumeName"
PREFIX = "pvc-chaos-"
# What the sidecars retry with the same request; UNAVAILABLE is also how a dead socket looks.
RETRIED = {
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


class Plugin:
    """``zonal controller`` as a process that can be killed with SIGKILL and started again."""

    def __init__(self, args: list[str], socket: Path, log: IO[str]) -> None:
        self.args = args
        self.socket = socket
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", *self.args, "--endpoint", f"unix://{self.socket}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=BENCH_ENV,
        )
        self.starts += 1

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(f"unix://{self.socket}") as ch:
            probe = csi_pb2_grpc.IdentityStub(ch)
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"zonal exited with {self.proc.returncode}; see its log")
                try:
                    probe.Probe(csi_pb2.ProbeRequest(), timeout=1.0)
                    return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("zonal did not answer Probe in time") from None
                    time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Record:
    """What the run saw; one lock guards it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # name → ids answered
    seen: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # name → ids in EC2
    zones: dict[str, str] = field(default_factory=dict)  # volume id → zone (EC2 or the answer)
    wanted: dict[str, str] = field(default_factory=dict)  # name → requested zone
    retries: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    lifecycles: list[float] = field(default_factory=list)
    creating: int = 0  # CreateVolume calls in flight now
    kills: int = 0
    kills_mid_create: int = 0  # a CreateVolume call was in flight
    kills_while_creating: int = 0  # EC2 held a volume in state `creating`


def _retrying(call: Callable[[], R], record: Record, what: str) -> R | None:
    """Call until it answers; None after a code no sidecar retries (counted as a failed lifecycle)."""
    backoff = 0.1
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            code: Any = e.code()
            with record.lock:
                if code not in RETRIED:
                    record.failed[f"{what} {code.name}: {e.details()}"[:200]] += 1  # type: ignore[attr-defined]
                    return None
                record.retries[f"{what} {code.name}"] += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)


def _lifecycle(
    stub: csi_pb2_grpc.ControllerStub, name: str, zone: str, record: Record, timeout: float
) -> None:
    request = create_request(name, zone)
    started = time.monotonic()

    def create() -> csi_pb2.CreateVolumeResponse:
        with record.lock:
            record.creating += 1
        try:
            response: csi_pb2.CreateVolumeResponse = stub.CreateVolume(request, timeout=timeout)
            return response
        finally:
            with record.lock:
                record.creating -= 1

    created = _retrying(create, record, "CreateVolume")
    if created is None:
        return
    volume = created.volume
    with record.lock:
        record.answered[name].add(volume.volume_id)
        record.zones.setdefault(volume.volume_id, volume.accessible_topology[0].segments[ZONE_KEY])
    delete = csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id)
    if _retrying(lambda: stub.DeleteVolume(delete, timeout=timeout), record, "DeleteVolume") is None:
        return
    with record.lock:
        record.lifecycles.append(time.monotonic() - started)


def _live_volumes(ec2: Any) -> list[dict[str, Any]]:
    """Every live volume of the account (the simulator's full state)."""
    out = []
    for page in ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 500}):
        out.extend(v for v in page["Volumes"] if v["State"] not in ("deleting", "deleted"))
    return out


def _observe(ec2: Any, record: Record) -> list[dict[str, Any]]:
    volumes = _live_volumes(ec2)
    with record.lock:
        for volume in volumes:
            name = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}.get(TAG, "")
            record.seen[name].add(volume["VolumeId"])
            record.zones[volume["VolumeId"]] = volume["AvailabilityZone"]
    return volumes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lifecycles", type=int, default=240)
    p.add_argument("--workers", type=int, default=8, help="lifecycles in flight at a time")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--kill-interval", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN", "MAX"))
    p.add_argument("--create-delay", type=float, default=1.5, help="seconds a volume stays creating")
    p.add_argument("--scale", type=float, default=20.0, help="EC2 refill rates × this (simulator and zonal)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call deadline, like the sidecar's")
    args = p.parse_args()
    rng = random.Random(args.seed)
    record = Record()
    names = [f"{PREFIX}{i:05d}" for i in range(args.lifecycles)]
    sim_args = [
        "--scale",
        str(args.scale),
        "--create-delay",
        str(args.create_delay),
        "--seed",
        str(args.seed),
    ]
    with tempfile.TemporaryDirectory(prefix="zonal-chaos-") as tmp, simulator(sim_args) as sim:
        zones = list(sim["zones"])
        record.wanted = {name: rng.choice(zones) for name in names}
        ec2 = boto3.session.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench", region_name=sim["region"]
        ).client("ec2", endpoint_url=sim["endpoint_url"])
        before = {v["VolumeId"] for v in _live_volumes(ec2)}
        zonal_args = [
            "controller", "--region", sim["region"], "--ec2-endpoint", sim["endpoint_url"],
            "--ec2-rate-scale", str(args.scale),
        ]  # fmt: skip
        socket = Path(tmp) / "csi.sock"
        with (Path(tmp) / "zonal.log").open("w") as log:
            plugin = Plugin(zonal_args, socket, log)
            plugin.start()
            plugin.wait_ready()
            done = threading.Event()

            def killer() -> None:
                while not done.wait(rng.uniform(*args.kill_interval)):
                    # Then, within a second more, the first moment a CreateVolume is in flight.
                    until = time.monotonic() + 1.0
                    while record.creating == 0 and time.monotonic() < until and not done.is_set():
                        time.sleep(0.01)
                    creating = ec2.describe_volumes(Filters=[{"Name": "status", "Values": ["creating"]}])
                    with record.lock:
                        record.kills += 1
                        record.kills_mid_create += record.creating > 0
                        record.kills_while_creating += bool(creating["Volumes"])
                    plugin.kill9()
                    plugin.start()
                    plugin.wait_ready()

            def monitor() -> None:
                while not done.wait(0.25):
                    _observe(ec2, record)

            options = [
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 500),
            ]
            started = time.monotonic()
            threads = [
                threading.Thread(target=killer, daemon=True),
                threading.Thread(target=monitor, daemon=True),
            ]
            for t in threads:
                t.start()
            with grpc.insecure_channel(f"unix://{socket}", options=options) as channel:
                stub = csi_pb2_grpc.ControllerStub(channel)
                queue = list(names)
                queue_lock = threading.Lock()

                def worker() -> None:
                    while True:
                        with queue_lock:
                            if not queue:
                                return
                            name = queue.pop(0)
                        _lifecycle(stub, name, record.wanted[name], record, args.timeout)

                workers = [threading.Thread(target=worker) for _ in range(args.workers)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
            done.set()
            for t in threads:
                t.join()
            wall = time.monotonic() - started
            plugin.stop()
        final = _observe(ec2, record)

    leaked = [v["VolumeId"] for v in final if v["VolumeId"] not in before]
    names_seen = set(record.seen) | set(record.answered)
    duplicated = sorted(
        n for n in names_seen if n.startswith(PREFIX) and len(record.seen[n] | record.answered[n]) > 1
    )
    wrong_zone = sorted(
        vid
        for n in names_seen
        if n in record.wanted
        for vid in record.seen[n] | record.answered[n]
        if record.zones.get(vid) != record.wanted[n]
    )
    strays = sorted(n for n in record.seen if not n.startswith(PREFIX) and record.seen[n] - before)
    lat = sorted(record.lifecycles)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * q))] if lat else float("nan")

    print(f"chaos: {args.lifecycles} create/delete lifecycles, {args.workers} at a time, seed {args.seed}")
    mid, ec2_creating = record.kills_mid_create, record.kills_while_creating
    print(
        f"  kill -9 of the plugin {record.kills:6d}    ({mid} with a CreateVolume in flight, {ec2_creating} "
        "with a volume in EC2's `creating` state)"
    )
    print(f"  plugin starts         {plugin.starts:6d}")
    print(f"  completed lifecycles  {len(lat):6d}    wall {wall:.1f} s")
    print(f"  lifecycle p50 / p99   {pct(0.50):6.2f} / {pct(0.99):.2f} s")
    print(f"  leaked volumes        {len(leaked):6d}    {leaked[:5] or ''}")
    print(f"  duplicated names      {len(duplicated):6d}    {duplicated[:5] or ''}")
    print(f"  wrong-zone volumes    {len(wrong_zone):6d}    {wrong_zone[:5] or ''}")
    print(f"  volumes without our name tag made during the run {len(strays)}")
    print(f"  failed lifecycles     {sum(record.failed.values()):6d}    {dict(record.failed) or ''}")
    print(
        f"  client retries        {sum(record.retries.values()):6d}    {dict(sorted(record.retries.items()))}"
    )
    bad = leaked or duplicated or wrong_zone or strays or record.failed or len(lat) != args.lifecycles
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
