"""`zonal demo` is the README's main command: it runs here end to end, as a user runs it."""

from __future__ import annotations

import json
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


def test_relocate_story_moves_a_stuck_volume_and_reads_the_file_back(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--relocate")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Traceback" not in done.stderr
    assert "node-b, the only node in us-east-1b, is drained and deleted" in out
    assert "error claim-at-risk: PersistentVolumeClaim default/data" in out
    assert "zonal relocate pvc default/data --to-zone us-east-1a (or us-east-1c)" in out
    assert "» snapshot: snapshot the source volume" in out and "100%" in out
    assert "» claim: rebind the claim" in out
    assert "in us-east-1c (as EC2 reports it)" in out
    assert "- us-east-1c" in out  # the new PV's nodeAffinity
    if os.geteuid() == 0:
        assert "node-c's node plugin mounted it from /dev/loop" in out
        assert "read “hello from node-b in us-east-1b”" in out
    assert "source volume vol-" in out and "deleted" in out
    assert "steps passed" in out
    assert _leftovers(tmp_path) == []


def test_keep_serves_the_cluster_and_ec2_to_explain_doctor_and_relocate_in_another_shell(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "KUBECONFIG"}
    folder = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "demo", "--keep", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert demo.stdout is not None
        seen = []
        for line in demo.stdout:
            seen.append(line)
            if "zonal csi --endpoint" in line:
                break
        shown = "".join(seen)
        assert "In another shell, first: . " in shown, shown
        exports = dict(
            item.split("=", 1)
            for item in next(line for line in seen if "export " in line).split("export ")[1].split()
        )
        assert set(exports) >= {"KUBECONFIG", "AWS_ENDPOINT_URL_EC2", "AWS_REGION", "AWS_ACCESS_KEY_ID"}
        assert exports["AWS_ENDPOINT_URL_EC2"].startswith("http://127.0.0.1:")
        shell = {**env, **exports}

        def zonal(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "provisioner", *argv],
                capture_output=True,
                text=True,
                env=shell,
                timeout=120,
            )

        explained = zonal("explain", "pvc", "default/data")
        assert explained.returncode == 0, explained.stderr
        assert "EBS zone: us-east-1b" in explained.stdout  # EC2's answer, through the demo's simulator
        checked = zonal("doctor")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "EC2 us-east-1: 1 volume(s)" in checked.stdout
        moved = zonal("relocate", "pvc", "default/data", "--to-zone", "us-east-1c")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "relocated: claim default/data is Bound to PV pvc-" in moved.stdout
        explained = zonal("explain", "pvc", "default/data")
        assert "EBS zone: us-east-1c" in explained.stdout, explained.stdout
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest
    assert _leftovers(tmp_path) == []


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
        if "In another shell, first: . " in line:
            env_file = Path(line.split("first: . ", 1)[1].split()[0])
            return proc, env_file.parent
    proc.wait(timeout=60)
    proc.stdout.close()
    raise AssertionError("demo --keep never said it was left running:\n" + "".join(seen))


def test_keep_ended_by_a_closed_terminal_releases_everything(tmp_path: Path) -> None:
    """SIGHUP (the terminal closed) used to leave the loop device, the mounts, the folder and the link."""
    runtime = tmp_path / "run"
    proc, folder = _keep({"ZONAL_RUNTIME_DIR": str(runtime)})
    try:
        assert folder.is_dir() and (folder / "kubeconfig").is_file()
        [ledger] = runtime.glob("*.json")
        assert str(folder) in json.loads(ledger.read_text())["folders"]
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


def test_keep_killed_hard_is_released_by_the_next_start(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    proc, folder = _keep({"ZONAL_RUNTIME_DIR": str(runtime)})
    proc.kill()
    proc.wait(timeout=60)
    assert proc.stdout is not None
    proc.stdout.close()
    assert folder.exists()  # what a kill -9 leaves (the volume itself was released before --keep waits)
    [report] = reclaim(runtime)
    assert report.left == [] and str(folder) in report.released["folders"]
    assert _leftovers(folder) == [] and not folder.exists()
