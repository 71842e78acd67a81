"""Start-up refusals: a process that cannot tell where its node is says so in one line and exits
non-zero, with no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.procs import run_zonal

pytestmark = pytest.mark.e2e


def assert_refused(stderr: str, returncode: int, *phrases: str) -> None:
    assert returncode != 0
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("zonal: error: ")
    for phrase in phrases:
        assert phrase in lines[0]


def test_embedded_cloud_with_a_node_zone_it_does_not_offer(tmp_path: Path) -> None:
    sock = tmp_path / "csi.sock"
    done = run_zonal(
        "all", "--cloud", "embedded", "--embedded-zones", "us-east-1a,us-east-1b", "--zone", "us-east-1c",
        "--endpoint", f"unix://{sock}", "--embedded-state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert_refused(done.stderr, done.returncode, "us-east-1c", "us-east-1a, us-east-1b")
    assert not sock.exists()


def test_node_with_only_the_kubernetes_source_and_no_node_name(tmp_path: Path) -> None:
    sock = tmp_path / "csi.sock"
    done = run_zonal("node", "--metadata-sources", "kubernetes", "--endpoint", f"unix://{sock}")
    assert_refused(done.stderr, done.returncode, "CSI_NODE_NAME", "--node-id", "--zone")
    assert not sock.exists()
