"""/metrics and /healthz over real HTTP after real RPCs over a real unix socket."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from provisioner import errors
from provisioner.cli.http import HttpEndpoint, parse_http_endpoint
from provisioner.config import ControllerConfig, DriverConfig, ServerConfig
from provisioner.controller import ControllerCore
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.controller_service import ControllerService
from provisioner.csi.identity import IdentityService
from provisioner.csi.server import Services, start_server
from provisioner.metrics import Metrics
from provisioner.ports.csi import InFlight
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

CAP = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@contextmanager
def served(tmp_path: Path, cloud: FakeCloud, metrics: Metrics) -> Iterator[tuple[grpc.Channel, str]]:
    """A controller over ``cloud`` serving CSI on a unix socket and /metrics over HTTP, both reporting to
    ``metrics``: a channel to the socket and the HTTP base URL."""
    core = ControllerCore(
        cloud, FakeClock(), DriverConfig(), ControllerConfig(), inflight=InFlight("controller", metrics)
    )
    identity = IdentityService("zonal.csi.dev", "1", controller=True, probe=core.probe)
    server = start_server(
        ServerConfig(endpoint=f"unix://{tmp_path}/csi.sock"),
        Services(identity=identity, controller=ControllerService(core)),
        observer=metrics,
    )
    http = HttpEndpoint("127.0.0.1:0", metrics, core.probe).start()
    try:
        with grpc.insecure_channel(server.address) as ch:
            yield ch, f"http://127.0.0.1:{http.port}"
    finally:
        http.stop()
        server.stop(0)


def test_rpc_series_are_scraped_after_real_calls(tmp_path: Path) -> None:
    with served(tmp_path, FakeCloud(), Metrics()) as (ch, url):
        ctl = csi_pb2_grpc.ControllerStub(ch)
        ctl.CreateVolume(csi_pb2.CreateVolumeRequest(name="pvc-1", volume_capabilities=[CAP]), timeout=10)
        with pytest.raises(grpc.RpcError):
            ctl.CreateVolume(csi_pb2.CreateVolumeRequest(name=""), timeout=10)
        csi_pb2_grpc.IdentityStub(ch).Probe(csi_pb2.ProbeRequest(), timeout=10)
        status, text = _get(f"{url}/metrics")
        assert status == 200
        assert 'zonal_csi_rpc_total{code="OK",method="CreateVolume"} 1.0' in text
        assert 'zonal_csi_rpc_total{code="INVALID_ARGUMENT",method="CreateVolume"} 1.0' in text
        assert 'zonal_csi_rpc_duration_seconds_count{method="Probe"} 1.0' in text
        assert _get(f"{url}/healthz") == (200, "ok")
        assert _get(f"{url}/nope")[0] == 404


def test_inflight_operations_are_scraped_while_a_call_runs(tmp_path: Path) -> None:
    """zonal_inflight_operations follows the controller's in-flight guard: 1 while CreateVolume waits in
    EC2, 0 once it answered (set through the metrics module, scraped over HTTP)."""
    cloud = FakeCloud()
    held = cloud.hold("create_volume")
    pool = ThreadPoolExecutor(1)
    try:
        with served(tmp_path, cloud, Metrics()) as (ch, url):
            request = csi_pb2.CreateVolumeRequest(name="pvc-1", volume_capabilities=[CAP])
            call = pool.submit(csi_pb2_grpc.ControllerStub(ch).CreateVolume, request, timeout=10)
            assert held.entered.wait(10)
            during = _get(f"{url}/metrics")[1]
            held.release.set()
            assert call.result(timeout=10).volume.volume_id
            after = _get(f"{url}/metrics")[1]
    finally:
        held.release.set()
        pool.shutdown(wait=True)
    assert 'zonal_inflight_operations{kind="controller"} 1.0' in during
    assert 'zonal_inflight_operations{kind="controller"} 0.0' in after


def test_healthz_reports_the_probe_failure() -> None:
    def unhealthy() -> None:
        raise errors.FailedPrecondition("EC2 DryRun failed: AuthFailure")

    http = HttpEndpoint("127.0.0.1:0", Metrics(), unhealthy).start()
    try:
        assert _get(f"http://127.0.0.1:{http.port}/healthz") == (503, "EC2 DryRun failed: AuthFailure")
    finally:
        http.stop()


@pytest.mark.parametrize(
    ("raw", "expected"), [(":8080", ("0.0.0.0", 8080)), ("127.0.0.1:0", ("127.0.0.1", 0))]
)
def test_http_endpoint_forms(raw: str, expected: tuple[str, int]) -> None:
    assert parse_http_endpoint(raw) == expected


def test_bad_http_endpoint() -> None:
    with pytest.raises(ValueError, match="HOST"):
        parse_http_endpoint("8080")
