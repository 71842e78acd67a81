"""``zonal controller|node|all``: serve CSI on an endpoint until SIGTERM/SIGINT.

Modes register Identity+Controller, Identity+Node, or all three. This module wires the pieces; the
flags of each area come from its own CLI module (cloud, node, embedded).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from pathlib import Path

from provisioner import __version__
from provisioner.cli import CliError, cloud, embedded_entry, node
from provisioner.cli.http import HttpEndpoint
from provisioner.cli.logs import add_logging_args
from provisioner.config import (
    DEFAULT_DRIVER_NAME,
    EBS_DRIVER_NAME,
    ControllerConfig,
    DriverConfig,
    ServerConfig,
    validate_driver_name,
)
from provisioner.controller import ControllerCore
from provisioner.controller.drivertags import check_extra_tags
from provisioner.csi.controller_service import ControllerService
from provisioner.csi.endpoint import (
    ENDPOINT_DEFAULT_HELP,
    ENDPOINT_FORMS,
    check_socket_folder,
    default_endpoint,
    parse_endpoint,
)
from provisioner.csi.health import add_health_service
from provisioner.csi.identity import IdentityService
from provisioner.csi.server import Services, serve_until_signalled, start_server
from provisioner.metrics import Metrics
from provisioner.mount import commands
from provisioner.ports.clock import SystemClock
from provisioner.ports.csi import InFlight

log = logging.getLogger("zonal.serve")

MODES = {
    "controller": "serve CSI Identity + Controller (EBS through EC2)",
    "node": "serve CSI Identity + Node (mkfs, mount) on this machine",
    "all": "serve Identity, Controller and Node in one process (trials, the embedded cloud)",
}


def _driver_name(value: str) -> str:
    try:
        return validate_driver_name(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _tags(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"--extra-tags: {item!r} is not key=value")
        out[key.strip()] = val.strip()
    try:
        check_extra_tags(out)  # values are templates, as aws-ebs-csi-driver's
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for mode, help_text in MODES.items():
        p = sub.add_parser(mode, help=help_text, description=help_text)
        p.add_argument(
            "--endpoint",
            default=default_endpoint(os.environ.get("CSI_ENDPOINT")),
            help=f"where to serve CSI: {ENDPOINT_FORMS} ({ENDPOINT_DEFAULT_HELP})",
        )
        p.add_argument(
            "--driver-name",
            type=_driver_name,
            default=DEFAULT_DRIVER_NAME,
            help=f"CSI plugin name (default {DEFAULT_DRIVER_NAME}; {EBS_DRIVER_NAME} takes over from "
            "aws-ebs-csi-driver)",
        )
        p.add_argument(
            "--http-endpoint",
            default="",
            help="[HOST]:PORT for /metrics and /healthz (default none: not served)",
        )
        p.add_argument("--grace-period", type=float, default=10.0, help="seconds in-flight calls get at stop")
        p.add_argument("--max-workers", type=int, default=256, help="gRPC calls served at once")
        add_logging_args(p)
        if mode in ("controller", "all"):
            g = p.add_argument_group("controller service")
            g.add_argument(
                "--cluster-id",
                default="",
                help="tag volumes kubernetes.io/cluster/ID=owned (default none: no cluster tag)",
            )
            g.add_argument(
                "--extra-tags",
                type=_tags,
                default={},
                help="k=v,... added to every volume and snapshot; v may be a template ({{ .PVCName }})",
            )
            g.add_argument(
                "--k8s-tag-cluster-id",
                default="",
                help="tags volumes and snapshots kubernetes.io/cluster/ID=owned, Name=ID-dynamic-<name>, "
                "KubernetesCluster=ID (as aws-ebs-csi-driver)",
            )
            g.add_argument(
                "--default-zone",
                default="",
                help="zone for volumes with no accessibility requirements (default: spread by a hash of "
                "the name; in `all` mode, the node's own zone)",
            )
            g.add_argument(
                "--allow-foreign-volume-delete",
                action="store_true",
                help="let DeleteVolume delete volumes this driver did not create",
            )
            g.add_argument(
                "--lookup-before-create",
                action="store_true",
                help="look each name up (DescribeVolumes) before CreateVolume, besides the ClientToken: "
                "finds volumes of that name made by other tools, at one more EC2 call per volume",
            )
            g.add_argument(
                "--no-learned-waits",
                dest="learned_waits",
                action="store_false",
                help="poll a new volume for `available` on the fixed backoff (1 s, then ×1.6) instead of "
                "when earlier volumes of its kind were ready",
            )
        cloud.add_args(p)
        embedded_entry.add_args(p)
        if mode in ("node", "all"):
            node.add_args(p)
        p.set_defaults(func=run, mode=mode)


def driver_config(args: argparse.Namespace) -> DriverConfig:
    """The driver's identity and tagging flags (node mode has no tagging flags)."""
    return DriverConfig(
        driver_name=args.driver_name,
        vendor_version=__version__,
        cluster_id=getattr(args, "cluster_id", ""),
        extra_tags=getattr(args, "extra_tags", {}),
        k8s_tag_cluster_id=getattr(args, "k8s_tag_cluster_id", ""),
    )


