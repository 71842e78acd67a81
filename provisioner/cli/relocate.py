"""``zonal relocate pvc NAMESPACE/NAME --to-zone ZONE``: move a claim's data to another zone, visibly.

Why it exists: it builds the adapters :mod:`provisioner.relocate` needs (the official Kubernetes client
from ``--kubeconfig``/``--context``; EC2 from ``--region``/``AWS_REGION`` and boto3's endpoint settings,
so ``AWS_ENDPOINT_URL_EC2`` reaches the embedded world of ``zonal demo --keep``), prints the plan, runs
the core with every step and EC2's snapshot progress shown, and says after any failure or Ctrl-C
exactly where the journal stands and how to go on (``--resume``) or back (``--rollback``).

What it must not do: decide anything (the core does) or hide a step. ``--dry-run`` changes nothing.
Exit status: 0 done (or a dry run whose checks pass), 1 refused or stopped (the journal says where),
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from provisioner.cli import CliError
from provisioner.cli.explain import (
    bounded,
    build_kube,
    one_line,
    parse_target,
    quiet_unless_verbose,
    tool_cloud,
    tool_region,
)
from provisioner.cli.logs import add_logging_args
from provisioner.config import DEFAULT_DRIVER_NAME, DriverConfig
from provisioner.errors import ZonalError
from provisioner.ports.clock import SystemClock
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import KubeApi
from provisioner.relocate.core import RelocateSettings, Relocator
from provisioner.relocate.lease import LEASE_TTL, LeaseHeld, LeaseLost
from provisioner.relocate.plan import make_plan
from provisioner.relocate.report import FAIL, OK, Outcome, Plan
from provisioner.relocate.rollback import rollback

INTERRUPTED = 130
_MARK = {OK: "ok  ", "warn": "warn", FAIL: "FAIL"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "relocate",
        help="move a claim's data to a new EBS volume in another zone and rebind the claim to it",
        description="Snapshot the claim's volume, restore it in the target zone, and rebind the same claim "
        "name to the new volume; every step is journaled on the PV so --resume or --rollback can finish "
        "or undo an interrupted run.",
    )
    kinds = parser.add_subparsers(dest="relocate_kind", metavar="KIND")
    kinds.required = True
    sub = kinds.add_parser("pvc", aliases=["persistentvolumeclaim", "claim"], help="relocate a claim")
    sub.add_argument("target", metavar="NAMESPACE/NAME", help="the claim (namespace default: default)")
    sub.add_argument(
        "--to-zone", default="", help="the zone to move to (not needed with --resume/--rollback)"
    )
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="go on from where an interrupted run stopped")
    mode.add_argument("--rollback", action="store_true", help="undo an unfinished run")
    mode.add_argument("--dry-run", action="store_true", help="print the checks and the plan; change nothing")
    sub.add_argument(
        "--delete-source",
        action="store_true",
        help="delete the old EBS volume and PV once the claim is Bound to the new one (default: keep them)",
    )
    sub.add_argument(
        "--delete-snapshot", action="store_true", help="delete the snapshot at the end (default: keep it)"
    )
    sub.add_argument(
        "--take-over",
        action="store_true",
        help="take the relocation's lease from another process at once, even if it was renewed within "
        f"the last {LEASE_TTL:.0f} s (default: off — refuse while another process drives it; only when "
        "that process is surely gone)",
    )
    sub.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", ""), help="kubeconfig file")
    sub.add_argument("--context", default="", help="kubeconfig context (default: the current one)")
    sub.add_argument(
        "--driver-name", default=DEFAULT_DRIVER_NAME, help=f"CSI driver (default {DEFAULT_DRIVER_NAME})"
    )
    sub.add_argument("--region", default="", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    sub.add_argument(
        "--ec2-endpoint", default="", help="EC2 endpoint URL (default: boto3's, e.g. AWS_ENDPOINT_URL_EC2)"
    )
    sub.add_argument("--timeout", type=float, default=30.0, help="seconds per network call (default 30)")
    sub.add_argument(
        "--snapshot-timeout",
        type=float,
        default=3600.0,
        help="seconds to wait for the snapshot (default 3600)",
    )
    sub.add_argument(
        "--wait-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the new volume, the claim's deletion and its binding (default 300)",
    )
    sub.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    add_logging_args(sub)
    sub.set_defaults(func=run)


def build_cloud(args: argparse.Namespace) -> Cloud:
    region = tool_region(args.region)
    if not region:
        raise CliError("no AWS region: pass --region or set AWS_REGION (relocate needs EC2)")
    return tool_cloud(region, args.ec2_endpoint, args.timeout, max_attempts=5)


def run(args: argparse.Namespace) -> int:
    quiet_unless_verbose(args)
    return execute(args, build_kube, build_cloud, sys.stdout, sys.stderr)


class Printer:
    """The Reporter: steps and details as lines, EC2's progress as a bar (redrawn on a terminal)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.shown = -1
        self.steps: list[dict[str, Any]] = []

    def step(self, name: str, text: str) -> None:
        self.end_bar()
        self.steps.append({"step": name, "text": text, "details": []})
        print(f"» {name}: {text}", file=self.out, flush=True)

    def detail(self, text: str) -> None:
        self.end_bar()
        if self.steps:
            self.steps[-1]["details"].append(text)
        print(f"    {text}", file=self.out, flush=True)

    def progress(self, text: str, percent: int) -> None:
        if percent == self.shown or (
            not self.tty and percent < 100 and percent - self.shown < 10 and self.shown >= 0
        ):
            return
        self.shown = percent if percent < 100 else -1  # a finished bar is closed: the next one starts afresh
        done = percent * 30 // 100
        line = f"    {text} [{'#' * done}{'.' * (30 - done)}] {percent:3d}%"
        if self.tty:
            print("\r" + line, end="" if percent < 100 else "\n", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)

    def end_bar(self) -> None:
        if self.tty and self.shown >= 0:
            print(file=self.out, flush=True)
        self.shown = -1


