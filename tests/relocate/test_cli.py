"""``zonal relocate`` as a user runs it: the official Kubernetes client against the HTTP fake API (with the
PV controller's rules running behind it) and boto3 against the EC2 simulator served over HTTP, found
through ``AWS_ENDPOINT_URL_EC2`` as ``zonal demo --keep`` prints it. One run is a real process stopped
with Ctrl-C (SIGINT) in the middle of the snapshot, then resumed."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.cli.explain import build_kube
from provisioner.cli.relocate import build_cloud, execute, register
from provisioner.embedded.ec2 import Delays, SimServer
from provisioner.embedded.kube.fakeapi import FakeApiServer, kubeconfig_for
from provisioner.ports.clock import SystemClock
from provisioner.ports.kube import Kind
from provisioner.relocate.journal import journal_of
from tests.relocate.world import World, make_world, provision


@dataclass
class Served:
    world: World
    env: dict[str, str]
    kubeconfig: Path


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    world = make_world(
        clock=SystemClock(), delays=Delays(volume_create=0.3, attach=0, detach=0, snapshot=4.0)
    )
    provision(world)
    world.binder.run(0.05)
    api = FakeApiServer(world.kube).start()
    ec2 = SimServer(world.sim).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_for(api.url))
    env = {
        "KUBECONFIG": str(kubeconfig),
        "AWS_ENDPOINT_URL_EC2": ec2.endpoint_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "zonal-demo",
        "AWS_SECRET_ACCESS_KEY": "zonal-demo",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        yield Served(world, env, kubeconfig)
    finally:
        world.binder.stop()
        ec2.stop()
        api.stop()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zonal")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["relocate", "pvc", *argv])


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = execute(parse(*argv), build_kube, build_cloud, out, err)
    return code, out.getvalue(), err.getvalue()


def test_dry_run_prints_the_plan_and_changes_nothing(served: Served) -> None:
    before = served.world.kube.resource_version
    code, out, err = run_cli("default/data", "--to-zone", "us-east-1c", "--dry-run")
    assert code == 0, err
    assert "ok   no pod uses the claim: none" in out
    assert "ok   target zone has nodes: schedulable, running zonal.csi.dev: node-c" in out
    assert (
        "EC2 CreateSnapshot of vol-" in out and "EC2 CreateVolume from the snapshot in us-east-1c: gp3" in out
    )
    assert "annotation volume.kubernetes.io/selected-node;" in out.split("(dropped: ")[1]
    assert served.world.kube.resource_version == before


def test_json_dry_run_for_tools(served: Served) -> None:
    code, out, _ = run_cli("default/data", "--to-zone", "us-east-1c", "--dry-run", "-o", "json")
    assert code == 0
    plan = json.loads(out)["plan"]
    assert plan["ok"] and plan["to_zone"] == "us-east-1c"
    assert [c["name"] for c in plan["checks"]][:2] == ["claim is Bound", "PV of this driver"]
    assert len(plan["actions"]) == 6


def test_a_refused_plan_exits_1_and_says_why(served: Served) -> None:
    served.world.kube.patch(Kind.NODE, "node-c", "", {"spec": {"unschedulable": True}})
    code, out, _ = run_cli("default/data", "--to-zone", "us-east-1c")
    assert code == 1
    assert (
        "FAIL target zone has nodes: no schedulable node in us-east-1c runs zonal.csi.dev (node-c cordoned"
        in out
    )
    assert "nothing was changed." in out


def test_errors_are_one_line_without_a_traceback(served: Served) -> None:
    code, _, err = run_cli("default/nope", "--to-zone", "us-east-1c")
    assert code == 1 and err == 'zonal relocate: error: persistentvolumeclaim "default/nope" not found\n'
    code, _, err = run_cli("default/data")
    assert code == 1 and "--to-zone is required" in err
    code, _, err = run_cli("default/data", "--resume")
    assert code == 1 and "no relocation of default/data is recorded" in err


def test_a_process_interrupted_during_the_snapshot_resumes_and_then_deletes_the_source(
    served: Served,
) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **served.env}
    cmd = [sys.executable, "-m", "provisioner", "relocate", "pvc", "default/data", "--to-zone", "us-east-1c"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        seen.append(line)
        if "snapshot snap-" in line and "%" in line:
            break
        assert time.monotonic() < deadline, seen
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(seen) + rest + err
    assert "Traceback" not in err
    assert "The relocation stopped at step snapshot started" in err
    assert "zonal relocate pvc default/data --resume goes on, --rollback undoes it." in err

    resumed = subprocess.run([*cmd[:6], "--resume"], capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming the relocation" in resumed.stdout
    assert "100%" in resumed.stdout
    assert "relocated: claim default/data is Bound to PV pvc-" in resumed.stdout

    world = served.world
    claim = world.claim()
    j = next(j for p in world.kube.objects(Kind.PV) if (j := journal_of(p)) is not None)
    assert claim["spec"]["volumeName"] == j.new_pv and claim["status"]["phase"] == "Bound"
    assert len(world.volumes()) == 2  # the source is kept until asked
    cleanup = subprocess.run(
        [*cmd[:6], "--resume", "--delete-source", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert cleanup.returncode == 0, cleanup.stderr
    doc = json.loads(cleanup.stdout)
    assert doc["result"] == "relocated" and doc["journal"]["delete_source"] is True
    assert [v.volume_id for v in world.volumes()] == [j.volume_id]
    assert world.kube.find(Kind.PV, j.source_pv) is None