def run(args: argparse.Namespace) -> int:
    mode: str = args.mode
    driver = driver_config(args)
    metrics = Metrics()
    cleanups: list[Callable[[], None]] = []
    probe: Callable[[], None] | None = None
    controller_service = None
    node_service = None
    online_expansion = False
    node_metadata = None
    embedded_dir: Path | None = None
    on_signal: Callable[[], object] | None = None
    try:
        # Refuse a bad endpoint before anything (an embedded cloud, loop devices) is built for it.
        endpoint = parse_endpoint(args.endpoint)
        if endpoint.scheme == "unix":
            check_socket_folder(endpoint.address)
    except (OSError, ValueError) as e:
        raise CliError(f"cannot serve on {args.endpoint}: {e}") from e
    try:
        # A node on real AWS never calls EC2: it needs no region (and must not wait on IMDS for one).
        needs_cloud = mode != "node" or args.cloud == "embedded"
        cloud_config = cloud.cloud_config_from_args(args) if needs_cloud else None
        ec2 = None
        if cloud_config is not None and cloud_config.kind == "embedded":
            zones = tuple(z.strip() for z in args.embedded_zones.split(",") if z.strip())
            # Embedded mode owns its kernel state: what a crashed predecessor left is released first,
            # and everything this process makes is recorded until its own cleanup releases it.
            try:
                ledger = embedded_entry.start_ledger(args.embedded_runtime_dir)
            except OSError as e:
                raise CliError(f"--embedded-runtime-dir {args.embedded_runtime_dir}: {e}") from e
            cleanups.append(ledger.close)
            try:
                emb = embedded_entry.build_embedded(
                    cloud_config.region,
                    zones,
                    getattr(args, "zone", ""),
                    state_dir=args.embedded_state_dir,
                    fast=args.embedded_fast,
                    metrics=metrics,
                    ledger=ledger,
                )
            except ValueError as e:
                raise CliError(str(e)) from e
            cleanups.append(emb.close)
            ec2 = emb.cloud
            node_metadata = emb.node
            embedded_dir = emb.state_dir
        if mode in ("node", "all"):
            node_service = node.build_node_service(
                args, metadata=node_metadata, embedded_dir=embedded_dir, inflight=InFlight("node", metrics)
            )
            # mkfs, fsck, resize, mount still running when zonal stops are killed, never left behind.
            on_signal = commands.kill_all
        if mode in ("controller", "all"):
            if ec2 is None and cloud_config is not None:
                cloud.require_credentials()
                ec2 = cloud.build_cloud(cloud_config, metrics=metrics)
            assert ec2 is not None
            default_zone = args.default_zone
            if not default_zone and node_service is not None:
                # One process is controller and node: a volume asked for without accessibility
                # requirements goes where this node can attach it, not to a zone picked by its name.
                default_zone = node_service.core.metadata.zone
            core = ControllerCore(
                ec2,
                SystemClock(),
                driver,
                ControllerConfig(
                    default_zone=default_zone,
                    allow_foreign_volume_delete=args.allow_foreign_volume_delete,
                    lookup_before_create=args.lookup_before_create,
                    learned_waits=args.learned_waits,
                ),
                inflight=InFlight("controller", metrics),
            )
            controller_service = ControllerService(core)
            probe = core.probe
            online_expansion = bool(getattr(core, "online_expansion", False))
        identity = IdentityService(
            driver.driver_name,
            driver.vendor_version,
            controller=controller_service is not None,
            online_expansion=online_expansion,
            probe=probe,
        )
        services = Services(
            identity=identity,
            controller=controller_service,
            node=node_service,
            extra=(lambda server: add_health_service(server, probe),),
        )
        server_config = ServerConfig(
            endpoint=args.endpoint, mode=mode, max_workers=args.max_workers, grace_seconds=args.grace_period
        )
        try:
            server = start_server(server_config, services, observer=metrics)
        except (OSError, ValueError, RuntimeError) as e:
            raise CliError(f"cannot serve on {args.endpoint}: {e}") from e
        if args.http_endpoint:
            try:
                http = HttpEndpoint(args.http_endpoint, metrics, probe).start()
            except (OSError, ValueError) as e:
                server.stop(0)
                raise CliError(f"cannot serve HTTP on {args.http_endpoint}: {e}") from e
            cleanups.append(http.stop)
        print(f"zonal {mode} serving {server.endpoint} as {driver.driver_name}", flush=True)
        serve_until_signalled(server, args.grace_period, on_signal=on_signal)
        commands.allow_new()  # no call is in flight any more; the clean-ups below may run losetup
        return 0
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
