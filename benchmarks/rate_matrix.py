"""Provisioning at an account's real EC2 rate, whatever it is: a matrix of runs against the simulator
with token buckets zonal is NOT told about (zonal runs with its defaults: no ``--ec2-rate-scale``).

Each row: ``--count`` CreateVolume calls (1000), ``--concurrency`` at a time (100), each asking for one of
three zones, against ``zonal controller`` and the EC2 simulator's HTTP server (both subprocesses),
volumes taking 2 s to become ``available``. Printed per row: the wall time and its ratio to the
token-bucket floor (the time the account's CreateVolume bucket needs to admit ``count`` calls:
``(count - burst) / rate``, the rate being what a neighbour leaves), zonal's throttled share of its EC2
calls, EC2 calls per volume, failed requests, duplicated and wrong-zone volumes, and the rate zonal's
limiter ended at (``zonal_ec2_limiter_rate`` from its /metrics). ``--rows mixed`` adds the mixed-load
row of ``mixed_load.py``.

    python benchmarks/rate_matrix.py                       # every row: about 25 minutes
    python benchmarks/rate_matrix.py --rows documented,2x  # some rows
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import mixed_load
from benchmarks._procs import simulator, zonal
from benchmarks._rates import (
    Answered,
    Tally,
    Timings,
    audit,
    controller_args,
    create_request,
    free_port,
    get_json,
    limiter_state,
    load,
    retrying,
    timings,
)
from provisioner.csi._proto import csi_pb2_grpc

CREATE_DELAY = 2.0


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    sim_args: tuple[str, ...]
    burst: float  # the account's CreateVolume bucket, as far as zonal may use it
    rate: float
    ratio_goal: float
    throttle_goal: float | None  # % of zonal's EC2 calls


ROWS = (
    Row("documented", "documented buckets", (), 100, 5, 1.05, 1.0),
    Row("2x", "2× documented", ("--scale", "2", "--burst-scale", "2"), 200, 10, 1.10, 2.0),
    Row("5x", "5× documented", ("--scale", "5", "--burst-scale", "5"), 500, 25, 1.10, 2.0),
    Row("5x-refill", "5× refill, documented size", ("--scale", "5"), 100, 25, 1.10, 2.0),
    Row(
        "neighbour",
        "documented, a neighbour spends half",
        ("--neighbour", "CreateVolume=2.5"),
        100,
        2.5,
        1.10,
        5.0,
    ),
    Row("half", "0.5× documented", ("--scale", "0.5", "--burst-scale", "0.5"), 50, 2.5, 1.10, None),
)


@dataclass
class Result:
    row: Row
    count: int
    wall: float
    created: int
    counters: dict[str, dict[str, Any]]
    tally: Tally
    duplicates: int
    wrong_zone: int
    final_rate: float
    timings: Timings

    @property
    def floor(self) -> float:
        return float(max(0.0, self.count - self.row.burst) / self.row.rate)

    @property
    def ratio(self) -> float:
        return self.wall / self.floor

    @property
    def calls(self) -> int:
        return int(sum(c["calls"] for c in self.counters.values()))

    @property
    def throttled_share(self) -> float:
        return 100.0 * int(sum(c["throttled"] for c in self.counters.values())) / max(1, self.calls)

    @property
    def calls_per_volume(self) -> float:
        return self.calls / max(1, self.created)

    @property
    def failed(self) -> int:
        return sum(self.tally.failed.values()) + self.count - self.created

    def verdict(self) -> str:
        misses = []
        if self.ratio > self.row.ratio_goal:
            misses.append(f"ratio > {self.row.ratio_goal}")
        if self.row.throttle_goal is not None and self.throttled_share > self.row.throttle_goal:
            misses.append(f"throttled > {self.row.throttle_goal} %")
        if self.failed or self.duplicates or self.wrong_zone:
            misses.append("failed, duplicated or wrong zone")
        if self.calls_per_volume > 1.1:
            misses.append("calls/volume > 1.1")
        return "met" if not misses else "MISSED: " + ", ".join(misses)


def run_row(row: Row, count: int, concurrency: int, timeout: float, log_dir: str) -> Result:
    sim_args = [*row.sim_args, "--create-delay", str(CREATE_DELAY)]
    with tempfile.TemporaryDirectory(prefix="zonal-matrix-") as tmp, simulator(sim_args) as sim:
        endpoint, region, zones = sim["endpoint_url"], sim["region"], sim["zones"]
        port = free_port()
        args = controller_args(sim, port)
        names = [f"pvc-matrix-{i:05d}" for i in range(count)]
        zone_of = {name: zones[i % len(zones)] for i, name in enumerate(names)}
        tally = Tally()
        answers: list[Answered] = []
        log_path = Path(log_dir or tmp) / f"zonal-{row.key}.log"
        with log_path.open("w") as log, zonal(args, Path(tmp) / "csi.sock", log) as channel:
            stub = csi_pb2_grpc.ControllerStub(channel)

            def create(name: str) -> None:
                started = time.time()
                request = create_request(name, zone_of[name])
                answer = retrying(lambda: stub.CreateVolume(request, timeout=timeout), "CreateVolume", tally)
                if answer is not None:
                    with tally.lock:
                        answers.append(Answered(started, time.time(), answer.volume.volume_id))

            started = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(create, names))
            wall = time.monotonic() - started
            rates, _ = limiter_state(f"http://127.0.0.1:{port}/metrics")
        counters: dict[str, dict[str, Any]] = get_json(endpoint + "/_zonal/counters")
        duplicates, wrong = audit(endpoint, region, zone_of)
        times = timings(endpoint, answers, CREATE_DELAY)
    return Result(
        row=row,
        count=count,
        wall=wall,
        created=len(answers),
        counters=counters,
        tally=tally,
        duplicates=duplicates,
        wrong_zone=wrong,
        final_rate=rates.get("CreateVolume", 0.0),
        timings=times,
    )


def print_matrix(results: Sequence[Result], count: int, concurrency: int) -> None:
    print(
        f"\nCreateVolume matrix: {count} volumes, {concurrency} concurrent, {CREATE_DELAY:g} s creating delay"
    )
    head = (
        f"{'account (unknown to zonal)':38s} {'wall s':>7s} {'floor s':>7s} {'ratio':>6s} {'throttled':>10s} "
        f"{'calls/vol':>9s} {'failed':>6s} {'dup':>4s} {'wrong':>5s} {'limiter':>8s}  verdict"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.row.title:38s} {r.wall:7.1f} {r.floor:7.1f} {r.ratio:6.3f} {r.throttled_share:9.2f}% "
            f"{r.calls_per_volume:9.3f} {r.failed:6d} {r.duplicates:4d} {r.wrong_zone:5d} "
            f"{r.final_rate:7.2f}/s  {r.verdict()}"
        )
    for r in results:
        calls = ", ".join(
            f"{a} {c['calls']} ({c['throttled']} throttled)" for a, c in sorted(r.counters.items())
        )
        retries = dict(r.tally.retries) or "none"
        print(f"  {r.row.key}: {r.timings.line()}")
        print(f"  {' ' * len(r.row.key)}  client retries {retries}; EC2 {calls}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    keys = [r.key for r in ROWS] + ["mixed"]
    p.add_argument("--rows", default=",".join(keys), help=f"comma-separated, of {', '.join(keys)}")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--timeout", type=float, default=60.0, help="per-call deadline, like the sidecars'")
    p.add_argument("--log-dir", default="", help="keep zonal's log of each row in this folder")
    args = p.parse_args()
    wanted = [k.strip() for k in args.rows.split(",") if k.strip()]
    unknown = set(wanted) - set(keys)
    if unknown:
        p.error(f"unknown rows {sorted(unknown)}; known: {', '.join(keys)}")
    print(f"load average at start: {load()}", flush=True)
    results = []
    for row in ROWS:
        if row.key in wanted:
            result = run_row(row, args.count, args.concurrency, args.timeout, args.log_dir)
            print(f"{row.key}: ratio {result.ratio:.3f}, {result.verdict()} (load {load()})", flush=True)
            results.append(result)
    if results:
        print_matrix(results, args.count, args.concurrency)
    if "mixed" in wanted:
        mixed_load.report(mixed_load.run(timeout=args.timeout, log_dir=args.log_dir))
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
