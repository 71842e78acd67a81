"""``zonal provisioner`` flags and its refusal to run with a driver that cannot create volumes."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli import CliError
from provisioner.cli.provision import add_args, config_from_args, run
from provisioner.csi._proto import csi_pb2
from provisioner.csi.server import Services
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


def test_refuses_a_driver_that_cannot_create_volumes(tmp_path: Path) -> None:
    driver = NoCreateDriver()  # type: ignore[abstract]
    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with running_server(tmp_path, Services(identity=driver, controller=driver), mode="controller"):
            with pytest.raises(CliError, match="CREATE_DELETE_VOLUME"):
                run(parse(f"--csi-address=unix://{tmp_path / 'csi.sock'}", "--timeout=5s"))
    finally:
        signal.signal(signal.SIGTERM, saved[0])
        signal.signal(signal.SIGINT, saved[1])
