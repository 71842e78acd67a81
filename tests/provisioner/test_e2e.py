"""End to end with real processes: ``zonal all --cloud embedded`` + the provisioner against the HTTP fake.

Three nodes in three zones, a WaitForFirstConsumer class and a claim whose selected node is in the second
zone → a PV whose nodeAffinity names that zone, backed by an EBS volume the driver placed there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.ports.kube import Kind
from tests.fakes.kube import FakeKube, claim, storage_class, three_zone_cluster
from tests.fakes.kube_http import FakeApiServer

DRIVER = "zonal.csi.dev"
# Runs the provisioner command's own entry point (the same code `zonal provisioner` dispatches to).
SHIM = (
    "import sys, argparse; from provisioner.cli.provision import add_args, run; "
    "p = argparse.ArgumentParser(); add_args(p); sys.exit(run(p.parse_args(sys.argv[1:])))"
)


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: fake, cluster: {{server: "{server}"}}}}]\n'
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: fake, user: u}}]\ncurrent-context: c\n"
    )
    return path


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[FakeKube, list[subprocess.Popen[bytes]]]]:
    kube = FakeKube()
    server = FakeApiServer(kube).start()
    sock = tmp_path / "csi.sock"
    logs = [open(tmp_path / "driver.log", "wb"), open(tmp_path / "provisioner.log", "wb")]  # noqa: SIM115
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner",
            "all",
            "--cloud",
            "embedded",
            "--embedded-fast",
            "--embedded-zones",
            "us-east-1a,us-east-1b,us-east-1c",
            "--region",
            "us-east-1",
            "--zone",
            "us-east-1a",
            "--node-id",
            "i-0123456789abcdef0",
            "--endpoint",
            f"unix://{sock}",
            "--embedded-state-dir",
            str(tmp_path / "state"),
        ],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    provisioner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SHIM,
            f"--csi-address=unix://{sock}",
            f"--kubeconfig={_kubeconfig(tmp_path / 'kubeconfig', server.url)}",
            "--worker-threads=2",
            "--retry-interval-start=0.2s",
        ],
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    procs = [driver, provisioner]
    try:
        yield kube, procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
        for f in logs:
            f.close()
        server.stop()


@pytest.mark.e2e
def test_wffc_claim_in_the_second_zone(
    processes: tuple[FakeKube, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    kube, procs = processes
    three_zone_cluster(kube, DRIVER)
    kube.create(Kind.STORAGE_CLASS, storage_class("fast", DRIVER, type="gp3"))
    c = kube.create(Kind.CLAIM, claim("data-0", "fast", DRIVER, node_name="node-1"))
    name = f"pvc-{c['metadata']['uid']}"
    deadline = time.monotonic() + 60
    while kube.find(Kind.PV, name) is None:
        assert all(p.poll() is None for p in procs), "a process exited early"
        assert time.monotonic() < deadline, "no PV within 60s"
        time.sleep(0.1)
    pv = kube.find(Kind.PV, name)
    assert pv is not None
    assert pv["spec"]["claimRef"]["uid"] == c["metadata"]["uid"]
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"]}
            ]
        }
    ]
    volume_id = pv["spec"]["csi"]["volumeHandle"]
    assert volume_id.startswith("vol-")
    # The EBS volume itself, as the embedded EC2 reports it (ControllerGetVolume reads it back).
    endpoint = f"unix://{tmp_path / 'csi.sock'}"
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "provisioner",
            "csi",
            "--endpoint",
            endpoint,
            "-o",
            "json",
            "get-volume",
            volume_id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "us-east-1b" in json.dumps(json.loads(got.stdout).get("accessible_topology"))
