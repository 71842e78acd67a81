"""The CSI gRPC server: binds the endpoint, registers the services of a mode, stops gracefully.

Concurrency: a thread pool far larger than the sidecars' 100 concurrent calls, so calls that wait
tens of seconds on EC2 never make cheap calls (Probe, NodeGetInfo) queue behind them.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import grpc

from provisioner.config import ServerConfig
from provisioner.csi._proto import csi_pb2_grpc
from provisioner.csi.endpoint import Endpoint, parse_endpoint, prepare_unix_socket
from provisioner.csi.interceptors import CsiInterceptor, RpcObserver

log = logging.getLogger("zonal.server")


@dataclass
class Services:
    """The servicers one process serves; ``None`` means the service is not registered."""

    identity: csi_pb2_grpc.IdentityServicer
    controller: csi_pb2_grpc.ControllerServicer | None = None
    node: csi_pb2_grpc.NodeServicer | None = None
    # Extra registrations (e.g. the standard gRPC health service): called with the server.
    extra: Sequence[Callable[[grpc.Server], None]] = field(default_factory=tuple)


class CsiServer:
    """A started server; :meth:`stop` stops it and removes its unix socket."""

    def __init__(self, server: grpc.Server, endpoint: Endpoint, port: int) -> None:
        self._server = server
        self.endpoint = endpoint
        self.port = port  # the bound TCP port (useful with tcp://127.0.0.1:0), 0 for unix sockets

    @property
    def address(self) -> str:
        """An address a client can dial."""
        if self.endpoint.scheme == "unix":
            return self.endpoint.grpc_target
        host = self.endpoint.address.rpartition(":")[0]
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        self._server.stop(grace).wait()
        if self.endpoint.scheme == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.endpoint.address)

    def wait(self) -> None:
        self._server.wait_for_termination()


def start_server(config: ServerConfig, services: Services, observer: RpcObserver | None = None) -> CsiServer:
    """Bind ``config.endpoint``, register ``services`` and start serving."""
    endpoint = parse_endpoint(config.endpoint)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="csi"),
        interceptors=[CsiInterceptor(observer)],
        options=[("grpc.so_reuseport", 0)],
    )
    csi_pb2_grpc.add_IdentityServicer_to_server(services.identity, server)
    if services.controller is not None:
        csi_pb2_grpc.add_ControllerServicer_to_server(services.controller, server)
    if services.node is not None:
        csi_pb2_grpc.add_NodeServicer_to_server(services.node, server)
    for register in services.extra:
        register(server)
    if endpoint.scheme == "unix":
        prepare_unix_socket(endpoint.address)
        old_umask = os.umask(0o117)  # the socket is created 0660, never briefly world-accessible
        try:
            port = server.add_insecure_port(endpoint.grpc_target)
        finally:
            os.umask(old_umask)
    else:
        port = server.add_insecure_port(endpoint.address)
    if port == 0 and endpoint.scheme == "tcp":
        raise OSError(f"cannot bind {endpoint}")
    server.start()
    if endpoint.scheme == "unix":
        os.chmod(endpoint.address, config.socket_mode)
        port = 0
    log.info("serving CSI (%s) on %s", config.mode, endpoint)
    return CsiServer(server, endpoint, port)


def serve_until_signalled(
    server: CsiServer,
    grace: float,
    on_stop: Callable[[], None] | None = None,
    on_signal: Callable[[], object] | None = None,
) -> None:
    """Block until SIGTERM, SIGINT or SIGHUP, then stop with ``grace`` seconds for in-flight calls.
    ``on_signal`` runs first (the node kills the commands it still runs, so calls waiting on them end)."""
    # What start-up built (modules, boto3's and protobuf's tables, the servicers) lives as long as the
    # process: freezing it keeps the collector's full passes, which serving still triggers now and
    # then, from scanning it again. Each such pass otherwise stops every thread for the whole heap —
    # about 0.3 s with the embedded simulator loaded, the p99 of a 3-second run at 100 clients.
    gc.freeze()
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> Any:
        log.info("received %s; stopping (grace %.0fs)", signal.Signals(signum).name, grace)
        stop.set()

    # SIGHUP too: a server started from a terminal that is closed must stop cleanly, not be killed.
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        stop.wait()
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)
        if on_signal is not None:
            on_signal()
        server.stop(grace)
        if on_stop is not None:
            on_stop()
        log.info("stopped")
