"""``zonal doctor``: a cluster-wide zone check whose exit status gates a pipeline (0 clean, 1 warnings,
2 errors).

Why it exists: it builds the adapters :mod:`provisioner.doctor` needs (the official Kubernetes client from
``--kubeconfig``/``--context``; EC2 when a region resolves, exactly as ``zonal explain`` does), runs the
core and renders its findings once per format: a table for people, JSON or YAML for tools.

What it must not do: decide anything (the core does), write to the cluster or the cloud, or hang: every
network call is bounded by ``--timeout``. A failure to read the cluster is one line on stderr and exit
status 3 (so it is never mistaken for "warnings" or "errors found").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Mapping
from typing import IO

import yaml

from provisioner.cli import CliError
from provisioner.cli.explain import (
    add_ec2_access_args,
    bounded,
    build_explain_cloud,
    build_kube,
    one_line,
    quiet_unless_verbose,
    tool_region,
)
from provisioner.cli.logs import add_logging_args
from provisioner.config import DEFAULT_DRIVER_NAME
from provisioner.doctor import DoctorReport, Severity, run_doctor
from provisioner.errors import ZonalError
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import KubeApi

OUTPUTS = ("table", "json", "yaml")
FAILED = 3  # the cluster could not be read: no verdict at all


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the whole cluster for zone problems (exit 0 clean, 1 warnings, 2 errors)",
        description="Read StorageClasses, Nodes, CSINodes, PVs, claims and pods (and EC2 when it can be "
        "reached) and report every zone problem with why it matters and the exact remedy.",
    )
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", ""), help="kubeconfig file")
    parser.add_argument("--context", default="", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "--driver",
        "--driver-name",
        dest="driver",
        default=DEFAULT_DRIVER_NAME,
        help=f"the CSI driver whose nodes and zones are checked (default {DEFAULT_DRIVER_NAME})",
    )
    add_ec2_access_args(
        parser,
        "aws: check nodes and volumes against EC2 (unreachable is a warning); none: never; "
        "auto (default): when a region resolves",
    )
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, default="table", help="output format (default table)"
    )
    add_logging_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_unless_verbose(args)
    return execute(args, build_kube, build_explain_cloud, sys.stdout, sys.stderr)


def no_cloud_reason(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str:
    if args.cloud == "none":
        return "--cloud none"
    if not tool_region(args.region, environ):
        return "no AWS region (pass --region or set AWS_REGION)"
    return "no AWS access"


def execute(
    args: argparse.Namespace,
    kube_factory: Callable[[argparse.Namespace], KubeApi],
    cloud_factory: Callable[[argparse.Namespace], Cloud | None],
    out: IO[str],
    err: IO[str],
) -> int:
    try:
        with bounded(args.timeout) as keep:
            kube = keep(kube_factory(args))
            cloud = cloud_factory(args)
            report = run_doctor(
                kube,
                args.driver,
                cloud,
                no_cloud_reason=no_cloud_reason(args) if cloud is None else "",
                cloud_required=args.cloud == "aws",
            )
    except (CliError, ZonalError) as e:
        print(f"zonal doctor: error: {one_line(e)}", file=err)
        return FAILED
    out.write(render(report, args.output))
    return report.exit_status()


# --- rendering ------------------------------------------------------------------------------------------


def render(report: DoctorReport, output: str) -> str:
    if output == "json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    if output == "yaml":
        return yaml.safe_dump(report.to_dict(), sort_keys=False, default_flow_style=False)
    return render_table(report)


_WIDTH = 110
_INDENT = " " * 10


def _wrapped(label: str, text: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=_WIDTH,
        initial_indent=f"{_INDENT}{label:<8}",
        subsequent_indent=_INDENT + " " * 8,
        break_on_hyphens=False,
        break_long_words=False,
    )


def render_table(report: DoctorReport) -> str:
    lines: list[str] = []
    if report.findings:
        code_width = max(len(f.code) for f in report.findings)
        lines.append(f"{'SEVERITY':<10}{'CODE':<{code_width + 2}}OBJECTS")
        for f in report.findings:
            lines.append(f"{f.severity.value:<10}{f.code:<{code_width + 2}}{', '.join(f.objects)}")
            lines += _wrapped("why", f.why)
            lines += _wrapped("remedy", f.remedy)
    else:
        lines.append("no zone problems found")
    lines.append("")
    checked = ", ".join(f"{n} {kind}" for kind, n in report.checked.items())
    lines.append(f"checked {checked} (driver {report.driver})")
    if report.ec2:
        lines.append(report.ec2)
    lines += report.notes
    errors, warnings = report.count(Severity.ERROR), report.count(Severity.WARNING)
    lines.append(
        f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)} "
        f"(exit {report.exit_status()})"
    )
    return "\n".join(lines) + "\n"
