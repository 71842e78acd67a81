from __future__ import annotations

import socket
from pathlib import Path

import pytest

from provisioner.csi.endpoint import Endpoint, parse_endpoint, prepare_unix_socket


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("unix:///csi/csi.sock", Endpoint("unix", "/csi/csi.sock")),
        ("unix:/csi/csi.sock", Endpoint("unix", "/csi/csi.sock")),
        ("/csi/csi.sock", Endpoint("unix", "/csi/csi.sock")),
        (
            "UNIX:///var/lib/kubelet/plugins/x/csi.sock",
            Endpoint("unix", "/var/lib/kubelet/plugins/x/csi.sock"),
        ),
        ("tcp://127.0.0.1:10000", Endpoint("tcp", "127.0.0.1:10000")),
        ("tcp://[::1]:0", Endpoint("tcp", "[::1]:0")),
    ],
)
def test_endpoint_forms(raw: str, expected: Endpoint) -> None:
    assert parse_endpoint(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "http://x:1", "tcp://nohost", "tcp://h:port", "unix://", "tcp://h:70000"]
)
def test_bad_endpoints_are_refused_with_a_message(raw: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        parse_endpoint(raw)


def test_stale_socket_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "csi.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # bound but nobody listens: stale
    prepare_unix_socket(str(path))
    assert not path.exists()


def test_live_socket_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "csi.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    try:
        with pytest.raises(OSError, match="in use"):
            prepare_unix_socket(str(path))
        assert path.exists()
    finally:
        s.close()


def test_regular_file_is_not_removed(tmp_path: Path) -> None:
    path = tmp_path / "csi.sock"
    path.write_text("precious")
    with pytest.raises(OSError, match="not a socket"):
        prepare_unix_socket(str(path))
    assert path.read_text() == "precious"


def test_the_sockets_own_missing_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "csi.sock"
    prepare_unix_socket(str(path))
    assert path.parent.is_dir()


def test_a_tree_of_missing_folders_is_refused_not_created(tmp_path: Path) -> None:
    """A mistyped endpoint (``/nonexistent/dir/x.sock``) used to create every folder on the way."""
    path = tmp_path / "a" / "b" / "csi.sock"
    with pytest.raises(OSError, match=f"the folder {tmp_path / 'a'} does not exist"):
        prepare_unix_socket(str(path))
    assert not (tmp_path / "a").exists()
