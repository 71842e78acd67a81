"""The ``zonal`` entry point (``python -m provisioner``) ends the process without the interpreter's
teardown: its output, exit status and signal handling must be exactly what main() gives."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

CLASS = """
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: NAME}
provisioner: kubernetes.io/aws-ebs
parameters: {type: gp3}
"""


def _zonal(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_all_output_is_written_before_the_process_ends() -> None:
    many = "---".join(CLASS.replace("NAME", f"sc-{i}") for i in range(300))  # far more than a pipe buffer
    done = _zonal("translate", "storageclass", "-", stdin=many)
    assert done.returncode == 0, done.stderr
    translated = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert [d["metadata"]["name"] for d in translated] == [f"sc-{i}" for i in range(300)]
    assert {d["provisioner"] for d in translated} == {"zonal.csi.dev"}


def test_exit_statuses_of_help_version_and_usage_errors() -> None:
    assert _zonal("--version").returncode == 0
    assert _zonal("--help").stdout.startswith("usage: zonal")
    bad = _zonal("no-such-command")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    failed = _zonal("csi", "--endpoint", "unix:///nonexistent/zonal.sock", "--timeout", "1", "probe")
    assert failed.returncode != 0 and failed.stderr


def test_a_server_stopped_by_sigterm_logs_its_last_line_and_exits_0(tmp_path: Path) -> None:
    sock = tmp_path / "csi.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner",
            "node",
            "--endpoint",
            f"unix://{sock}",
            "--node-id",
            "i-0abc",
            "--zone",
            "us-east-1a",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        until = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < until, "the server never bound its socket"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert err.rstrip().endswith("stopped"), err[-500:]
    assert not sock.exists()
