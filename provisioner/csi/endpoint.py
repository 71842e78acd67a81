"""CSI endpoint strings → something grpc can bind or dial.

Accepted forms (as the Kubernetes CSI sidecars and csi-driver-host-path accept them):
``unix:///abs/path``, ``unix:/abs/path``, ``unix://abs/path`` (relative to the cwd, rarely wanted),
a bare ``/abs/path``, and ``tcp://host:port``.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "unix" | "tcp"
    address: str  # socket path, or host:port

    @property
    def grpc_target(self) -> str:
        """The string grpc's ``add_insecure_port`` / ``insecure_channel`` understands."""
        if self.scheme == "unix":
            return f"unix:{self.address}"
        return self.address

    def __str__(self) -> str:
        return f"unix://{self.address}" if self.scheme == "unix" else f"tcp://{self.address}"


def parse_endpoint(value: str) -> Endpoint:
    """Parse an endpoint; raise ``ValueError`` with a helpful message when it is not one."""
    raw = value.strip()
    if not raw:
        raise ValueError("endpoint is empty; use unix:///path/to/csi.sock or tcp://host:port")
    lowered = raw.lower()
    if lowered.startswith("unix://"):
        path = raw[len("unix://") :]
    elif lowered.startswith("unix:"):
        path = raw[len("unix:") :]
    elif lowered.startswith("tcp://"):
        hostport = raw[len("tcp://") :]
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"endpoint {value!r}: expected tcp://host:port")
        return Endpoint("tcp", hostport)
    elif "://" in raw:
        raise ValueError(f"endpoint {value!r}: unsupported scheme; use unix:// or tcp://")
    else:
        path = raw
    if not path:
        raise ValueError(f"endpoint {value!r} names no socket path")
    return Endpoint("unix", path)


def prepare_unix_socket(path: str) -> None:
    """Make ``path`` bindable: create its folder and remove a stale socket left by a dead process.

    Refuses (``OSError``) when something is listening on it or when it is not a socket.
    """
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket; refusing to remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: nobody answers
        return
    finally:
        probe.close()
    raise OSError(f"{path} is in use by a running server")
