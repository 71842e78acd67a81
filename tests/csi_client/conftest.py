"""A real CSI server (Identity + Controller over the FakeCloud + Node over the FakeMounter) on a unix
socket in tmp_path, and a runner for ``zonal csi`` that captures its output and exit status."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.cli import csi as csi_cli
from provisioner.config import ControllerConfig
from provisioner.controller import ControllerCore
from provisioner.csi.controller_service import ControllerService
from provisioner.csi.identity import IdentityService
from provisioner.csi.node_service import NodeService
from provisioner.csi.server import Services
from provisioner.model import GIB
from provisioner.node import NodeConfig, NodeCore
from provisioner.ports.node import NodeMetadata
from tests.controller.conftest import DRIVER
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud
from tests.fakes.mounter import FakeMounter, FakeResolver
from tests.grpcutil import running_server

NODE = "i-0123456789abcdef0"
OTHER_NODE = "i-0fedcba9876543210"
STAGED_VOL = "vol-0aaaaaaaaaaaaaaaa"  # the node side knows this one (the fake resolver maps it)


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Driver:
    endpoint: str
    cloud: FakeCloud
    mounter: FakeMounter


def zonal_csi(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    """Run ``zonal csi ARGV`` in-process through the module's own ``register``."""
    parser = argparse.ArgumentParser(prog="zonal")
    csi_cli.register(parser.add_subparsers(dest="command"))
    capsys.readouterr()
    try:
        args = parser.parse_args(["csi", *argv])
        code: int = args.func(args)
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


@pytest.fixture(autouse=True)
def _no_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSI_ENDPOINT", raising=False)


def _services(cloud: FakeCloud | None, mounter: FakeMounter | None) -> Services:
    controller = None
    probe = None
    if cloud is not None:
        core = ControllerCore(cloud, FakeClock(), DRIVER, ControllerConfig())
        controller = ControllerService(core)
        probe = core.probe
    node = None
    if mounter is not None:
        metadata = NodeMetadata(instance_id=NODE, zone="us-east-1b", instance_type="m5.large")
        resolver = FakeResolver({STAGED_VOL: "/dev/nvme1n1"}, mounter)
        node = NodeService(NodeCore(mounter, resolver, metadata, NodeConfig(), FakeClock()))
    identity = IdentityService("zonal.csi.dev", "0.1.0", controller=controller is not None, probe=probe)
    return Services(identity=identity, controller=controller, node=node)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Driver]:
    cloud = FakeCloud()
    cloud.add_instance(NODE, "us-east-1b")
    cloud.add_instance(OTHER_NODE, "us-east-1a")
    mounter = FakeMounter()
    mounter.add_device("/dev/nvme1n1", 10 * GIB)
    with running_server(tmp_path, _services(cloud, mounter)) as server:
        yield Driver(str(server.endpoint), cloud, mounter)


@pytest.fixture
def controller_only(tmp_path: Path) -> Iterator[str]:
    cloud = FakeCloud()
    with running_server(tmp_path, _services(cloud, None), mode="controller") as server:
        yield str(server.endpoint)


@pytest.fixture
def node_only(tmp_path: Path) -> Iterator[str]:
    with running_server(tmp_path, _services(None, FakeMounter()), mode="node") as server:
        yield str(server.endpoint)
