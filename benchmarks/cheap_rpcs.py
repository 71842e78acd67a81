"""Cheap RPC throughput: Probe, NodeGetInfo and ValidateVolumeCapabilities with 1, 10 and 100 concurrent
clients against ``zonal all --cloud embedded`` (one process, the in-process EC2 simulator).

Each client is a thread calling in a loop over one shared channel for ``--seconds``; prints calls/s and
p50/p99 latency per RPC and concurrency. Probe's EC2 check is cached by the controller core, and
ValidateVolumeCapabilities reads the volume from the embedded EC2 (a DescribeVolumes per call, shared
by concurrent callers when batching is on). The client runs on the same machine and takes CPU too, so
the figures are a lower bound for the server.

    python benchmarks/cheap_rpcs.py                  # 1, 10, 100 clients, 3 s each
    python benchmarks/cheap_rpcs.py --clients 10 --seconds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._procs import zonal
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc

RWO = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


def _measure(call: Callable[[], object], clients: int, seconds: float) -> tuple[float, float, float, int]:
    """(calls/s, p50 ms, p99 ms, errors) for ``clients`` threads calling for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def run(i: int) -> None:
        mine = latencies[i]
        start.wait()
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                return
            try:
                call()
            except Exception:
                errors[i] += 1
            mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    flat = sorted(x for per in latencies for x in per)
    if not flat:
        return 0.0, 0.0, 0.0, sum(errors)
    p50 = flat[len(flat) // 2] * 1000
    p99 = flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000
    return len(flat) / elapsed, p50, p99, sum(errors)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, action="append", help="concurrency (repeatable; default 1 10 100)")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    args = p.parse_args()
    levels = args.clients or [1, 10, 100]
    with tempfile.TemporaryDirectory(prefix="zonal-bench-") as tmp:
        log_path = Path(tmp) / "zonal.log"
        zonal_args = ["all", "--cloud", "embedded", "--embedded-fast", "--embedded-state-dir", f"{tmp}/state"]
        with log_path.open("w") as log, zonal(zonal_args, Path(tmp) / "csi.sock", log) as channel:
            identity = csi_pb2_grpc.IdentityStub(channel)
            node = csi_pb2_grpc.NodeStub(channel)
            controller = csi_pb2_grpc.ControllerStub(channel)
            created = controller.CreateVolume(
                csi_pb2.CreateVolumeRequest(
                    name="pvc-cheap-rpcs",
                    capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 30),
                    volume_capabilities=[RWO],
                ),
                timeout=30,
            )
            validate = csi_pb2.ValidateVolumeCapabilitiesRequest(
                volume_id=created.volume.volume_id, volume_capabilities=[RWO]
            )
            rpcs: dict[str, Callable[[], object]] = {
                "Probe": lambda: identity.Probe(csi_pb2.ProbeRequest(), timeout=10),
                "NodeGetInfo": lambda: node.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=10),
                "ValidateVolumeCapabilities": lambda: controller.ValidateVolumeCapabilities(
                    validate, timeout=10
                ),
            }
            print(f"cheap RPCs against zonal all --cloud embedded, {args.seconds:g} s per cell")
            print(
                f"  {'rpc':28s} {'clients':>7s} {'calls/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}"
            )
            for name, call in rpcs.items():
                _measure(call, 4, args.warmup)
                for clients in levels:
                    rate, p50, p99, errors = _measure(call, clients, args.seconds)
                    print(f"  {name:28s} {clients:7d} {rate:9.0f} {p50:8.2f} {p99:8.2f} {errors:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
