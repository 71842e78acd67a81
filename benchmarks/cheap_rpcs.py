"""Cheap RPC throughput: Probe, NodeGetInfo and ValidateVolumeCapabilities with 1, 10 and 100 concurrent
clients against ``zonal all --cloud embedded --embedded-fast`` (one process, the in-process EC2 simulator).

What a "client" is: one gRPC channel with a connection of its own (channels are given a local subchannel
pool, so they do not quietly share one connection) that sends one call at a time, back to back, for
``--seconds`` — like one sidecar or kubelet. N clients are N connections with N calls in flight. They
are driven from this one process, the cheapest way found to drive them from Python (per call, it leaves
the most of the two cores to the server):

- more than one client: one asyncio loop, a ``grpc.aio`` channel and a coroutine per client;
- one client: a thread with a blocking (sync) stub, which has the lower latency for a lone caller.

``--client aio|threads`` forces one of them; ``--shared-channel`` makes all clients share one channel
(one connection, the previous mode of this benchmark). The client runs on the same machine and takes
CPU too (on 2 cores, about 40 % of each call's CPU), so the figures are a lower bound for the server.

Probe's EC2 check is cached by the controller core; ValidateVolumeCapabilities reads the volume from
the embedded EC2 (a DescribeVolumes per call, shared by concurrent callers when batching is on).

    python benchmarks/cheap_rpcs.py                  # 1, 10, 100 clients, 3 s each
    python benchmarks/cheap_rpcs.py --clients 10 --seconds 5
    python benchmarks/cheap_rpcs.py --clients 10 --client threads --shared-channel
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._procs import zonal
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc

RWO = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)
# Each channel gets its own connection (by default equal channels share one).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
TIMEOUT = 10.0

# rpc name -> (service stub class, method name); the request is built once per run.
RPCS: dict[str, tuple[Any, str]] = {
    "Probe": (csi_pb2_grpc.IdentityStub, "Probe"),
    "NodeGetInfo": (csi_pb2_grpc.NodeStub, "NodeGetInfo"),
    "ValidateVolumeCapabilities": (csi_pb2_grpc.ControllerStub, "ValidateVolumeCapabilities"),
}


class Result:
    """Latencies of every call of one cell (rpc × clients), and the errors."""

    def __init__(self, latencies: Sequence[list[float]], errors: int, elapsed: float) -> None:
        self.latencies = sorted(x for per in latencies for x in per)
        self.errors = errors
        self.rate = len(self.latencies) / elapsed if elapsed > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        return self.latencies[min(len(self.latencies) - 1, int(len(self.latencies) * q))] * 1000


def _method(channel: Any, rpc: str) -> Callable[..., Any]:
    stub_class, name = RPCS[rpc]
    method: Callable[..., Any] = getattr(stub_class(channel), name)
    return method


def _count(clients: int, shared: bool) -> int:
    """How many channels ``clients`` clients use."""
    return 1 if shared else clients


def _run_threads(target: str, rpc: str, request: Any, clients: int, seconds: float, shared: bool) -> Result:
    """One thread per client, each calling a blocking stub in a loop."""
    channels = [grpc.insecure_channel(target, options=OWN_CONNECTION) for _ in range(_count(clients, shared))]
    try:
        for ch in channels:
            grpc.channel_ready_future(ch).result(timeout=30)
        calls = [_method(channels[i % len(channels)], rpc) for i in range(clients)]
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors = [0] * clients
        start = threading.Barrier(clients + 1)
        stop_at = [0.0]

        def run(i: int) -> None:
            call, mine = calls[i], latencies[i]
            start.wait()
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at[0]:
                    return
                try:
                    call(request, timeout=TIMEOUT)
                except grpc.RpcError:
                    errors[i] += 1
                mine.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        began = time.perf_counter()
        stop_at[0] = began + seconds
        start.wait()
        for t in threads:
            t.join()
        return Result(latencies, sum(errors), time.perf_counter() - began)
    finally:
        for ch in channels:
            ch.close()


async def _run_aio(target: str, rpc: str, request: Any, clients: int, seconds: float, shared: bool) -> Result:
    """One coroutine per client on one event loop, each awaiting its call before sending the next."""
    channels = [
        grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(_count(clients, shared))
    ]
    try:
        for ch in channels:
            await asyncio.wait_for(ch.channel_ready(), 30)
        calls = [_method(channels[i % len(channels)], rpc) for i in range(clients)]
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors = [0] * clients
        began = time.perf_counter()
        stop_at = began + seconds

        async def run(i: int) -> None:
            call, mine = calls[i], latencies[i]
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    await call(request, timeout=TIMEOUT)
                except grpc.RpcError:
                    errors[i] += 1
                mine.append(time.perf_counter() - t0)

        await asyncio.gather(*(run(i) for i in range(clients)))
        return Result(latencies, sum(errors), time.perf_counter() - began)
    finally:
        for ch in channels:
            await ch.close()


def measure(
    target: str, rpc: str, request: Any, clients: int, seconds: float, mode: str, shared: bool
) -> Result:
    """Drive ``clients`` concurrent clients calling ``rpc`` for ``seconds`` (see the module docstring)."""
    if mode == "auto":
        mode = "threads" if clients == 1 else "aio"
    if mode == "threads":
        return _run_threads(target, rpc, request, clients, seconds, shared)
    return asyncio.run(_run_aio(target, rpc, request, clients, seconds, shared))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, action="append", help="concurrency (repeatable; default 1 10 100)")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of calls per rpc before measuring")
    p.add_argument(
        "--client",
        choices=("auto", "aio", "threads"),
        default="auto",
        help="how clients are driven (default: a thread for 1 client, asyncio for more)",
    )
    p.add_argument("--shared-channel", action="store_true", help="all clients share one channel")
    args = p.parse_args()
    levels = args.clients or [1, 10, 100]
    with tempfile.TemporaryDirectory(prefix="zonal-bench-") as tmp:
        log_path = Path(tmp) / "zonal.log"
        socket = Path(tmp) / "csi.sock"
        target = f"unix://{socket}"
        zonal_args = ["all", "--cloud", "embedded", "--embedded-fast", "--embedded-state-dir", f"{tmp}/state"]
        with log_path.open("w") as log, zonal(zonal_args, socket, log) as channel:
            created = csi_pb2_grpc.ControllerStub(channel).CreateVolume(
                csi_pb2.CreateVolumeRequest(
                    name="pvc-cheap-rpcs",
                    capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 30),
                    volume_capabilities=[RWO],
                ),
                timeout=30,
            )
            requests: dict[str, Any] = {
                "Probe": csi_pb2.ProbeRequest(),
                "NodeGetInfo": csi_pb2.NodeGetInfoRequest(),
                "ValidateVolumeCapabilities": csi_pb2.ValidateVolumeCapabilitiesRequest(
                    volume_id=created.volume.volume_id, volume_capabilities=[RWO]
                ),
            }
            sharing = "one shared channel" if args.shared_channel else "a channel (connection) per client"
            print(f"cheap RPCs against zonal all --cloud embedded, {args.seconds:g} s per cell")
            print(f"clients: {args.client} ({sharing})")
            print(
                f"  {'rpc':28s} {'clients':>7s} {'calls/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}"
            )
            for rpc, request in requests.items():
                if args.warmup > 0:  # the server's thread pool grows to the highest concurrency first
                    measure(target, rpc, request, max(levels), args.warmup, args.client, args.shared_channel)
                for clients in levels:
                    r = measure(target, rpc, request, clients, args.seconds, args.client, args.shared_channel)
                    print(
                        f"  {rpc:28s} {clients:7d} {r.rate:9.0f} {r.percentile_ms(0.5):8.2f}"
                        f" {r.percentile_ms(0.99):8.2f} {r.errors:6d}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