def execute(
    args: argparse.Namespace,
    kube_factory: Callable[[argparse.Namespace], KubeApi],
    cloud_factory: Callable[[argparse.Namespace], Cloud],
    out: IO[str],
    err: IO[str],
    relocator_factory: Callable[[KubeApi, Cloud, Printer, argparse.Namespace], Relocator] | None = None,
) -> int:
    as_json = args.output == "json"
    printer = Printer(err if as_json else out)
    rel: Relocator | None = None
    plan: Plan | None = None
    try:
        with bounded(args.timeout) as keep:
            namespace, name = parse_target(args.target)
            if not (args.resume or args.rollback) and not args.to_zone:
                raise CliError("--to-zone is required (except with --resume or --rollback)")
            kube = keep(kube_factory(args))
            cloud = cloud_factory(args)
            rel = (relocator_factory or _relocator)(kube, cloud, printer, args)
            if args.rollback:
                outcome = rollback(
                    rel, namespace, name, delete_snapshot=args.delete_snapshot, take_over=args.take_over
                )
            elif args.resume:
                outcome = rel.resume(
                    namespace,
                    name,
                    delete_source=args.delete_source,
                    delete_snapshot=args.delete_snapshot,
                    take_over=args.take_over,
                )
            else:
                plan, _ = make_plan(kube, cloud, rel.driver, namespace, name, args.to_zone)
                if not as_json:
                    out.write(render_plan(plan))
                if args.dry_run or not plan.ok:
                    if as_json:
                        out.write(json.dumps({"plan": plan.to_dict()}, indent=2) + "\n")
                    elif not plan.ok:
                        print("nothing was changed.", file=out)
                    return 0 if plan.ok else 1
                outcome = rel.start(
                    plan, delete_source=args.delete_source, delete_snapshot=args.delete_snapshot
                )
    except KeyboardInterrupt:
        printer.end_bar()
        print(f"zonal relocate: interrupted. {_where(rel)}", file=err)
        return INTERRUPTED
    except (CliError, ZonalError) as e:
        printer.end_bar()
        print(f"zonal relocate: error: {one_line(e)}", file=err)
        if rel is not None and rel.current is not None and not isinstance(e, (LeaseHeld, LeaseLost)):
            print(_where(rel), file=err)
        if as_json:
            journal = rel.current.to_dict() if rel is not None and rel.current is not None else None
            failure = {"error": one_line(e), "journal": journal, "plan": plan.to_dict() if plan else None}
            out.write(json.dumps(failure, indent=2) + "\n")
        return 1
    if as_json:
        doc: dict[str, Any] = {
            "plan": plan.to_dict() if plan else None,
            "steps": printer.steps,
            **outcome.to_dict(),
        }
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(render_outcome(outcome))
    return 0


def _relocator(kube: KubeApi, cloud: Cloud, printer: Printer, args: argparse.Namespace) -> Relocator:
    settings = RelocateSettings(
        snapshot_timeout=args.snapshot_timeout,
        volume_timeout=args.wait_timeout,
        kube_timeout=args.wait_timeout,
    )
    return Relocator(kube, cloud, SystemClock(), DriverConfig(args.driver_name), settings, printer)


def _where(rel: Relocator | None) -> str:
    if rel is None or rel.current is None:
        return "Nothing was changed."
    j = rel.current
    if j.mode == "rollback":
        return (
            f"The rollback stopped at {j.where()} (journal on PV {rel.journal_pv}); nothing is lost: "
            f"zonal relocate pvc {j.claim_ref} --rollback finishes it."
        )
    return (
        f"The relocation stopped at {j.where()} (journal on PV {rel.journal_pv}); nothing is lost: "
        f"zonal relocate pvc {j.claim_ref} --resume goes on, --rollback undoes it."
    )


def render_plan(plan: Plan) -> str:
    lines = [f"relocate {plan.namespace}/{plan.claim} to {plan.to_zone}", "checks:"]
    lines += [f"  {_MARK.get(c.level, c.level)} {c.name}: {c.text}" for c in plan.checks]
    if plan.actions:
        lines.append("plan:")
        lines += [f"  {i}. {a}" for i, a in enumerate(plan.actions, 1)]
    return "\n".join(lines) + "\n"


def render_outcome(outcome: Outcome) -> str:
    j = outcome.journal
    if outcome.result == "rolled-back":
        head = (
            f"rolled back: claim {j.claim_ref} is Bound to PV {j.source_pv} "
            f"({j.source_volume} in {j.from_zone})"
        )
    elif outcome.result == "already-done":
        head = f"already relocated: claim {j.claim_ref} is on PV {j.new_pv} ({j.volume_id} in {j.to_zone})"
    else:
        head = f"relocated: claim {j.claim_ref} is Bound to PV {j.new_pv} ({j.volume_id} in {j.to_zone})"
    return "\n".join([head, *(f"  kept: {item}" for item in outcome.leftovers)]) + "\n"
