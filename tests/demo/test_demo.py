"""`zonal demo` is the README's main command: it runs here end to end, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.embedded.ledger import reclaim

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
        assert "“hello from node-b in us-east-1b”" in out
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
    for line in lines:  # human wording, not a Python dict: preferred first {topology.…/zone=us-east-1a}
        assert "preferred first {topology." in line and "{'" not in line and "': '" not in line
    assert _leftovers(tmp_path) == []


def test_a_failing_step_exits_non_zero(tmp_path: Path) -> None:
    # A file where the demo wants its folder: the very first step cannot start.
    blocker = tmp_path / "demo"
    blocker.write_text("not a folder")
    done = _demo(tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert "--dir" in done.stderr


def _keep(env_extra: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    """``zonal demo --keep`` in its own temporary folder; returns once it is left running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env_extra
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "demo", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "kubectl --kubeconfig" in line:
            kubeconfig = Path(line.split("--kubeconfig", 1)[1].split()[0])
            return proc, kubeconfig.parent
    proc.wait(timeout=60)
    proc.stdout.close()
    raise AssertionError("demo --keep never said it was left running:\n" + "".join(seen))


@pytest.mark.skipif(os.geteuid() != 0, reason="the mounts and loop devices need root")
def test_keep_ended_by_a_closed_terminal_releases_everything(tmp_path: Path) -> None:
    """SIGHUP (the terminal closed) used to leave a loop device, two mounts, the folder and the link."""
    runtime = tmp_path / "run"
    proc, folder = _keep({"ZONAL_RUNTIME_DIR": str(runtime)})
    try:
        assert len(_leftovers(folder)) == 3  # staging + pod mounts and the loop device, while it runs
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    assert _leftovers(folder) == []
    assert not folder.exists()
    assert list(runtime.glob("*.json")) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the mounts and loop devices need root")
def test_keep_killed_hard_is_released_by_the_next_start(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    proc, folder = _keep({"ZONAL_RUNTIME_DIR": str(runtime)})
    proc.kill()
    proc.wait(timeout=60)
    assert proc.stdout is not None
    proc.stdout.close()
    assert len(_leftovers(folder)) == 3 and folder.exists()
    [report] = reclaim(runtime)
    assert report.left == [] and len(report.released["mounts"]) == 2 and len(report.released["loops"]) == 1
    assert str(folder) in report.released["folders"]
    assert _leftovers(folder) == [] and not folder.exists()
