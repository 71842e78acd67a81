"""``zonal explain pvc|pod [NAMESPACE/]NAME``: why a volume is where it is, for people (text) or tools.

Why it exists: it builds the adapters :mod:`provisioner.explain` needs (the official Kubernetes client
from ``--kubeconfig``/``--context``; EC2 only when asked or when a region resolves), runs the core and
renders its report as text (the verdict first, coloured only on a terminal), JSON or YAML.

What it must not do: decide anything (the core does), write to the cluster or the cloud, or hang: every
network call is bounded by ``--timeout``. Failures (not found, no cluster) are one line on stderr and
exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO

import yaml

from provisioner.cli import CliError
from provisioner.config import CloudConfig
from provisioner.errors import ZonalError, first_line
from provisioner.explain import explain_pod, explain_pvc
from provisioner.explain.report import (
    HEALTHY,
    OK,
    ClassInfo,
    NodeInfo,
    PodReport,
    PvcReport,
    RequirementsInfo,
    Verdict,
    VolumeInfo,
)
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import KubeApi, KubeError
from provisioner.provisioning.settings import ProvisionerConfig
from provisioner.topology.requirements import RequirementFixes

CLOUD_CHOICES = ("auto", "aws", "none")
OUTPUTS = ("text", "json", "yaml")
DEFAULT_TIMEOUT = 10.0


def add_ec2_access_args(parser: argparse.ArgumentParser, cloud_help: str) -> None:
    """``--cloud --region --ec2-endpoint --timeout``: how the read-only tools (explain, doctor) reach
    EC2, if at all."""
    parser.add_argument("--cloud", choices=CLOUD_CHOICES, default="auto", help=cloud_help)
    parser.add_argument("--region", default="", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    parser.add_argument("--ec2-endpoint", default="", help="EC2 endpoint URL (default: boto3's)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per network call (default {DEFAULT_TIMEOUT:g})",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="explain why a claim's volume is in its zone, or why a pod is stuck on its volumes' zones",
        description="Read the claim/pod, its StorageClass, nodes, CSINodes and PV (and the EBS volume when "
        "AWS is reachable), and say what decided the zone and whether anything conflicts.",
    )
    kinds = parser.add_subparsers(dest="explain_kind", metavar="KIND")
    kinds.required = True
    for kind, aliases, what in (
        ("pvc", ["persistentvolumeclaim", "claim"], "a PersistentVolumeClaim"),
        ("pod", ["pods"], "a Pod (e.g. Pending with 'volume node affinity conflict')"),
    ):
        sub = kinds.add_parser(kind, aliases=aliases, help=f"explain {what}")
        sub.add_argument("target", metavar="[NAMESPACE/]NAME", help="the object (namespace default: default)")
        _add_common(sub)
        if kind == "pvc":
            sub.add_argument(
                "--strict-topology", action="store_true", help="as the provisioner's --strict-topology"
            )
            sub.add_argument(
                "--sidecar-compatible",
                action="store_true",
                help="decide requirements exactly as the stock external-provisioner (zonal's fixes off)",
            )
        sub.set_defaults(func=run, explain_command=kind)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG", ""),
        help="kubeconfig file (default $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument("--context", default="", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "--driver-name", default="", help="CSI driver name (default: the class's provisioner)"
    )
    add_ec2_access_args(
        parser, "aws: ask EC2 for the volume's zone; none: never; auto (default): only if a region resolves"
    )
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, default="text", help="output format (default text)"
    )


def parse_target(target: str) -> tuple[str, str]:
    """``ns/name`` → (ns, name); ``name`` → ("default", name)."""
    namespace, _, name = target.rpartition("/")
    if not name or "/" in namespace:
        raise CliError(f"expected NAMESPACE/NAME or NAME, got {target!r}")
    return namespace or "default", name


# --- adapters --------------------------------------------------------------------------------------------


def build_kube(args: argparse.Namespace) -> KubeApi:
    from provisioner.cli.kubeaccess import connect

    return connect(args.kubeconfig, args.context, qps=0, timeout=max(0.1, float(args.timeout)))


def build_explain_cloud(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Cloud | None:
    """EC2 for ``--cloud aws``, or for ``auto`` when a region resolves from the flag or the environment."""
    if args.cloud == "none":
        return None
    region = tool_region(args.region, environ)
    if not region:
        if args.cloud == "aws":
            raise CliError("no AWS region: pass --region or set AWS_REGION")
        return None
    return tool_cloud(region, args.ec2_endpoint, args.timeout, max_attempts=2)


def tool_region(flag: str, environ: Mapping[str, str] | None = None) -> str:
    """The operator tools' region: ``--region``, then ``AWS_REGION`` / ``AWS_DEFAULT_REGION``; never the
    instance metadata (off EC2 a tool would wait on it). "" if none."""
    from provisioner.cli.cloud import no_metadata, resolve_region

    return resolve_region(flag, os.environ if environ is None else environ, no_metadata)


def tool_cloud(region: str, endpoint: str, timeout: float, max_attempts: int) -> Cloud:
    """EC2 for the operator tools (explain, doctor, relocate): botocore's standard retries, every call
    bounded by ``timeout``; an empty ``endpoint`` leaves boto3 to its own (``AWS_ENDPOINT_URL_EC2``)."""
    from provisioner.cli.cloud import build_cloud

    seconds = max(1.0, float(timeout))
    return build_cloud(
        CloudConfig(
            kind="aws",
            region=region,
            endpoint_url=endpoint,
            retry_mode="standard",
            max_attempts=max_attempts,
            connect_timeout=min(3.0, seconds),
            read_timeout=seconds,
        )
    )


@contextlib.contextmanager
def bounded(timeout: float) -> Iterator[Callable[[KubeApi], KubeApi]]:
    """Every network call bounded by ``timeout`` (the Kubernetes client's sockets take the process
    default when no per-call timeout is given); the clients passed to the yielded function are closed
    at the end."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(max(0.1, float(timeout)))
    opened: list[KubeApi] = []

    def keep(kube: KubeApi) -> KubeApi:
        opened.append(kube)
        return kube

    try:
        yield keep
    finally:
        socket.setdefaulttimeout(previous)
        for kube in opened:
            close = getattr(kube, "close", None)
            if callable(close):
                close()


