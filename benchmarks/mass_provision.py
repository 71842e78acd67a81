"""Mass provisioning: N CreateVolume calls, C at a time, against ``zonal controller`` talking to the EC2
simulator's HTTP server at EC2's documented token-bucket rates.

Prints the wall time and its ratio to the token-bucket floor (the time EC2's CreateVolume bucket —
100 burst, 5/s × scale — needs to let N requests through), EC2 calls per created volume by action
(from the simulator's counters), the throttled share of all EC2 calls, failed requests and duplicate
volumes (more than one live volume per CSIVolumeName tag). The client retries ABORTED, UNAVAILABLE and
DEADLINE_EXCEEDED like the external-provisioner sidecar does.

    python benchmarks/mass_provision.py                      # 1000 volumes, 100 concurrent, scale 1
    python benchmarks/mass_provision.py --scale 10 --count 300   # a quick run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._procs import simulator, zonal
from benchmarks._rates import Answered, timings
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc

RETRIED = {grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
BURST, RATE = 100, 5.0  # EC2's CreateVolume bucket
TAG = "CSIVolumeName"


def _request(name: str) -> csi_pb2.CreateVolumeRequest:
    cap = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        ),
    )
    return csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 30),
        volume_capabilities=[cap],
        parameters={"type": "gp3"},
    )


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.retries: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.answers: list[Answered] = []


def _create(stub: csi_pb2_grpc.ControllerStub, name: str, timeout: float, tally: Tally) -> None:
    started = time.time()
    backoff = 0.1
    for _ in range(100):
        try:
            answer = stub.CreateVolume(_request(name), timeout=timeout)
            with tally.lock:
                tally.answers.append(Answered(started, time.time(), answer.volume.volume_id))
            return
        except grpc.RpcError as e:
            code = e.code()
            with tally.lock:
                if code not in RETRIED:
                    tally.failed[code.name] += 1
                    return
                tally.retries[code.name] += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    with tally.lock:
        tally.failed["too many retries"] += 1


def _counters(endpoint: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(endpoint + "/_zonal/counters", timeout=30) as answer:
        data: dict[str, dict[str, int]] = json.loads(answer.read())
    return data


def _duplicates(endpoint: str, region: str) -> tuple[int, int]:
    """(names with more than one live volume, live volumes) — read after the counters."""
    session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name=region
    )
    ec2 = session.client("ec2", endpoint_url=endpoint)
    names: Counter[str] = Counter()
    live = 0
    for page in ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 500}):
        for volume in page["Volumes"]:
            if volume["State"] in ("deleting", "deleted"):
                continue
            live += 1
            tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
            names[tags.get(TAG, "")] += 1
    return sum(1 for n in names.values() if n > 1), live


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies EC2's refill rates (simulator)")
    p.add_argument(
        "--create-delay", type=float, default=None, help="creating → available (default 1.5 s / scale)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="per-call deadline, like the sidecar's")
    p.add_argument("--no-batching", action="store_true", help="run zonal with --no-ec2-batching")
    p.add_argument("--retry-mode", default="adaptive", choices=("adaptive", "standard"))
    args = p.parse_args()
    create_delay = 1.5 / args.scale if args.create_delay is None else args.create_delay
    sim_args = ["--scale", str(args.scale), "--create-delay", str(create_delay)]
    with tempfile.TemporaryDirectory(prefix="zonal-bench-") as tmp, simulator(sim_args) as sim:
        endpoint = sim["endpoint_url"]
        log_path = Path(tmp) / "zonal.log"
        zonal_args = [
            "controller",
            "--region",
            sim["region"],
            "--ec2-endpoint",
            endpoint,
            "--ec2-rate-scale",
            str(args.scale),
            "--aws-retry-mode",
            args.retry_mode,
        ]
        if args.no_batching:
            zonal_args.append("--no-ec2-batching")
        with log_path.open("w") as log, zonal(zonal_args, Path(tmp) / "csi.sock", log) as channel:
            stub = csi_pb2_grpc.ControllerStub(channel)
            tally = Tally()
            names = [f"pvc-bench-{i:05d}" for i in range(args.count)]
            started = time.monotonic()
            with ThreadPoolExecutor(args.concurrency) as pool:
                for _ in pool.map(lambda n: _create(stub, n, args.timeout, tally), names):
                    pass
            wall = time.monotonic() - started
        counters = _counters(endpoint)
        duplicates, live = _duplicates(endpoint, sim["region"])
        times = timings(endpoint, tally.answers, create_delay)

    created = len(tally.answers)
    floor = max(0, args.count - BURST) / (RATE * args.scale)
    total_calls = sum(c["calls"] for c in counters.values())
    throttled = sum(c["throttled"] for c in counters.values())
    print(
        f"mass provisioning: {args.count} CreateVolume, {args.concurrency} concurrent, scale {args.scale:g}"
    )
    print(f"  wall time            {wall:8.1f} s")
    print(f"  token-bucket floor   {floor:8.1f} s   ratio {wall / floor if floor else float('nan'):.3f}")
    print(f"  created volumes      {created:8d}    (live in EC2: {live})")
    print(f"  {times.line()}")
    print(f"  EC2 calls per volume {total_calls / max(created, 1):8.3f}    (all actions)")
    for action, c in sorted(counters.items()):
        print(
            f"    {action:28s} {c['calls'] / max(created, 1):6.3f}/volume  "
            f"({c['calls']} calls, {c['throttled']} throttled, {c['errors']} errors)"
        )
    share = 100 * throttled / max(total_calls, 1)
    print(f"  throttled            {share:8.2f} %  ({throttled} of {total_calls})")
    print(f"  failed requests      {sum(tally.failed.values()):8d}    {dict(tally.failed) or ''}")
    print(f"  client retries       {sum(tally.retries.values()):8d}    {dict(tally.retries) or ''}")
    print(f"  duplicate volumes    {duplicates:8d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
