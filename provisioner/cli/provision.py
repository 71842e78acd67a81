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
from provisioner.csi.endpoint import ENDPOINT_DEFAULT_HELP, ENDPOINT_FORMS, default_endpoint
from provisioner.errors import FailedPrecondition, ZonalError
from provisioner.metrics import Metrics
from provisioner.ports.clock import SystemClock
from provisioner.ports.csi import Cancelled
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

    def flag(name: str, help: str, default: bool = False) -> None:
        """A sidecar-style boolean: ``--x``, ``--x=true`` or ``--x=false``."""
        parser.add_argument(
            name, type=_bool, nargs="?", const=True, default=default, metavar="BOOL", help=help
        )

    g = parser.add_argument_group("where to connect")
    g.add_argument(
        "--csi-address",
        default=default_endpoint(env("CSI_ENDPOINT")),
        help=f"the CSI driver's endpoint: {ENDPOINT_FORMS} ({ENDPOINT_DEFAULT_HELP})",
    )
    g.add_argument(
        "--kubeconfig",
        default=env("KUBECONFIG", ""),
        help="kubeconfig file (default $KUBECONFIG, else the pod's service account, else ~/.kube/config)",
    )
    g.add_argument(
        "--timeout",
        type=_duration,
        default=d.timeout,
        help="deadline of each CSI call, e.g. 60s (default 10s)",
    )
    g = parser.add_argument_group("provisioning (the external-provisioner sidecar's flags)")
    g.add_argument("--worker-threads", type=int, default=d.worker_threads, help="claims provisioned at once")
    g.add_argument(
        "--retry-interval-start",
        type=_duration,
        default=d.retry_interval_start,
        help="first delay before a failed claim is tried again, doubled at each failure (seconds)",
    )
    g.add_argument(
        "--retry-interval-max",
        type=_duration,
        default=d.retry_interval_max,
        help="longest delay between tries of a failing claim (seconds)",
    )
    flag(
        "--strict-topology",
        "requirements name only the selected node's zone (WaitForFirstConsumer), never the other zones",
    )
    flag(
        "--immediate-topology",
        "for Immediate claims without allowedTopologies, send every zone the CSINodes report",
        default=d.immediate_topology,
    )
    g.add_argument(
        "--volume-name-prefix", default=d.volume_name_prefix, help="PV and volume names start PREFIX-"
    )
    g.add_argument(
        "--volume-name-uuid-length",
        type=int,
        default=d.volume_name_uuid_length,
        help="characters of the claim UID kept in names, dashes dropped (default -1: all, dashes kept)",
    )
    flag(
        "--extra-create-metadata",
        "pass the claim's and PV's name and namespace to CreateVolume as parameters (EBS tags)",
    )
    g.add_argument(
        "--default-fstype",
        default=d.default_fstype,
        help="filesystem when the StorageClass names none (default none: the driver's own, ext4 for zonal)",
    )
    flag("--pv-zone-labels", "also label PVs with their zone (topology.kubernetes.io/zone), like in-tree PVs")
    flag("--controller-publish-readonly", "attach ReadOnlyMany claims read-only")
    g = parser.add_argument_group("operations")
    flag("--leader-election", "run as one of several replicas; only the Lease holder provisions")
    g.add_argument(
        "--leader-election-namespace",
        default=env("POD_NAMESPACE", d.leader_election_namespace),
        help=f"namespace of the Lease (default $POD_NAMESPACE, else {d.leader_election_namespace})",
    )
    g.add_argument(
        "--leader-election-lease-duration",
        type=_duration,
        default=d.leader_election_lease_duration,
        help="how long a Lease holds without renewal (seconds)",
    )
    g.add_argument(
        "--leader-election-renew-deadline",
        type=_duration,
        default=d.leader_election_renew_deadline,
        help="the leader gives up if it cannot renew within this (seconds)",
    )
    g.add_argument(
        "--leader-election-retry-period",
        type=_duration,
        default=d.leader_election_retry_period,
        help="how often a standby tries to take the Lease (seconds)",
    )
    g.add_argument(
        "--kube-api-qps", type=float, default=d.kube_api_qps, help="Kubernetes API requests per second"
    )
    g.add_argument(
        "--kube-api-burst", type=int, default=d.kube_api_burst, help="Kubernetes API requests in a burst"
    )
    g.add_argument(
        "--http-endpoint",
        default="",
        help="[HOST]:PORT for /metrics and /healthz (default none: not served)",
    )
    g.add_argument(
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


DRIVER_PROBE_SECONDS = 1.0  # how often Probe is tried while the driver does not answer
DRIVER_WAIT_REPORT_SECONDS = 10.0  # how often the wait is reported


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not config.volume_name_prefix:
        raise CliError("--volume-name-prefix must not be empty")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        return _run(config, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(config: ProvisionerConfig, stop: threading.Event) -> int:
    from provisioner.cli.kubeaccess import connect
    from provisioner.csi.client import GrpcCsiClient

    # The cluster first: a broken kubeconfig or a cluster that does not answer is said at once, not after
    # the driver shows up (which may be never).
    kube = connect(config.kubeconfig, qps=config.kube_api_qps, burst=config.kube_api_burst)
    csi = GrpcCsiClient(config.csi_address, timeout=config.timeout)
    try:
        log.info("waiting for the CSI driver at %s", config.csi_address)

        def waiting(seconds: float, last_error: str) -> None:
            log.warning(
                "still waiting for the CSI driver at %s (%.0fs so far): %s; check that the driver "
                "runs and that --csi-address is its endpoint",
                config.csi_address,
                seconds,
                last_error,
            )

        try:
            facts = discover_driver(
                csi,
                SystemClock(),
                stop,
                probe_interval=DRIVER_PROBE_SECONDS,
                report=waiting,
                report_every=DRIVER_WAIT_REPORT_SECONDS,
            )
        except Cancelled:
            log.info("stopped before the CSI driver at %s answered", config.csi_address)
            return 0
        except ZonalError as e:
            raise CliError(f"cannot provision with the driver at {config.csi_address}: {e}") from e
        log.info(
            "driver %s: plugin %s, controller %s",
            facts.name,
            sorted(c.value for c in facts.plugin_caps),
            sorted(c.value for c in facts.controller_caps),
        )
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
        except FailedPrecondition as e:
            raise CliError(f"{e}; check the API server at {kube.server} and the ServiceAccount's RBAC") from e
        finally:
            if endpoint is not None:
                endpoint.stop()
    finally:
        kube.close()
        csi.close()
    return 0