# --- running -----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    quiet_unless_verbose(args)
    return execute(args, build_kube, build_explain_cloud, sys.stdout, sys.stderr)


def quiet_unless_verbose(args: argparse.Namespace) -> None:
    """The report is the output: zonal's own start-up lines (which endpoint, which region) only with -v."""
    if not getattr(args, "verbosity", 0):
        logging.getLogger("zonal").setLevel(logging.WARNING)


def execute(
    args: argparse.Namespace,
    kube_factory: Callable[[argparse.Namespace], KubeApi],
    cloud_factory: Callable[[argparse.Namespace], Cloud | None],
    out: IO[str],
    err: IO[str],
) -> int:
    """Build the adapters, explain, print. Every failure is one line on ``err`` and status 1."""
    try:
        with bounded(args.timeout) as keep:
            namespace, name = parse_target(args.target)
            kube = keep(kube_factory(args))
            cloud = cloud_factory(args)
            driver = args.driver_name or None
            report: PvcReport | PodReport
            if args.explain_command == "pvc":
                config = ProvisionerConfig(
                    strict_topology=args.strict_topology,
                    fixes=RequirementFixes.sidecar() if args.sidecar_compatible else RequirementFixes(),
                )
                report = explain_pvc(kube, namespace, name, driver, cloud, config)
            else:
                report = explain_pod(kube, namespace, name, driver, cloud)
    except (CliError, ZonalError) as e:
        print(f"zonal explain: error: {one_line(e)}", file=err)
        return 1
    out.write(render(report, args.output, colour=_colour(out)))
    return 0


def one_line(e: BaseException) -> str:
    message = first_line(e)
    if isinstance(e, KubeError) and "cannot reach" in message:
        message = "no cluster: " + message
    return message


def _colour(out: IO[str]) -> bool:
    return out.isatty() and not os.environ.get("NO_COLOR")


# --- rendering ------------------------------------------------------------------------------------------


def render(report: PvcReport | PodReport, output: str, colour: bool = False) -> str:
    data = report.to_dict()
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return render_pvc(report, colour) if isinstance(report, PvcReport) else render_pod(report, colour)


_GREEN, _YELLOW, _RED, _RESET = "\033[32m", "\033[33m", "\033[31m", "\033[0m"


def verdict_lines(verdict: Verdict, colour: bool, label: str = "verdict") -> list[str]:
    head = f"{label}: {verdict.code}"
    if colour:
        tint = _GREEN if verdict.code == OK else _YELLOW if verdict.code in HEALTHY else _RED
        head = f"{tint}{head}{_RESET}"
    lines = [f"{head} — {verdict.reason}"]
    if verdict.action:
        lines.append(f"  action: {verdict.action}")
    return lines


def _seg(segment: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(segment.items())) or "{}"


def _segs(segments: Sequence[Mapping[str, str]]) -> str:
    return "[" + "; ".join(_seg(s) for s in segments) + "]" if segments else "[]"


def _row(label: str, text: str) -> str:
    return f"{label:<13}{text}"


def _more(text: str) -> str:
    return " " * 13 + text


