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

DEFAULT_ENDPOINT = "unix:///csi/csi.sock"
# One wording for every command that serves or dials CSI (servers, ``zonal csi``, ``zonal provisioner``).
ENDPOINT_FORMS = "unix:///path, unix:/path, /path or tcp://host:port"
ENDPOINT_DEFAULT_HELP = f"default $CSI_ENDPOINT, else {DEFAULT_ENDPOINT}"


def default_endpoint(environ_value: str | None) -> str:
    """``$CSI_ENDPOINT`` when set (and not blank), else :data:`DEFAULT_ENDPOINT`."""
    return environ_value.strip() if environ_value and environ_value.strip() else DEFAULT_ENDPOINT


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


# What gRPC's "failed to connect to all addresses" details say underneath, and what it means to a user.
_CONNECT_FAILURES = (
    ("no such file or directory", "no socket at {where}"),
    ("connection refused", "nothing listens at {where} (connection refused)"),
    ("permission denied", "no permission to connect to {where} (run as the socket's owner or group)"),
    ("not a socket", "{where} is not a socket"),
    ("deadline exceeded", "{where} did not answer in time"),
)


def connect_failure(endpoint: str, details: str) -> str:
    """A one-line reason for a channel that could not connect to ``endpoint``, from gRPC's details
    (``failed to connect to all addresses; last error: …``); the details as they are when unknown."""
    if "failed to connect" not in details.lower():
        return details
    try:
        parsed = parse_endpoint(endpoint)
        where = parsed.address if parsed.scheme == "unix" else str(parsed)
    except ValueError:
        where = endpoint
    low = details.lower()
    for needle, text in _CONNECT_FAILURES:
        if needle in low:
            return text.format(where=where)
    return f"cannot connect to {where}: {details}"


def check_socket_folder(path: str) -> str:
    """The folder of socket ``path``, when it exists or only it is missing (it will be made); OSError
    naming the missing folder otherwise — a mistyped endpoint must not create a tree of folders."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder):
        return folder
    parent = os.path.dirname(folder)
    if not os.path.isdir(parent):
        raise OSError(f"the folder {parent} does not exist; create it or choose another endpoint")
    return folder


def prepare_unix_socket(path: str) -> None:
    """Make ``path`` bindable: create its folder and remove a stale socket left by a dead process.

    Refuses (``OSError``) when something is listening on it, when it is not a socket, or when more than
    the socket's own folder is missing (see :func:`check_socket_folder`).
    """
    folder = check_socket_folder(path)
    if folder and not os.path.isdir(folder):
        os.mkdir(folder)
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
