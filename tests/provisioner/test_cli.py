"""``zonal provisioner`` flags, its refusal to run with a driver that cannot create volumes, and how it
reports a cluster or a driver it cannot reach."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli import CliError, provision
from provisioner.cli.provision import add_args, config_from_args, run
from provisioner.csi._proto import csi_pb2
from provisioner.csi.server import Services
from provisioner.embedded.kube.fakeapi import FakeApiServer, kubeconfig_for
from provisioner.embedded.kube.memory import MemoryKube
from tests.grpcutil import running_server
from tests.provisioner.test_csi_client import Driver


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_args(parser)
    return parser.parse_args(list(argv))


def test_flags_map_to_the_config() -> None:
    config = config_from_args(
        parse(
            "--worker-threads=7",
            "--retry-interval-start=2s",
            "--retry-interval-max=10m",
            "--strict-topology",
            "--immediate-topology=false",
            "--volume-name-uuid-length=16",
            "--extra-create-metadata",
            "--timeout=30s",
            "--leader-election",
            "--leader-election-lease-duration=137s",
            "--pv-zone-labels=true",
        )
    )
    assert config.worker_threads == 7
    assert (config.retry_interval_start, config.retry_interval_max) == (2.0, 600.0)
    assert config.strict_topology and not config.immediate_topology
    assert config.volume_name_uuid_length == 16 and config.extra_create_metadata
    assert config.timeout == 30.0 and config.leader_election
    assert config.leader_election_lease_duration == 137.0 and config.pv_zone_labels
    assert config.fixes.driver_nodes_only and config.validate_answer
    sidecar = config_from_args(parse("--sidecar-compatible"))
    assert not sidecar.fixes.driver_nodes_only and not sidecar.validate_answer


class NoCreateDriver(Driver):
    def ControllerGetCapabilities(
        self, request: Any, context: Any
    ) -> csi_pb2.ControllerGetCapabilitiesResponse:
        return csi_pb2.ControllerGetCapabilitiesResponse()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig naming a running HTTP fake API server."""
    server = FakeApiServer(MemoryKube()).start()
    try:
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig_for(server.url))
        yield path
    finally:
        server.stop()


def test_refuses_a_driver_that_cannot_create_volumes(tmp_path: Path, cluster: Path) -> None:
    driver = NoCreateDriver()  # type: ignore[abstract]
    with running_server(tmp_path, Services(identity=driver, controller=driver), mode="controller"):
        with pytest.raises(CliError, match="CREATE_DELETE_VOLUME"):
            run(
                parse(
                    f"--csi-address=unix://{tmp_path / 'csi.sock'}", "--timeout=5s", f"--kubeconfig={cluster}"
                )
            )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens there


@pytest.mark.parametrize(
    ("kubeconfig", "expected"),
    [
        ("absent", "kubeconfig {path} does not exist; pass --kubeconfig PATH (or set KUBECONFIG)"),
        ("broken", "kubeconfig {path} is not valid YAML: "),
        (
            "unreachable",
            "cannot reach the Kubernetes API server at http://127.0.0.1:{port}: connection refused; "
            "check that the cluster is up",
        ),
    ],
)
def test_cluster_problems_are_said_at_once_even_without_a_driver(
    tmp_path: Path, kubeconfig: str, expected: str
) -> None:
    """The reported case: a missing socket made the provisioner wait forever and never mention the
    broken kubeconfig (or, with a live driver, print a traceback). The cluster is checked first."""
    path, port = tmp_path / "kc", closed_port()
    if kubeconfig == "broken":
        path.write_text("clusters: [\n")
    elif kubeconfig == "unreachable":
        path.write_text(kubeconfig_for(f"http://127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(CliError) as raised:
        run(parse(f"--csi-address=unix://{tmp_path / 'no.sock'}", f"--kubeconfig={path}"))
    assert expected.format(path=path, port=port) in str(raised.value)
    assert "\n" not in str(raised.value)
    assert time.monotonic() - started < 10


def test_waiting_for_the_driver_says_so_at_a_steady_interval_and_stops_cleanly(
    tmp_path: Path, cluster: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(provision, "DRIVER_PROBE_SECONDS", 0.1)
    monkeypatch.setattr(provision, "DRIVER_WAIT_REPORT_SECONDS", 0.5)
    missing = tmp_path / "driver" / "csi.sock"
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with caplog.at_level(logging.INFO, logger="zonal.provisioner"):
            code = run(parse(f"--csi-address=unix://{missing}", f"--kubeconfig={cluster}", "--timeout=1s"))
    finally:
        timer.cancel()
    assert code == 0
    waits = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(waits) >= 2, waits
    assert all(f"still waiting for the CSI driver at unix://{missing} (" in w for w in waits)
    assert all(
        f"no socket at {missing}; check that the driver runs and that --csi-address" in w for w in waits
    )
    assert any("stopped before the CSI driver" in r.getMessage() for r in caplog.records)


@pytest.fixture(autouse=True)
def _signals_restored() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    assert {s: signal.getsignal(s) for s in saved} == saved, "run() must restore the signal handlers"
