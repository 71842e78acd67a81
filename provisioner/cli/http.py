"""``--http-endpoint``: a small HTTP server for Prometheus ``/metrics`` and ``/healthz``.

``/healthz`` calls the health function (for the plugin: the same check as CSI Probe) and answers
200 ``ok`` or 503 with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from provisioner.errors import ZonalError
from provisioner.metrics import Metrics

log = logging.getLogger("zonal.http")


def parse_http_endpoint(value: str) -> tuple[str, int]:
    """``:8080``, ``0.0.0.0:8080`` or ``127.0.0.1:0`` → (host, port); an empty host means all."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--http-endpoint {value!r}: expected [HOST]:PORT")
    return host or "0.0.0.0", int(port)


class HttpEndpoint:
    def __init__(self, address: str, metrics: Metrics, health: Callable[[], None] | None = None) -> None:
        host, port = parse_http_endpoint(address)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
                elif path in ("/healthz", "/livez", "/readyz"):
                    reason = outer.health_reason()
                    if reason:
                        self._send(503, reason.encode(), "text/plain")
                    else:
                        self._send(200, b"ok", "text/plain")
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

        self._health = health
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def health_reason(self) -> str:
        if self._health is None:
            return ""
        try:
            self._health()
        except ZonalError as e:
            return e.message
        except Exception:
            log.exception("health check failed")
            return "health check failed"
        return ""

    def start(self) -> HttpEndpoint:
        self._thread.start()
        log.info("serving /metrics and /healthz on port %d", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
