"""The composition root: parses flags into config, builds adapters, cores and servers, runs them.

Each area contributes one module with ``register(subparsers)``; this module only dispatches and sets
up logging. Only the CLI reads the environment (through argparse defaults).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from provisioner import __version__
from provisioner.cli.logs import add_logging_args, setup_logging

# Modules that register sub-commands, in the order `zonal --help` lists them.
COMMAND_MODULES = (
    "provisioner.cli.serve",
    "provisioner.cli.provision",
    "provisioner.cli.csi",
    "provisioner.cli.explain",
    "provisioner.cli.translate",
    "provisioner.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zonal",
        description="Topology-aware AWS EBS CSI driver and provisioner for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"zonal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "logging_format", "text"), getattr(args, "verbosity", 0))
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except CliError as e:
        print(f"zonal: error: {e}", file=sys.stderr)
        return 2
    return code


class CliError(Exception):
    """A user-facing startup failure: printed as one line, exit status 2, no traceback."""


__all__ = ["CliError", "add_logging_args", "build_parser", "main"]
