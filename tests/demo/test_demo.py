"""`zonal demo` is the README's main command: it runs here end to end, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _demo(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "provisioner", "demo", "--dir", str(tmp_path / "demo"), *extra],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def _leftovers(folder: Path) -> list[str]:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    left = [m for m in mounts if m.startswith(str(folder))]
    if os.geteuid() == 0:
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout
        left += [line for line in loops.splitlines() if str(folder) in line]
    return left


def test_wait_for_first_consumer_story(tmp_path: Path) -> None:
    done = _demo(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Traceback" not in done.stderr
    assert "waiting for first consumer" in out
    assert "volume.kubernetes.io/selected-node=node-b" in out
    assert "preferred:" in out and "[0] {topology.ebs.csi.aws.com/zone=us-east-1b" in out
    assert "created in us-east-1b (as EC2 reports it)" in out
    assert "- us-east-1b" in out  # the PV's nodeAffinity, printed as YAML
    if os.geteuid() == 0:
        assert "'hello from node-b in us-east-1b'" in out
        assert "is mounted from /dev/loop" in out
    else:
        assert "not root: skipping attach" in out
    assert "steps passed" in out
    assert "\033[" not in out  # no colour when not on a terminal
    assert _leftovers(tmp_path) == []


def test_immediate_story_spreads_over_allowed_zones(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--immediate")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("data-web-")]
    assert len(lines) == 3
    zones = [line.rsplit(" in ", 1)[1] for line in lines]
    assert set(zones) <= {"us-east-1a", "us-east-1c"}
    assert len(set(zones)) == 2  # spread, not all in one zone
    assert _leftovers(tmp_path) == []


def test_a_failing_step_exits_non_zero(tmp_path: Path) -> None:
    # A file where the demo wants its folder: the very first step cannot start.
    blocker = tmp_path / "demo"
    blocker.write_text("not a folder")
    done = _demo(tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert "--dir" in done.stderr
