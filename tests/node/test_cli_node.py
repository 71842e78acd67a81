"""The node flags and the builder: overrides, source order, and refusing to start."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from provisioner.aws.imds import ImdsClient
from provisioner.cli import CliError
from provisioner.cli.node import add_args, build_node_service, metadata_sources, node_config
from provisioner.kube.nodeinfo import KubeNodeMetadata
from provisioner.mount.devices import SysfsDeviceResolver
from provisioner.mount.state import DEFAULT_STATE_DIR, FileNodeState
from provisioner.ports.node import NodeMetadata


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_args(parser)
    return parser.parse_args(list(argv))


def test_flags_become_node_config() -> None:
    args = parse(
        "--node-id=i-1", "--zone=z-1a", "--instance-type=t2.micro", "--volume-attach-limit=9",
        "--metadata-sources=kubernetes,imds",
    )  # fmt: skip
    cfg = node_config(args)
    assert (cfg.node_id, cfg.zone, cfg.instance_type, cfg.volume_attach_limit) == (
        "i-1",
        "z-1a",
        "t2.micro",
        9,
    )
    assert cfg.metadata_sources == ("kubernetes", "imds")
    assert node_config(parse()).metadata_sources == ("imds", "kubernetes")


@pytest.mark.parametrize("argv", [["--metadata-sources=imds,gce"], ["--volume-attach-limit=0"]])
def test_bad_flags_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert "error" in capsys.readouterr().err


def test_sources_are_built_in_the_given_order() -> None:
    sources = metadata_sources(("kubernetes", "imds"), "http://127.0.0.1:9", {"CSI_NODE_NAME": "n1"})
    assert [s.name for s in sources] == ["kubernetes", "imds"]
    assert isinstance(sources[0], KubeNodeMetadata) and sources[0].node_name == "n1"
    assert isinstance(sources[1], ImdsClient)


def test_explicit_identity_needs_no_source() -> None:
    service = build_node_service(
        parse("--node-id=i-9", "--zone=local-1a", "--imds-endpoint=http://127.0.0.1:9")
    )
    info = service.core.get_info()
    assert (info.node_id, info.segments["topology.kubernetes.io/zone"]) == ("i-9", "local-1a")


def test_embedded_metadata_with_flag_overrides() -> None:
    embedded = NodeMetadata(instance_id="i-embedded", zone="us-east-1a", instance_type="m5.large")
    service = build_node_service(parse("--zone=us-east-1b"), metadata=embedded)
    assert (service.core.metadata.instance_id, service.core.metadata.zone) == ("i-embedded", "us-east-1b")


def test_refuses_to_start_naming_the_sources_tried() -> None:
    args = parse("--imds-endpoint=http://127.0.0.1:9")
    with pytest.raises(CliError) as e:
        build_node_service(args, environ={})
    assert "imds (" in str(e.value) and "kubernetes (CSI_NODE_NAME is not set)" in str(e.value)


def test_state_dir_and_loop_devices_follow_the_cloud(tmp_path: Path) -> None:
    real = build_node_service(parse("--node-id=i-9", "--zone=local-1a"))
    assert isinstance(real.core.state, FileNodeState) and str(real.core.state.root) == DEFAULT_STATE_DIR
    assert isinstance(real.core.resolver, SysfsDeviceResolver) and real.core.resolver.loop_dirs == ()
    chosen = build_node_service(parse("--node-id=i-9", "--zone=local-1a", f"--state-dir={tmp_path / 's'}"))
    assert isinstance(chosen.core.state, FileNodeState) and chosen.core.state.root == tmp_path / "s"
    embedded = NodeMetadata(instance_id="i-embedded", zone="us-east-1a")
    service = build_node_service(parse(), metadata=embedded, embedded_dir=tmp_path)
    assert (
        isinstance(service.core.state, FileNodeState) and service.core.state.root == tmp_path / "node-state"
    )
    assert isinstance(service.core.resolver, SysfsDeviceResolver)
    assert service.core.resolver.loop_dirs == (str(tmp_path),)


def test_the_node_daemonset_keeps_the_default_state_dir_on_the_host() -> None:
    manifest = Path(__file__).resolve().parents[2] / "deploy" / "base" / "node.yaml"
    [daemonset] = [d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    [zonal] = [c for c in spec["containers"] if c["name"] == "zonal"]
    mounts = {m["name"]: m["mountPath"] for m in zonal["volumeMounts"]}
    host = {v["name"]: v.get("hostPath", {}).get("path") for v in spec["volumes"]}
    assert [name for name, path in mounts.items() if path == DEFAULT_STATE_DIR] == ["state-dir"]
    assert host["state-dir"] == DEFAULT_STATE_DIR
