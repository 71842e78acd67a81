"""``zonal explain`` through its own ``register`` and the official client against the HTTP fake API."""

from __future__ import annotations

import argparse
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from provisioner.cli.explain import build_explain_cloud, build_kube, execute, parse_target, register
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind
from tests.explain.scenarios import (
    add_claim,
    bound_claim_with_pv,
    cloud_with,
    cluster,
    csi_pv,
    pod,
    provision,
)
from tests.fakes.kube import FakeKube
from tests.fakes.kube_http import FakeApiServer


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: fake, cluster: {{server: "{server}"}}}}]\n'
        "users: [{name: u, user: {token: x}}]\n"
        "contexts: [{name: c, context: {cluster: fake, user: u}},\n"
        "           {name: other, context: {cluster: fake, user: u}}]\n"
        "current-context: c\n"
    )
    return path


@pytest.fixture
def kube() -> FakeKube:
    k = cluster()
    add_claim(k, "data-0", node_name="node-1")
    provision(k, "data-0")
    pv = csi_pv("pv-d", "data-web-0", ("us-east-1d",))
    pv["spec"]["storageClassName"] = "immediate"
    bound_claim_with_pv(k, "data-web-0", pv, binding="Immediate")
    k.create(Kind.POD, pod("web-0", {"data": "data-web-0"}))
    return k


@pytest.fixture
def config(kube: FakeKube, tmp_path: Path) -> Iterator[Path]:
    server = FakeApiServer(kube).start()
    try:
        yield kubeconfig(tmp_path / "kubeconfig", server.url)
    finally:
        server.stop()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zonal")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_pvc_json_through_the_official_client(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("explain", "pvc", "default/data-0", "--kubeconfig", str(config), "-o", "json")
    assert args.func(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "PersistentVolumeClaim"
    assert data["verdict"]["code"] == "ok"
    assert data["volume"]["zones"] == ["us-east-1b"]
    assert data["volume"]["ebs_zone"] == "unknown (no AWS access)"  # auto: no region in the environment
    assert data["selected_node"]["zone"] == "us-east-1b"
    assert data["requirements"]["preferred"][0] == {"topology.kubernetes.io/zone": "us-east-1b"}


def test_pod_text_puts_the_verdict_first_without_colour(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(
        "explain", "pod", "web-0", "--kubeconfig", str(config), "--context", "other", "--cloud", "none"
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("verdict: conflict — Immediate binding")
    assert "\033[" not in out  # not a terminal
    assert "candidates   none" in out and "us-east-1d" in out


def test_pod_yaml(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("explain", "pod", "default/web-0", "--kubeconfig", str(config), "-o", "yaml")
    assert args.func(args) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["kind"] == "Pod" and data["volume_affinity_conflict"] is True
    assert data["volumes"][0]["pv"]["zones"] == ["us-east-1d"]


def test_ebs_zone_from_a_cloud(kube: FakeKube, config: Path) -> None:
    volume_id = kube.get(Kind.PV, kube.get(Kind.CLAIM, "data-0", "default")["spec"]["volumeName"])["spec"][
        "csi"
    ]["volumeHandle"]
    cloud = cloud_with(volume_id, "us-east-1a")
    out, err = io.StringIO(), io.StringIO()

    def no_cloud_flag(args: argparse.Namespace) -> Cloud | None:
        return cloud

    args = parse("explain", "pvc", "data-0", "--kubeconfig", str(config), "-o", "json")
    assert execute(args, build_kube, no_cloud_flag, out, err) == 0
    data = json.loads(out.getvalue())
    assert data["volume"]["ebs_zone"] == "us-east-1a"
    assert data["verdict"]["code"] == "conflict"


def test_not_found_is_one_line_and_exit_1(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("explain", "pvc", "apps/nope", "--kubeconfig", str(config))
    assert args.func(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "apps/nope" in captured.err and "not found" in captured.err


def test_no_cluster_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    args = parse(
        "explain",
        "pod",
        "web-0",
        "--kubeconfig",
        str(kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}")),
    )
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zonal explain: error:")
    assert f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}: connection refused" in err


@pytest.mark.parametrize(
    ("content", "extra", "cause"),
    [
        (None, [], "does not exist"),
        ("clusters: [\n", [], "is not valid YAML"),  # the reported case: a traceback ending in yaml's error
        ("", [], "holds no clusters or contexts"),
        ("DIR", [], "cannot be read"),
        ("GOOD", ["--context", "nope"], "has no context 'nope' (it has: c, other)"),
    ],
    ids=["missing", "broken-yaml", "empty", "a-directory", "unknown-context"],
)
def test_a_kubeconfig_that_cannot_be_used_is_one_line_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, extra: list[str], cause: str
) -> None:
    path = tmp_path / "kc"
    if content == "DIR":
        path.mkdir()
    elif content == "GOOD":
        kubeconfig(path, "http://127.0.0.1:1")
    elif content is not None:
        path.write_text(content)
    args = parse("explain", "pvc", "x", "--kubeconfig", str(path), *extra)
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"zonal explain: error: kubeconfig {path} ")
    assert cause in err and "pass --kubeconfig PATH (or set KUBECONFIG)" in err


def test_cloud_choice(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("explain", "pvc", "data-0", "--kubeconfig", str(config), "--cloud", "aws")
    assert args.func(args) == 1
    assert "no AWS region" in capsys.readouterr().err
    auto = parse("explain", "pvc", "data-0")
    assert build_explain_cloud(auto, environ={}) is None
    cloud = build_explain_cloud(auto, environ={"AWS_REGION": "eu-west-1"})
    assert cloud is not None and cloud.region == "eu-west-1"
    assert (
        build_explain_cloud(parse("explain", "pvc", "x", "--cloud", "none", "--region", "eu-west-1")) is None
    )


def test_targets() -> None:
    assert parse_target("web-0") == ("default", "web-0")
    assert parse_target("apps/web-0") == ("apps", "web-0")
    with pytest.raises(Exception, match="NAMESPACE/NAME"):
        parse_target("a/b/c")


@pytest.mark.parametrize(
    ("status", "when", "headline"),
    [
        (
            "sent",
            "sent to CreateVolume (recorded on the PV in zonal.dev/accessibility-requirements)",
            "sent to CreateVolume (recorded on the PV in zonal.dev/accessibility-requirements)",
        ),
        (
            "computed",
            "would be sent now (recomputed from the cluster as it is)",
            "computed, would be sent now (recomputed from the cluster as it is)",
        ),
        ("computed", "will be sent", "computed, will be sent"),
        ("none", "will be sent", "none: CreateVolume will get no accessibility requirements"),
        (
            "none",
            "would be sent now (recomputed from the cluster as it is)",
            "none: CreateVolume would get no accessibility requirements",
        ),
        (
            "waiting",
            "will be sent",
            "waiting: computed once the scheduler picks a node for a pod using the claim",
        ),
        ("unavailable", "will be sent", "unavailable: cannot be computed from the cluster as it is"),
    ],
)
def test_the_requirements_line_reads_as_a_sentence(status: str, when: str, headline: str) -> None:
    """The demo's explain printed "requirements sent, were sent (recorded …)"."""
    from provisioner.cli.explain import requirements_headline
    from provisioner.explain.report import RequirementsInfo

    assert requirements_headline(RequirementsInfo(status=status, when=when)) == headline
