"""Every start-up failure a user can cause is one or two lines naming the cause and the fix, with a
non-zero exit status and never a traceback (issue #13). Real ``zonal`` processes, as a user runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.cli import CliError
from provisioner.cli.cloud import require_credentials
from provisioner.csi.endpoint import check_socket_folder, prepare_unix_socket
from provisioner.embedded.kube.fakeapi import kubeconfig_for


def zonal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args], capture_output=True, text=True, timeout=60, env=environ
    )


def assert_clear_failure(done: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, done.stderr
    for phrase in phrases:
        assert phrase in done.stderr, done.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_controller_without_credentials_refuses_to_start(tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    done = zonal("controller", "--region", "us-east-1", "--endpoint", str(tmp_path / "c.sock"), env=env)
    assert_clear_failure(done, "no AWS credentials", "IRSA", "AWS_PROFILE or AWS_ACCESS_KEY_ID")
    assert done.returncode == 2
    assert not (tmp_path / "c.sock").exists()


def test_controller_without_region_refuses_to_start(tmp_path: Path) -> None:
    done = zonal("controller", "--endpoint", str(tmp_path / "c.sock"))
    assert_clear_failure(done, "no AWS region", "--region", "AWS_REGION")


def test_require_credentials() -> None:
    with pytest.raises(CliError, match="no AWS credentials"):
        require_credentials(lambda: None)
    assert require_credentials(lambda: "env") == "env"


def test_a_socket_path_under_missing_folders_is_refused_not_created(tmp_path: Path) -> None:
    """The reported case: ``--endpoint /nonexistent/dir/x.sock`` silently created /nonexistent/dir."""
    missing = tmp_path / "nonexistent"
    done = zonal(
        "all", "--cloud", "embedded", "--embedded-fast", "--endpoint", str(missing / "dir" / "x.sock")
    )
    assert_clear_failure(done, f"cannot serve on {missing}/dir/x.sock: the folder {missing} does not exist")
    assert not missing.exists()
    # Only the socket's own folder is made (the README's unix:///tmp/zonal/csi.sock).
    assert check_socket_folder(str(tmp_path / "zonal" / "csi.sock")) == str(tmp_path / "zonal")
    prepare_unix_socket(str(tmp_path / "zonal" / "csi.sock"))
    assert (tmp_path / "zonal").is_dir()
    with pytest.raises(OSError, match="does not exist"):
        prepare_unix_socket(str(missing / "dir" / "x.sock"))
    assert not missing.exists()


def test_provisioner_with_a_broken_kubeconfig_and_a_live_driver_is_one_line(tmp_path: Path) -> None:
    """The reported traceback ended in ``ConfigException: Invalid kube-config file``."""
    broken = tmp_path / "kc"
    broken.write_text("clusters: [\n")
    done = zonal("provisioner", "--kubeconfig", str(broken), "--csi-address", str(tmp_path / "no.sock"))
    assert_clear_failure(done, f"kubeconfig {broken} is not valid YAML", "pass --kubeconfig PATH")
    assert done.returncode == 2


def test_provisioner_with_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    port = closed_port()
    kc = tmp_path / "kc"
    kc.write_text(kubeconfig_for(f"http://127.0.0.1:{port}"))
    done = zonal("provisioner", "--kubeconfig", str(kc), "--csi-address", str(tmp_path / "no.sock"))
    assert_clear_failure(
        done, f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}: connection refused"
    )


def test_explain_without_any_kubeconfig_is_one_line(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "KUBECONFIG": "", "KUBERNETES_SERVICE_HOST": ""}
    done = zonal("explain", "pvc", "x", env=env)
    assert_clear_failure(done, "no Kubernetes configuration: not running in a pod", "pass --kubeconfig PATH")


def test_csi_against_a_missing_socket_is_one_line(tmp_path: Path) -> None:
    done = zonal("csi", "--endpoint", str(tmp_path / "none.sock"), "info")
    assert_clear_failure(done, f"no socket at {tmp_path}/none.sock", "is --endpoint its socket?")
    assert done.returncode == 1
