"""``zonal provisioner``: the topology-aware external provisioner, with the sidecar's flags.

Why it exists: it turns flags into a :class:`~provisioner.provisioning.ProvisionerConfig`, builds the
gRPC CSI client and the Kubernetes adapter, waits for the driver, refuses a driver that cannot create
volumes, serves ``--http-endpoint`` and runs the loop until SIGTERM/SIGINT. It makes no decisions.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import uuid
from types import FrameType

from provisioner.cli import CliError
from provisioner.cli.http import HttpEndpoint
from provisioner.errors import ZonalError
from provisioner.metrics import Metrics
from provisioner.ports.clock import SystemClock
from provisioner.provisioning import ProvisionerConfig
from provisioner.provisioning.loop import discover_driver, run_provisioner
from provisioner.topology.requirements import RequirementFixes

log = logging.getLogger("zonal.provisioner")


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _duration(value: str) -> float:
    """``15s``, ``2m``, ``1h``, ``500ms`` or plain seconds."""
    v = value.strip()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if v.endswith(suffix) and v[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(v[: -len(suffix)]) * factor
    try:
        return float(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a duration like 10s or 5m, got {value!r}") from e


def add_args(parser: argparse.ArgumentParser) -> None:
    d = ProvisionerConfig()
    env = os.environ.get
    parser.add_argument(
        "--csi-address", default=env("CSI_ENDPOINT", d.csi_address), help="the driver's socket"
    )
    parser.add_argument(
        "--kubeconfig", default=env("KUBECONFIG", ""), help="kubeconfig file (default: in-cluster)"
    )
    parser.add_argument("--worker-threads", type=int, default=d.worker_threads)
    parser.add_argument("--retry-interval-start", type=_duration, default=d.retry_interval_start)
    parser.add_argument("--retry-interval-max", type=_duration, default=d.retry_interval_max)
    parser.add_argument("--strict-topology", type=_bool, nargs="?", const=True, default=d.strict_topology)
    parser.add_argument(
        "--immediate-topology", type=_bool, nargs="?", const=True, default=d.immediate_topology
    )
    parser.add_argument("--volume-name-prefix", default=d.volume_name_prefix)
    parser.add_argument("--volume-name-uuid-length", type=int, default=d.volume_name_uuid_length)
    parser.add_argument("--extra-create-metadata", type=_bool, nargs="?", const=True, default=False)
    parser.add_argument("--timeout", type=_duration, default=d.timeout, help="per CSI call (default 10s)")
    parser.add_argument("--default-fstype", default=d.default_fstype)
    parser.add_argument("--pv-zone-labels", type=_bool, nargs="?", const=True, default=False)
    parser.add_argument("--controller-publish-readonly", type=_bool, nargs="?", const=True, default=False)
    parser.add_argument("--leader-election", type=_bool, nargs="?", const=True, default=False)
    parser.add_argument(
        "--leader-election-namespace", default=env("POD_NAMESPACE", d.leader_election_namespace)
    )
    parser.add_argument(
        "--leader-election-lease-duration", type=_duration, default=d.leader_election_lease_duration
    )
    parser.add_argument(
        "--leader-election-renew-deadline", type=_duration, default=d.leader_election_renew_deadline
    )
    parser.add_argument(
        "--leader-election-retry-period", type=_duration, default=d.leader_election_retry_period
    )
    parser.add_argument("--kube-api-qps", type=float, default=d.kube_api_qps)
    parser.add_argument("--kube-api-burst", type=int, default=d.kube_api_burst)
    parser.add_argument("--http-endpoint", default="", help="[HOST]:PORT for /metrics and /healthz")
    parser.add_argument(
        "--sidecar-compatible",
        action="store_true",
        help="turn zonal's fixes over the sidecar off (exactly the sidecar's decisions)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "provisioner",
        help="run the topology-aware external provisioner (claims in, PersistentVolumes out)",
        description="Watch claims and provision zone-correct PersistentVolumes through a CSI driver.",
    )
    add_args(parser)
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ProvisionerConfig:
    fixes_on = not args.sidecar_compatible
    return ProvisionerConfig(
        csi_address=args.csi_address,
        kubeconfig=args.kubeconfig,
        worker_threads=args.worker_threads,
        retry_interval_start=args.retry_interval_start,
        retry_interval_max=args.retry_interval_max,
        strict_topology=args.strict_topology,
        immediate_topology=args.immediate_topology,
        volume_name_prefix=args.volume_name_prefix,
        volume_name_uuid_length=args.volume_name_uuid_length,
        extra_create_metadata=args.extra_create_metadata,
        timeout=args.timeout,
        default_fstype=args.default_fstype,
        pv_zone_labels=args.pv_zone_labels,
        controller_publish_read_only=args.controller_publish_readonly,
        leader_election=args.leader_election,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_lease_duration=args.leader_election_lease_duration,
        leader_election_renew_deadline=args.leader_election_renew_deadline,
        leader_election_retry_period=args.leader_election_retry_period,
        identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        kube_api_qps=args.kube_api_qps,
        kube_api_burst=args.kube_api_burst,
        http_endpoint=args.http_endpoint,
        fixes=RequirementFixes() if fixes_on else RequirementFixes.sidecar(),
        validate_answer=fixes_on,
        drop_cache_on_claim_delete=fixes_on,
    )


def run(args: argparse.Namespace) -> int:
    from provisioner.csi.client import GrpcCsiClient
    from provisioner.kube.client import KubeClient, load_configuration

    config = config_from_args(args)
    if not config.volume_name_prefix:
        raise CliError("--volume-name-prefix must not be empty")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    csi = GrpcCsiClient(config.csi_address, timeout=config.timeout)
    try:
        log.info("waiting for the CSI driver at %s", config.csi_address)
        try:
            facts = discover_driver(csi, SystemClock(), stop)
        except ZonalError as e:
            raise CliError(f"cannot provision with the driver at {config.csi_address}: {e}") from e
        log.info(
            "driver %s: plugin %s, controller %s",
            facts.name,
            sorted(c.value for c in facts.plugin_caps),
            sorted(c.value for c in facts.controller_caps),
        )
        try:
            kube = KubeClient(
                load_configuration(config.kubeconfig), config.kube_api_qps, config.kube_api_burst
            )
        except ZonalError as e:
            raise CliError(f"cannot reach Kubernetes: {e}") from e
        endpoint = None
        metrics = Metrics()
        if config.http_endpoint:

            def healthy() -> None:
                csi.probe()  # /healthz follows the driver's Probe, like the livenessprobe sidecar

            try:
                endpoint = HttpEndpoint(config.http_endpoint, metrics, health=healthy).start()
            except (OSError, ValueError) as e:
                raise CliError(f"cannot serve HTTP on {config.http_endpoint}: {e}") from e
        try:
            run_provisioner(kube, csi, config, facts, stop, metrics=metrics)
        finally:
            if endpoint is not None:
                endpoint.stop()
            kube.close()
    finally:
        csi.close()
    return 0
