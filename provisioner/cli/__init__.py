"""The composition root: parses flags into config, builds adapters, cores and servers, runs them.

Each area contributes one module with ``register(subparsers)``; this module only dispatches and sets
up logging. Only the CLI reads the environment (through argparse defaults).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from provisioner import __version__
from provisioner.cli.logs import add_logging_args, setup_logging

# Modules that register sub-commands, in the order `zonal --help` lists them.
COMMAND_MODULES = (
    "provisioner.cli.serve",
    "provisioner.cli.provision",
    "provisioner.cli.csi",
    "provisioner.cli.explain",
    "provisioner.cli.doctor",
    "provisioner.cli.relocate",
    "provisioner.cli.translate",
    "provisioner.cli.embedded_entry",
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
    for each in all_parsers(parser):
        each.formatter_class = HelpFormatter
    return parser


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-command parser below it (aliases once)."""
    yield parser
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if id(child) not in seen:
                    seen.add(id(child))
                    yield from all_parsers(child)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == "" or value == [] or value == {} or value == ():
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (or says it is required), unless the text already
    says it in its own words ("default …"): a flag whose default a reader must guess is a bug."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or text == argparse.SUPPRESS or "default" in text.lower():
            return action.help
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return action.help
        if action.required:
            return f"{text} (required)"
        return f"{text} (default: {_shown(action.default).replace('%', '%%')})"


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


def run() -> NoReturn:
    """The ``zonal`` console script and ``python -m provisioner``: :func:`main`, then a quick exit.

    Once main() has returned every resource is released (servers stopped, loop devices detached, temp
    directories removed), so what is left is the interpreter tearing down its modules — with botocore's
    and moto's models loaded, 1–3 s after SIGTERM for nothing. The exit handlers still run (logging is
    flushed) and the standard streams are flushed; only that teardown is skipped."""
    try:
        code = main()
    except SystemExit as e:  # argparse's --help, --version and usage errors
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)


class CliError(Exception):
    """A user-facing startup failure: printed as one line, exit status 2, no traceback."""


__all__ = ["CliError", "HelpFormatter", "add_logging_args", "all_parsers", "build_parser", "main", "run"]
