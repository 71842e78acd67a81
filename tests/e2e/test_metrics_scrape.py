"""Issue 7: `zonal all --http-endpoint` serves /metrics with CSI and EC2 series after real RPCs."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.procs import csi_json, running

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_after_real_calls(tmp_path: Path) -> None:
    port = _free_port()
    args = [
        "all",
        "--cloud",
        "embedded",
        "--embedded-fast",
        "--zone",
        "us-east-1a",
        "--embedded-state-dir",
        str(tmp_path / "state"),
        "--http-endpoint",
        f"127.0.0.1:{port}",
    ]
    with running(args, tmp_path / "csi.sock", tmp_path / "zonal.log") as server:
        created = csi_json(
            server, "create-volume", "--name", "pvc-m", "--size", "1Gi", "--zone", "us-east-1a"
        )
        csi_json(server, "delete-volume", created["volume_id"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200
    assert 'zonal_csi_rpc_total{code="OK",method="CreateVolume"} 1.0' in text
    assert 'zonal_csi_rpc_total{code="OK",method="DeleteVolume"} 1.0' in text
    assert 'zonal_ec2_api_request_duration_seconds_count{request="CreateVolume"} 1.0' in text
    assert 'zonal_ec2_api_request_duration_seconds_count{request="DeleteVolume"} 1.0' in text
    # The in-flight guards report to the metrics (nothing runs any more when the scrape is made).
    assert 'zonal_inflight_operations{kind="controller"} 0.0' in text
