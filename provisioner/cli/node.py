"""Node-service flags and the builder that turns them into a ready :class:`NodeService`.

``add_args`` adds ``--node-id --zone --instance-type --volume-attach-limit
--reserved-volume-attachments --metadata-sources --state-dir``; ``build_node_service`` resolves where
the node is (refusing to start, with the sources tried, when it cannot tell), wires the Linux mounter,
the sysfs device resolver and the node's state folder into a :class:`NodeCore`. On a real instance the
resolver never accepts a loop device; with the embedded cloud it accepts those backed by the embedded
cloud's own files. The only environment read is ``CSI_NODE_NAME`` (for the Kubernetes metadata source).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence

from provisioner.aws.imds import DEFAULT_ENDPOINT, ImdsClient
from provisioner.cli import CliError
from provisioner.csi.node_service import NodeService
from provisioner.errors import FailedPrecondition
from provisioner.kube.nodeinfo import KubeNodeMetadata
from provisioner.mount.devices import SysfsDeviceResolver
from provisioner.mount.linux import LinuxMounter
from provisioner.mount.state import DEFAULT_STATE_DIR, FileNodeState
from provisioner.node import DEFAULT_METADATA_SOURCES, KNOWN_METADATA_SOURCES, NodeConfig, NodeCore
from provisioner.node_metadata import resolve_metadata
from provisioner.ports.clock import SystemClock
from provisioner.ports.csi import InFlight
from provisioner.ports.node import Metadata, NodeMetadata

log = logging.getLogger("zonal.node")


def _sources(value: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [n for n in names if n not in KNOWN_METADATA_SOURCES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown metadata source {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(KNOWN_METADATA_SOURCES))}"
        )
    return names


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _non_negative(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return n


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("node service")
    g.add_argument("--node-id", default="", help="instance id to report (overrides metadata)")
    g.add_argument("--zone", default="", help="availability zone to report (overrides metadata)")
    g.add_argument(
        "--instance-type", default="", help="instance type for the attach limit (overrides metadata)"
    )
    g.add_argument(
        "--volume-attach-limit",
        type=_positive,
        default=None,
        help="max_volumes_per_node to report instead of the limit computed from the instance type",
    )
    g.add_argument(
        "--reserved-volume-attachments",
        type=_non_negative,
        default=None,
        help="attachments held by the system (root disk…), subtracted from the computed limit instead of "
        "the devices attached at start; ignored with --volume-attach-limit",
    )
    g.add_argument(
        "--metadata-sources",
        type=_sources,
        default=DEFAULT_METADATA_SOURCES,
        help="where to learn the instance id, zone and type, tried in order (default: imds,kubernetes)",
    )
    g.add_argument(
        "--state-dir",
        default="",
        help="where the node records what it mounted and the formats it started "
        f"(default {DEFAULT_STATE_DIR}; with --cloud embedded, a folder in the embedded state folder)",
    )
    g.add_argument("--imds-endpoint", default=DEFAULT_ENDPOINT, help=argparse.SUPPRESS)


def node_config(args: argparse.Namespace) -> NodeConfig:
    return NodeConfig(
        node_id=args.node_id,
        zone=args.zone,
        instance_type=args.instance_type,
        volume_attach_limit=args.volume_attach_limit,
        reserved_volume_attachments=args.reserved_volume_attachments,
        metadata_sources=tuple(args.metadata_sources),
    )


def metadata_sources(names: Sequence[str], imds_endpoint: str, environ: Mapping[str, str]) -> list[Metadata]:
    sources: list[Metadata] = []
    for name in names:
        if name == "imds":
            sources.append(ImdsClient(imds_endpoint))
        elif name == "kubernetes":
            sources.append(KubeNodeMetadata(environ.get("CSI_NODE_NAME", "")))
    return sources


def build_node_service(
    args: argparse.Namespace,
    *,
    metadata: NodeMetadata | None = None,
    environ: Mapping[str, str] | None = None,
    embedded_dir: str | os.PathLike[str] | None = None,
    inflight: InFlight | None = None,
) -> NodeService:
    """The Node servicer for ``args``. ``metadata`` (the embedded cloud's instance) skips the sources;
    flags still override it. ``embedded_dir`` is the embedded cloud's folder: its loop devices are
    accepted as volumes and the node state defaults to a folder in it. Raises CliError when the node
    cannot tell where it is."""
    config = node_config(args)
    env = os.environ if environ is None else environ
    try:
        if metadata is not None:
            resolved = resolve_metadata([], _overlay(config.overrides(), metadata))
        else:
            sources = metadata_sources(config.metadata_sources, args.imds_endpoint, env)
            resolved = resolve_metadata(sources, config.overrides())
    except FailedPrecondition as e:
        raise CliError(str(e)) from e
    log.info(
        "node %s in %s (type %s, from %s)",
        resolved.instance_id,
        resolved.zone,
        resolved.instance_type or "unknown",
        resolved.source,
    )
    loop_dirs = () if embedded_dir is None else (str(embedded_dir),)
    default_state = DEFAULT_STATE_DIR if embedded_dir is None else os.path.join(embedded_dir, "node-state")
    state_dir = getattr(args, "state_dir", "") or default_state
    log.info("node state in %s", state_dir)
    core = NodeCore(
        LinuxMounter(),
        SysfsDeviceResolver(loop_dirs=loop_dirs),
        resolved,
        config,
        SystemClock(),
        log,
        state=FileNodeState(state_dir),
        inflight=inflight,
    )
    return NodeService(core)


def _overlay(overrides: NodeMetadata, base: NodeMetadata) -> NodeMetadata:
    return NodeMetadata(
        instance_id=overrides.instance_id or base.instance_id,
        zone=overrides.zone or base.zone,
        instance_type=overrides.instance_type or base.instance_type,
        region=base.region,
        block_device_count=base.block_device_count,
        eni_count=base.eni_count,
        source=base.source or "embedded",
    )
