"""Shared pieces of the rate benchmarks (rate_matrix.py, mixed_load.py): a client that retries like the
CSI sidecars, CSI requests, and readers of the simulator's counters and zonal's /metrics. No figures."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
import grpc

from provisioner.csi._proto import csi_pb2

T = TypeVar("T")

# What the external-provisioner/attacher/snapshotter sidecars retry, with backoff.
RETRIED = {grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
ZONE_KEY = "topology.kubernetes.io/zone"
NAME_TAG = "CSIVolumeName"
CAP = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    retries: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)


def retrying(call: Callable[[], T], what: str, tally: Tally) -> T | None:
    """``call`` until it succeeds, retrying what the sidecars retry with their backoff; None if it
    failed for good (counted in ``tally``)."""
    backoff = 0.1
    for _ in range(200):
        try:
            return call()
        except grpc.RpcError as e:
            code = e.code()
            with tally.lock:
                if code not in RETRIED:
                    tally.failed[f"{what} {code.name}"] += 1
                    return None
                tally.retries[f"{what} {code.name}"] += 1
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    with tally.lock:
        tally.failed[f"{what} too many retries"] += 1
    return None


@dataclass(frozen=True)
class Answered:
    """One CreateVolume as the client saw it: wall-clock seconds (``time.time``) of its first attempt and
    of the answer, and the volume id answered."""

    started: float
    answered: float
    volume_id: str


@dataclass(frozen=True)
class Timings:
    """Per-volume figures, sorted: the client's latency (first attempt → answer), and the two parts
    around EC2's own work: first attempt → EC2 made the volume (limiter queue, retries, the call), and
    EC2 made it ``available`` → the answer (the controller's waits for ``available``). EC2's moments
    are the simulator's (``GET /_zonal/volumes``), on the same machine's wall clock."""

    latency: list[float]
    to_create: list[float]
    available_to_answer: list[float]

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")

    def line(self) -> str:
        p = self.pct
        return (
            f"latency p50/p99 {p(self.latency, 0.5):.2f}/{p(self.latency, 0.99):.2f} s; "
            f"call → EC2 created p50/p99 {p(self.to_create, 0.5):.2f}/{p(self.to_create, 0.99):.2f} s; "
            f"available → answered p50/p99 {p(self.available_to_answer, 0.5):.2f}/"
            f"{p(self.available_to_answer, 0.99):.2f} s"
        )


def timings(endpoint: str, answers: list[Answered], create_delay: float) -> Timings:
    """The :class:`Timings` of ``answers``, from when the simulator made each volume available."""
    ready: dict[str, float] = get_json(endpoint + "/_zonal/volumes")
    known = [a for a in answers if a.volume_id in ready]
    return Timings(
        latency=sorted(a.answered - a.started for a in answers),
        to_create=sorted(ready[a.volume_id] - create_delay - a.started for a in known),
        available_to_answer=sorted(a.answered - ready[a.volume_id] for a in known),
    )


def create_request(name: str, zone: str) -> csi_pb2.CreateVolumeRequest:
    """A 1 GiB gp3 volume that must be in ``zone``."""
    topology = csi_pb2.Topology(segments={ZONE_KEY: zone})
    return csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=1 << 30),
        volume_capabilities=[CAP],
        parameters={"type": "gp3"},
        accessibility_requirements=csi_pb2.TopologyRequirement(requisite=[topology], preferred=[topology]),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def controller_args(sim: dict[str, Any], metrics_port: int) -> list[str]:
    """``zonal controller`` against the simulator ``sim`` describes, told nothing about its buckets."""
    return [
        "controller",
        *("--region", sim["region"], "--ec2-endpoint", sim["endpoint_url"]),
        *("--http-endpoint", f"127.0.0.1:{metrics_port}"),
    ]


def get_json(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as answer:
        return json.loads(answer.read())


_SERIES = re.compile(
    r'^(zonal_ec2_limiter_rate|zonal_ec2_api_request_throttles_total)\{request="(\w+)"\} (\S+)$', re.M
)


def limiter_state(metrics_url: str) -> tuple[dict[str, float], dict[str, float]]:
    """From zonal's /metrics: the limiter's rate per action, and the throttled calls per action."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    rates: dict[str, float] = {}
    throttles: dict[str, float] = {}
    for series, action, value in _SERIES.findall(text):
        (rates if series == "zonal_ec2_limiter_rate" else throttles)[action] = float(value)
    return rates, throttles


def ec2_client(endpoint: str, region: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name=region
    )
    return session.client("ec2", endpoint_url=endpoint)


def audit(endpoint: str, region: str, expected_zone: dict[str, str]) -> tuple[int, int]:
    """(names with more than one live volume, live volumes outside the zone their name asked for)."""
    names: Counter[str] = Counter()
    wrong = 0
    pages = (
        ec2_client(endpoint, region)
        .get_paginator("describe_volumes")
        .paginate(PaginationConfig={"PageSize": 500})
    )
    for page in pages:
        for volume in page["Volumes"]:
            if volume["State"] in ("deleting", "deleted"):
                continue
            name = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}.get(NAME_TAG, "")
            names[name] += 1
            if name in expected_zone and volume["AvailabilityZone"] != expected_zone[name]:
                wrong += 1
    return sum(1 for n in names.values() if n > 1), wrong


def load() -> str:
    """The machine's load averages (1, 5, 15 min): the benchmarks share 2 cores with other work."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
