"""The simulator over HTTP on 127.0.0.1, so several processes share one account's token buckets.

A threaded werkzeug server (HTTP/1.1 keep-alive, one thread per connection) in a daemon thread.
Besides EC2 it answers the control paths of :meth:`Simulator._control`: ``GET /_zonal/counters``,
``DELETE /_zonal/counters``, ``GET /_zonal/config``, ``GET /_zonal/neighbours?action=…`` (tokens a
neighbour spent), ``GET /_zonal/volumes`` (when each volume left ``creating``), ``POST
/_zonal/instances?zone=…``. This module must
not listen on anything but the loopback address it is given.
"""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from provisioner.embedded.ec2.app import Simulator


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per EC2 call would drown the test output."""


class SimServer:
    """``with SimServer(Simulator(...)) as server: boto3.client("ec2", endpoint_url=server.endpoint_url)``"""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> SimServer:
        if self._server is not None:
            return self
        server = make_server(
            self._host, self._port, self.simulator, threaded=True, request_handler=_QuietHandler
        )
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="zonal-ec2-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        if thread is not None:
            thread.join()
        server.server_close()

    def serve_forever(self) -> None:
        """Start and block until :meth:`stop` (from a signal handler or another thread)."""
        self.start()
        thread = self._thread
        if thread is not None:
            thread.join()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
