"""``zonal csi --endpoint ENDPOINT <verb>``: a CSI client for operators, like Go's ``csc``.

Works against any CSI endpoint (``unix:///p``, ``unix:/p``, ``/p``, ``tcp://h:p``; default
``$CSI_ENDPOINT``, else ``unix:///csi/csi.sock``, as the servers). Readable ``key: value`` output by
default, ``-o json`` for tools. A failed call prints
``zonal csi: <CODE_NAME>: <message>`` and exits 1; a usage error exits 2.

This module only parses flags and prints; the calls and formats live in
:mod:`provisioner.csi.cli_client`. It must not import anything heavy (it starts for every call).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from provisioner.csi.cli_client import (
    CallFailed,
    CsiOperator,
    Pairs,
    Result,
    merge_pairs,
    parse_pairs,
    render_json,
    render_text,
)
from provisioner.csi.endpoint import (
    ENDPOINT_DEFAULT_HELP,
    ENDPOINT_FORMS,
    Endpoint,
    default_endpoint,
    parse_endpoint,
)
from provisioner.errors import InvalidArgument
from provisioner.model import ZONE_KEY, AccessMode, AccessType, VolumeCapability
from provisioner.provisioning.quantity import parse_quantity

Handler = Callable[[argparse.Namespace, CsiOperator], Result]

_MODE_ALIASES = {
    "rwo": AccessMode.SINGLE_NODE_WRITER,
    "rwop": AccessMode.SINGLE_NODE_SINGLE_WRITER,
    "rox": AccessMode.MULTI_NODE_READER_ONLY,
    "rwx": AccessMode.MULTI_NODE_MULTI_WRITER,
}


def _endpoint(value: str) -> Endpoint:
    try:
        return parse_endpoint(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _size(value: str) -> int:
    try:
        size = parse_quantity(value)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size (e.g. 10Gi, 1G, 1073741824)") from e
    if size <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return size


def _pairs(value: str) -> Pairs:
    try:
        return parse_pairs(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _access_mode(value: str) -> AccessMode:
    key = value.strip().replace("-", "_")
    if key.lower() in _MODE_ALIASES:
        return _MODE_ALIASES[key.lower()]
    try:
        mode = AccessMode[key.upper()]
    except KeyError:
        mode = AccessMode.UNKNOWN
    if mode is AccessMode.UNKNOWN:
        names = ", ".join(m.name for m in AccessMode if m is not AccessMode.UNKNOWN)
        raise argparse.ArgumentTypeError(
            f"unknown access mode {value!r}; choose from {names} (or rwo/rox/rwx)"
        )
    return mode


def _positive_float(value: str) -> float:
    n = float(value)
    if n <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return n


def _common(suppress: bool) -> argparse.ArgumentParser:
    """--endpoint/--timeout/-o, accepted before the verb and (``suppress``) after it too."""
    p = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    p.add_argument(
        "--endpoint",
        type=_endpoint,
        metavar="ENDPOINT",
        # argparse applies the type to a str default
        default=default(default_endpoint(os.environ.get("CSI_ENDPOINT"))),
        help=f"the driver's endpoint: {ENDPOINT_FORMS} ({ENDPOINT_DEFAULT_HELP})",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        default=default(60.0),
        help="seconds per call (default 60)",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default=default("text"),
        help="output format (default text)",
    )
    return p


def _capability_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("volume capability")
    g.add_argument("--block", action="store_true", help="raw block access instead of a filesystem")
    g.add_argument("--fs-type", default="", help="filesystem type (default: the driver's, ext4 for zonal)")
    g.add_argument("--mount-flag", action="append", default=[], help="mount option (repeatable)")
    g.add_argument(
        "--access-mode",
        type=_access_mode,
        metavar="MODE",
        default=AccessMode.SINGLE_NODE_WRITER,
        help="SINGLE_NODE_WRITER (default), MULTI_NODE_MULTI_WRITER, … or rwo/rox/rwx/rwop",
    )


def _capability(args: argparse.Namespace) -> VolumeCapability:
    if args.block:
        return VolumeCapability(AccessType.BLOCK, args.access_mode)
    return VolumeCapability(AccessType.MOUNT, args.access_mode, args.fs_type, tuple(args.mount_flag))


def _context_args(p: argparse.ArgumentParser, publish_context: bool) -> None:
    p.add_argument(
        "--volume-context",
        type=_pairs,
        action="append",
        default=[],
        metavar="K=V",
        help="k=v[,k=v] from create-volume",
    )
    if publish_context:
        p.add_argument(
            "--publish-context",
            type=_pairs,
            action="append",
            default=[],
            metavar="K=V",
            help="k=v[,k=v] from publish",
        )


# Verbs


def _info(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.info()


def _probe(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.probe()


def _create_volume(args: argparse.Namespace, op: CsiOperator) -> Result:
    requisite: list[Pairs] = list(args.requisite)
    preferred: list[Pairs] = list(args.preferred)
    if args.zone:
        # The shape external-provisioner sends for a single allowed zone.
        requisite = [Pairs({ZONE_KEY: args.zone})]
        preferred = [Pairs({ZONE_KEY: args.zone})]
    return op.create_volume(
        args.name,
        args.size,
        _capability(args),
        limit_bytes=args.limit or 0,
        requisite=requisite,
        preferred=preferred,
        parameters=merge_pairs(args.param),
        snapshot_id=args.from_snapshot,
        source_volume_id=args.from_volume,
    )


def _delete_volume(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.delete_volume(args.volume_id)


def _publish(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.publish(
        args.volume_id,
        args.node_id,
        _capability(args),
        readonly=args.readonly,
        volume_context=merge_pairs(args.volume_context),
    )


def _unpublish(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.unpublish(args.volume_id, args.node_id)


def _list_volumes(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.list_volumes(args.max_entries, args.starting_token)


def _get_volume(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.get_volume(args.volume_id)


def _expand_volume(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.expand_volume(args.volume_id, args.size)


def _node_info(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.node_info()


def _stage(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.stage(
        args.volume_id,
        args.staging_path,
        _capability(args),
        publish_context=merge_pairs(args.publish_context),
        volume_context=merge_pairs(args.volume_context),
    )


def _unstage(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.unstage(args.volume_id, args.staging_path)


def _node_publish(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.node_publish(
        args.volume_id,
        args.staging_path,
        args.target_path,
        _capability(args),
        readonly=args.readonly,
        publish_context=merge_pairs(args.publish_context),
        volume_context=merge_pairs(args.volume_context),
    )


def _node_unpublish(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.node_unpublish(args.volume_id, args.target_path)


def _stats(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.stats(args.volume_id, args.path, args.staging_path)


def _create_snapshot(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.create_snapshot(args.name, args.source_volume_id, merge_pairs(args.param))


def _delete_snapshot(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.delete_snapshot(args.snapshot_id)


def _list_snapshots(args: argparse.Namespace, op: CsiOperator) -> Result:
    return op.list_snapshots(args.source_volume_id, args.snapshot_id)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = "call any CSI endpoint (like csc): info, create-volume, publish, stage, …"
    csi = sub.add_parser(
        "csi",
        help=help_text,
        description=help_text + " Errors show the gRPC code by name.",
        parents=[_common(suppress=False)],
    )
    csi.set_defaults(func=run, verb_parser=csi)
    verbs = csi.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    common = _common(suppress=True)

    def verb(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(handler=handler, verb_parser=p)
        return p

    verb("info", _info, "plugin info and capabilities of every service that answers")
    verb("probe", _probe, "Identity.Probe")

    p = verb("create-volume", _create_volume, "Controller.CreateVolume")
    p.add_argument("--name", required=True, help="the idempotency name (a PV name, say)")
    p.add_argument(
        "--size", type=_size, required=True, metavar="SIZE", help="required bytes: 10Gi, 1G or a byte count"
    )
    p.add_argument("--limit", type=_size, default=None, help="limit bytes (default none)")
    p.add_argument("--zone", default="", help=f"shorthand for --requisite/--preferred {ZONE_KEY}=ZONE")
    p.add_argument(
        "--requisite",
        type=_pairs,
        action="append",
        default=[],
        metavar="K=V[,K=V]",
        help="k=v[,k=v]: one segment (repeatable)",
    )
    p.add_argument(
        "--preferred",
        type=_pairs,
        action="append",
        default=[],
        metavar="K=V[,K=V]",
        help="k=v[,k=v]: one segment, in order",
    )
    p.add_argument(
        "--param", type=_pairs, action="append", default=[], metavar="K=V", help="k=v: StorageClass parameter"
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from-snapshot", default="", help="snapshot id to restore")
    source.add_argument("--from-volume", default="", help="volume id to clone")
    _capability_args(p)

    p = verb("delete-volume", _delete_volume, "Controller.DeleteVolume")
    p.add_argument("volume_id")

    for name, handler, help in (
        ("publish", _publish, "Controller.ControllerPublishVolume (attach to a node)"),
        ("unpublish", _unpublish, "Controller.ControllerUnpublishVolume (detach from a node)"),
    ):
        p = verb(name, handler, help)
        p.add_argument("volume_id")
        p.add_argument("--node-id", required=True, help="the node id NodeGetInfo reports")
        if name == "publish":
            p.add_argument("--readonly", action="store_true", help="attach read-only")
            _context_args(p, publish_context=False)
            _capability_args(p)

    p = verb("list-volumes", _list_volumes, "Controller.ListVolumes (every page unless paged by hand)")
    p.add_argument(
        "--max-entries", type=int, default=0, help="volumes per page (default 0: the driver's choice)"
    )
    p.add_argument(
        "--starting-token", default="", help="next_token of the previous page (default none: the first)"
    )

    p = verb("get-volume", _get_volume, "Controller.ControllerGetVolume")
    p.add_argument("volume_id")

    p = verb("expand-volume", _expand_volume, "Controller.ControllerExpandVolume")
    p.add_argument("volume_id")
    p.add_argument("--size", type=_size, required=True, help="new required bytes")

    p = verb("create-snapshot", _create_snapshot, "Controller.CreateSnapshot")
    p.add_argument("source_volume_id")
    p.add_argument("--name", required=True, help="the idempotency name (a VolumeSnapshotContent name, say)")
    p.add_argument(
        "--param",
        type=_pairs,
        action="append",
        default=[],
        metavar="K=V",
        help="k=v: snapshot class parameter",
    )

    p = verb("delete-snapshot", _delete_snapshot, "Controller.DeleteSnapshot")
    p.add_argument("snapshot_id")

    p = verb("list-snapshots", _list_snapshots, "Controller.ListSnapshots")
    p.add_argument("--source-volume-id", default="", help="only this volume's snapshots (default: all)")
    p.add_argument("--snapshot-id", default="", help="only this snapshot (default: all)")

    verb("node-info", _node_info, "Node.NodeGetInfo")

    p = verb("stage", _stage, "Node.NodeStageVolume (format if needed, mount at the staging path)")
    p.add_argument("volume_id")
    p.add_argument("--staging-path", required=True, help="where the volume is mounted once per node")
    _context_args(p, publish_context=True)
    _capability_args(p)

    p = verb("unstage", _unstage, "Node.NodeUnstageVolume")
    p.add_argument("volume_id")
    p.add_argument("--staging-path", required=True, help="the path stage mounted")

    p = verb("node-publish", _node_publish, "Node.NodePublishVolume (bind-mount into the target path)")
    p.add_argument("volume_id")
    p.add_argument("--staging-path", required=True, help="the path stage mounted")
    p.add_argument("--target-path", required=True, help="where the pod sees the volume (bind mount)")
    p.add_argument("--readonly", action="store_true", help="bind-mount read-only")
    _context_args(p, publish_context=True)
    _capability_args(p)

    p = verb("node-unpublish", _node_unpublish, "Node.NodeUnpublishVolume")
    p.add_argument("volume_id")
    p.add_argument("--target-path", required=True, help="the path node-publish mounted")

    p = verb("stats", _stats, "Node.NodeGetVolumeStats")
    p.add_argument("volume_id")
    p.add_argument("--path", required=True, help="the volume path (a target or staging path)")
    p.add_argument(
        "--staging-path", default="", help="the staging path, if the driver wants it (default none)"
    )


def run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.verb_parser
    if getattr(args, "zone", "") and (args.requisite or args.preferred):
        parser.error("--zone is a shorthand for --requisite/--preferred; give one or the other")
    op = CsiOperator(args.endpoint, timeout=args.timeout)
    try:
        result = args.handler(args, op)
    except CallFailed as e:
        hint = "; is the driver running, and is --endpoint its socket?" if e.code == "UNAVAILABLE" else ""
        print(f"zonal csi: {e.code}: {e.message}{hint}", file=sys.stderr)
        return 1
    finally:
        op.close()
    out = render_json(result) if args.output == "json" else render_text(result)
    if out:
        print(out)
    return 0
