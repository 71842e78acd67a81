"""Prometheus metrics: one :class:`Metrics` object per process, passed explicitly to whoever records.

Series (names of the EC2 ones follow aws-ebs-csi-driver's ``aws_ebs_csi_api_request_*`` family so
existing dashboards translate by prefix):

- ``zonal_csi_rpc_total{method,code}`` and ``zonal_csi_rpc_duration_seconds{method}``
- ``zonal_ec2_api_request_duration_seconds{request}``, ``zonal_ec2_api_request_errors_total{request,error}``,
  ``zonal_ec2_api_request_throttles_total{request}``
- ``zonal_ec2_limiter_rate{request}``: the client-side limiter's current rate (calls per second) for each
  mutating EC2 action, as it has found the account's rate
- ``zonal_inflight_operations{kind}`` (operations the ``controller`` and ``node`` in-flight guards hold)
- ``zonal_provisioner_queue_depth{queue}``, ``zonal_provisioner_claim_duration_seconds{result}``

This module records numbers only; serving them over HTTP is the CLI's job. It is the only module that
imports ``prometheus_client`` (an import-linter contract): the others report through small protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_RPC_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._rpc_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rpc_total = Counter("zonal_csi_rpc_total", "CSI RPCs served", ["method", "code"], registry=r)
        self.rpc_seconds = Histogram(
            "zonal_csi_rpc_duration_seconds", "CSI RPC latency", ["method"], buckets=_RPC_BUCKETS, registry=r
        )
        self.ec2_seconds = Histogram(
            "zonal_ec2_api_request_duration_seconds",
            "EC2 API call latency",
            ["request"],
            buckets=_RPC_BUCKETS,
            registry=r,
        )
        self.ec2_errors = Counter(
            "zonal_ec2_api_request_errors_total",
            "EC2 API calls that failed",
            ["request", "error"],
            registry=r,
        )
        self.ec2_throttles = Counter(
            "zonal_ec2_api_request_throttles_total", "EC2 API calls throttled", ["request"], registry=r
        )
        self.ec2_rate = Gauge(
            "zonal_ec2_limiter_rate",
            "Client-side limiter's current rate per EC2 action (calls per second)",
            ["request"],
            registry=r,
        )
        self.inflight = Gauge("zonal_inflight_operations", "Operations in flight", ["kind"], registry=r)
        self.queue_depth = Gauge(
            "zonal_provisioner_queue_depth",
            "Items waiting in the provisioner's queues",
            ["queue"],
            registry=r,
        )
        self.claim_seconds = Histogram(
            "zonal_provisioner_claim_duration_seconds",
            "Time from first sight of a claim to its PV (or final failure)",
            ["result"],
            buckets=_RPC_BUCKETS,
            registry=r,
        )

    # --- recorders used through small protocols by the CSI interceptor, EC2 adapter, provisioner ---

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        # Label children are looked up once per (method, code): this runs on every RPC.
        children = self._rpc_children.get((method, code))
        if children is None:
            children = (self.rpc_total.labels(method, code), self.rpc_seconds.labels(method))
            self._rpc_children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_ec2(self, request: str, seconds: float, error: str = "", throttled: bool = False) -> None:
        self.ec2_seconds.labels(request).observe(seconds)
        if error:
            self.ec2_errors.labels(request, error).inc()
        if throttled:
            self.ec2_throttles.labels(request).inc()

    def watch_ec2_rate(self, request: str, rate: Callable[[], float]) -> None:
        # Read at scrape time: the limiter changes its rate continuously while it probes.
        self.ec2_rate.labels(request).set_function(rate)

    def inflight_changed(self, kind: str, count: int) -> None:
        self.inflight.labels(kind).set(count)

    def watch_queue_depth(self, queue: str, depth: Callable[[], int]) -> None:
        # Read at scrape time, so the gauge is never stale.
        self.queue_depth.labels(queue).set_function(depth)

    def observe_claim(self, result: str, seconds: float) -> None:
        self.claim_seconds.labels(result).observe(seconds)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
