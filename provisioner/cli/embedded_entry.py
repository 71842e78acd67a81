"""The composition root's door to :mod:`provisioner.embedded`: the ``demo`` sub-command, the
``--embedded-*`` flags and the embedded cloud's builder.

Flags and help are registered here so ``zonal demo --help`` and ``zonal all --help`` work without the
embedded package being imported; the package (and moto with it) is imported only when a demo or an
embedded cloud is run. It needs the ``embedded`` extra; without it the run stops with one line saying
which extra to install. This module must not import :mod:`provisioner.embedded` at module level.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
from typing import TYPE_CHECKING

from provisioner.cli import CliError
from provisioner.cli.logs import add_logging_args

if TYPE_CHECKING:
    from provisioner.aws.callmetrics import Ec2Observer
    from provisioner.embedded.cloud import EmbeddedCloud
    from provisioner.embedded.ledger import Ledger

DEFAULT_ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")

EXTRA = "zonal[embedded]"

# Plain text: argparse prints it as it is (no reST markup in --help).
DEMO_DESCRIPTION = (
    "The whole zone story on one machine, no AWS account and no cluster: an embedded EC2, an in-memory "
    "cluster with three nodes in three zones, zonal and its provisioner loop, and a pod whose volume "
    "follows it to its zone. As root the volume is really formatted and mounted on a loop device."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="the zone story end to end on this machine (embedded EC2, in-memory cluster)",
        description=DEMO_DESCRIPTION,
    )
    story = p.add_mutually_exclusive_group()
    story.add_argument(
        "--immediate",
        action="store_true",
        help="the Immediate-binding story instead: allowedTopologies and a StatefulSet spread over zones",
    )
    story.add_argument(
        "--relocate",
        action="store_true",
        help="the volume's zone loses its nodes: zonal doctor finds the claim, zonal relocate moves it, "
        "the file is read back in the new zone",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the socket, the cluster and EC2 running (served on 127.0.0.1) until Ctrl-C",
    )
    p.add_argument("--dir", default="", help="where the socket and state go (default: a temporary folder)")
    add_runtime_dir_arg(p, "--runtime-dir")
    add_logging_args(p)
    p.set_defaults(func=run_demo)


def require_extra(what: str) -> None:
    """Raise a one-line :class:`CliError` naming the extra when the embedded world cannot be imported."""
    try:
        # moto (and, through the simulator, moto's server) is what the extra exists to bring.
        importlib.import_module("moto")
        importlib.import_module("provisioner.embedded.ec2")
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] == "provisioner":
            raise
        raise CliError(
            f"{what} needs the embedded extra ({e.name} is not installed): pip install '{EXTRA}'"
        ) from e


def run_demo(args: argparse.Namespace) -> int:
    require_extra("zonal demo")
    from provisioner.embedded.demo import story

    return story.run(args)


RUNTIME_DIR_ENV = "ZONAL_RUNTIME_DIR"


def default_runtime_dir() -> str:
    """``$ZONAL_RUNTIME_DIR``, else ``/run/zonal/embedded`` for root, else a per-user folder in /tmp."""
    value = os.environ.get(RUNTIME_DIR_ENV, "")
    if value:
        return value
    if os.geteuid() == 0 and os.path.isdir("/run"):
        return "/run/zonal/embedded"
    return os.path.join(tempfile.gettempdir(), f"zonal-embedded-{os.geteuid()}")


def add_runtime_dir_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str) -> None:
    parser.add_argument(
        flag,
        default=default_runtime_dir(),
        help="where each embedded process records the loop devices, links and folders it makes, so a "
        "start after a crash releases a dead predecessor's (default $ZONAL_RUNTIME_DIR, else "
        "/run/zonal/embedded as root)",
    )


def start_ledger(runtime_dir: str) -> Ledger:
    """Release what dead embedded processes recorded in ``runtime_dir`` (saying so), then open this
    process's own record there."""
    require_extra("--cloud embedded")
    from provisioner.embedded import ledger

    return ledger.start(runtime_dir)


def add_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("embedded cloud (--cloud embedded)")
    g.add_argument(
        "--embedded-state-dir",
        default="",
        help="where the embedded cloud keeps volume backing files (default: a temporary folder)",
    )
    g.add_argument(
        "--embedded-zones",
        default=",".join(DEFAULT_ZONES),
        help=f"zones the embedded region offers (default {','.join(DEFAULT_ZONES)})",
    )
    g.add_argument(
        "--embedded-fast",
        action="store_true",
        help="EC2 state changes happen at once instead of at AWS's measured speeds",
    )
    add_runtime_dir_arg(g, "--embedded-runtime-dir")


def build_embedded(
    region: str,
    zones: tuple[str, ...],
    node_zone: str,
    state_dir: str,
    fast: bool,
    metrics: Ec2Observer | None,
    ledger: Ledger | None = None,
) -> EmbeddedCloud:
    """:func:`provisioner.embedded.cloud.build_embedded`, imported when first called."""
    require_extra("--cloud embedded")
    from provisioner.embedded.cloud import build_embedded as build

    return build(region, zones, node_zone, state_dir=state_dir, fast=fast, metrics=metrics, ledger=ledger)
