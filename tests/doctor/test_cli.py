"""``zonal doctor`` as a user or a pipeline runs it: the official client against the HTTP fake, EC2 from the
environment (the simulator over HTTP), every output format, and the exit status."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from provisioner.cli.doctor import register
from provisioner.embedded.ec2 import SimServer
from provisioner.embedded.kube.fakeapi import FakeApiServer, kubeconfig_for
from tests.doctor.test_findings import Cluster, cordon, healthy, pv_affinity, sc


@pytest.fixture
def cluster() -> Cluster:
    return healthy()


@pytest.fixture
def kubeconfig(cluster: Cluster, tmp_path: Path) -> Iterator[Path]:
    server = FakeApiServer(cluster.kube).start()
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_for(server.url))
    try:
        yield path
    finally:
        server.stop()


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="zonal")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["doctor", *argv])
    code = int(args.func(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_clean_cluster_exits_0(kubeconfig: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = doctor(capsys, "--kubeconfig", str(kubeconfig))
    assert code == 0
    assert out.startswith("no zone problems found\n")
    assert (
        "EC2 checks skipped (node-zone-mismatch, pv-zone-mismatch, pv-volume-missing): no AWS region" in out
    )
    assert out.rstrip().endswith("0 errors, 0 warnings (exit 0)")


def test_warnings_exit_1_and_errors_exit_2(
    cluster: Cluster, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc(cluster, "imm", "Immediate")
    code, out, _ = doctor(capsys, "--kubeconfig", str(kubeconfig))
    assert code == 1
    assert out.splitlines()[1].split() == ["warning", "immediate-binding", "StorageClass", "imm"]
    cordon(cluster, "node-b")
    code, out, _ = doctor(capsys, "--kubeconfig", str(kubeconfig), "--cloud", "none")
    assert code == 2
    assert (
        "remedy  uncordon or add a node in us-east-1b, or move the data: zonal relocate pvc default/data"
        in out
    )
    assert "EC2 checks skipped (node-zone-mismatch, pv-zone-mismatch, pv-volume-missing): --cloud none" in out


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_json_and_yaml_carry_the_same_findings(
    cluster: Cluster, kubeconfig: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    cordon(cluster, "node-b")
    code, out, _ = doctor(capsys, "--kubeconfig", str(kubeconfig), "-o", fmt)
    data = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert code == data["summary"]["exit_status"] == 2
    assert [f["code"] for f in data["findings"]] == ["claim-at-risk", "zone-without-driver"]
    first = data["findings"][0]
    assert set(first) == {"severity", "code", "objects", "why", "remedy"}
    assert first["objects"] == ["PersistentVolumeClaim default/data", "PersistentVolume pv-data"]


def test_ec2_from_the_environment_checks_volumes_against_it(
    cluster: Cluster, kubeconfig: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SimServer(cluster.sim) as ec2:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", ec2.endpoint_url)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        pv_affinity(cluster, "us-east-1a")
        code, out, _ = doctor(capsys, "--kubeconfig", str(kubeconfig), "-o", "json")
    data = json.loads(out)
    assert data["ec2_checked"] and data["ec2"] == "EC2 us-east-1: 1 volume(s), 3 instance(s) checked"
    mismatch = [f for f in data["findings"] if f["code"] == "pv-zone-mismatch"]
    assert mismatch and f"volume {cluster.volume} in us-east-1b" in mismatch[0]["why"]
    assert code == 2


def test_no_cluster_is_one_line_and_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_for("http://127.0.0.1:9"))
    done = subprocess.run(
        [sys.executable, "-m", "provisioner", "doctor", "--kubeconfig", str(config), "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr.startswith("zonal doctor: error: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