def _class_lines(sc: ClassInfo) -> list[str]:
    if not sc.found:
        return [_row("class", f"{sc.name} (not found)")]
    lines = [
        _row(
            "class",
            f"{sc.name}: {sc.binding_mode}, provisioner {sc.provisioner}, reclaim {sc.reclaim_policy}",
        )
    ]
    if sc.parameters:
        lines.append(_more("parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(sc.parameters.items()))))
    if sc.allowed_topologies:
        terms = ["; ".join(f"{k} in {','.join(vs)}" for k, vs in t.items()) for t in sc.allowed_topologies]
        lines.append(_more("allowedTopologies: " + " | ".join(terms)))
    if sc.unknown_keys:
        lines.append(_more("keys no CSINode reports: " + ", ".join(sc.unknown_keys)))
    return lines


def _node_text(node: NodeInfo) -> str:
    if not node.exists:
        return f"{node.name} (no such node)"
    keys = (
        "no CSINode entry for the driver"
        if node.csinode_keys is None
        else f"CSINode keys [{', '.join(node.csinode_keys)}]"
    )
    state = "schedulable" if node.schedulable else node.why_unschedulable
    return f"{node.name}: zone {node.zone or '?'} ({_seg(node.zone_labels)}), {keys}, {state}"


def _volume_lines(vol: VolumeInfo, label: str = "volume") -> list[str]:
    zones = ", ".join(vol.zones) or "no zone"
    lines = [
        _row(label, f"PV {vol.pv} ({vol.phase or '?'}), driver {vol.driver or '?'}, {vol.volume_id or '?'}")
    ]
    lines.append(_more(f"pinned by {vol.pinned_by}: {zones}"))
    lines.append(_more(f"EBS zone: {vol.ebs_zone}"))
    lines.append(_more("schedulable nodes satisfying it: " + (", ".join(vol.nodes_in_zone) or "none")))
    return lines


def requirements_headline(req: RequirementsInfo) -> str:
    """One readable line per status, never the status glued to a second verb ("sent, were sent")."""
    now = "now" in req.when
    if req.status == "sent":
        return req.when  # "sent to CreateVolume (recorded on the PV in …)"
    if req.status == "computed":
        return f"computed, {req.when}"
    if req.status == "none":
        return f"none: CreateVolume {'would get' if now else 'will get'} no accessibility requirements"
    if req.status == "waiting":
        return "waiting: computed once the scheduler picks a node for a pod using the claim"
    return f"{req.status}: cannot be computed from the cluster as it is"


def render_pvc(report: PvcReport, colour: bool = False) -> str:
    lines = verdict_lines(report.verdict, colour)
    lines.append("")
    lines.append(_row("claim", f"{report.namespace}/{report.name} ({report.phase})"))
    lines.append(_row("driver", report.driver or "?"))
    if report.storage_class is not None:
        lines += _class_lines(report.storage_class)
    lines.append(_row("selected", _node_text(report.selected_node) if report.selected_node else "(none)"))
    req = report.requirements
    if req is not None:
        lines.append(_row("requirements", requirements_headline(req)))
        if req.status in ("computed", "sent"):
            lines.append(_more(f"requisite: {_segs(req.requisite)}"))
            lines.append(_more(f"preferred: {_segs(req.preferred)}"))
        if req.error:
            lines.append(_more(f"error: {req.error}"))
        lines += [_more(f"- {step}") for step in req.steps]
    choice = report.zone_choice
    if choice is not None:
        lines.append(_row("zone", choice.description or f"none: {choice.error}"))
        lines.append(_more(f"candidates: {', '.join(choice.candidates) or 'none'} ({choice.zones_from})"))
    if report.volume is not None:
        lines += _volume_lines(report.volume)
    else:
        lines.append(_row("volume", "(no PV yet)"))
    lines += [_row("note", n) for n in report.notes]
    return "\n".join(lines) + "\n"


def render_pod(report: PodReport, colour: bool = False) -> str:
    lines = verdict_lines(report.verdict, colour)
    lines.append("")
    where = f", on {report.node_name}" if report.node_name else ""
    lines.append(_row("pod", f"{report.namespace}/{report.name} ({report.phase}{where})"))
    if report.scheduling_message:
        lines.append(_row("scheduler", report.scheduling_message))
    if not report.volumes:
        lines.append(_row("volumes", "(no PersistentVolumeClaim volumes)"))
    for vol in report.volumes:
        sc = vol.storage_class
        cls = f", class {sc.name} ({sc.binding_mode if sc.found else 'not found'})" if sc else ""
        lines.append(_row("volume", f"{vol.volume} → claim {vol.claim} ({vol.claim_phase or '?'}){cls}"))
        if vol.pv is not None:
            lines += [_more(line.strip()) for line in _volume_lines(vol.pv, "")]
        for cause in vol.causes:
            lines += [_more(line) for line in verdict_lines(cause, colour, "cause")]
    lines.append(_row("candidates", ", ".join(report.candidate_nodes) or "none (no schedulable node fits)"))
    for node in report.nodes:
        lines.append(_row("node", _node_text(node)))
    lines += [_row("note", n) for n in report.notes]
    return "\n".join(lines) + "\n"
