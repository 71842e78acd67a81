"""Start a real CSI server on a unix socket in a temporary folder, and dial it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from provisioner.config import ServerConfig
from provisioner.csi._proto import csi_pb2_grpc
from provisioner.csi.server import CsiServer, Services, start_server


@contextmanager
def running_server(folder: Path, services: Services, mode: str = "all") -> Iterator[CsiServer]:
    socket_path = folder / "csi.sock"
    server = start_server(
        ServerConfig(endpoint=f"unix://{socket_path}", mode=mode, max_workers=256), services
    )
    try:
        yield server
    finally:
        server.stop(0)


@contextmanager
def channel(server: CsiServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.address)
    try:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch
    finally:
        ch.close()


class Stubs:
    def __init__(self, ch: grpc.Channel) -> None:
        self.identity = csi_pb2_grpc.IdentityStub(ch)
        self.controller = csi_pb2_grpc.ControllerStub(ch)
        self.node = csi_pb2_grpc.NodeStub(ch)
