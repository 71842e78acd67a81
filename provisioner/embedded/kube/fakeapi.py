"""The in-memory cluster (:class:`~.memory.MemoryKube`) served as a Kubernetes API server.

Why it exists: the adapter over the official client must be tested through the client's real code paths
(URL building, JSON (de)serialization, chunked watch streams, Status errors). This serves the REST
paths the loop uses: ``/api/v1/...`` and ``/apis/<group>/<version>/...``, namespaced or not, and the
discovery documents kubectl reads first (:mod:`.discovery`: ``/api``, ``/apis``, ``/api/v1``, …); list and
``?watch=1`` (one JSON event per line, ``ERROR`` 410 event when the version expired); GET, POST, PUT,
merge PATCH, DELETE; errors as ``Status`` objects. Run standalone with
``python -m provisioner.embedded.kube.fakeapi``.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from provisioner.embedded.kube import discovery
from provisioner.embedded.kube.memory import MemoryKube
from provisioner.ports.kube import (
    Kind,
    KubeAlreadyExists,
    KubeConflict,
    KubeError,
    KubeNotFound,
    ResourceGone,
)

_BY_PATH = {(k.group, k.version, k.plural): k for k in Kind}


def _route(path: str) -> tuple[Kind, str, str] | None:
    """URL path → (kind, namespace, name)."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces" and (len(rest) > 2):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 2:
        return None
    kind = _BY_PATH.get((group, version, rest[0]))
    if kind is None:
        return None
    return kind, namespace, rest[1] if len(rest) == 2 else ""


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kube: MemoryKube

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, e: KubeError) -> None:
        if isinstance(e, KubeNotFound):
            self._send(404, _status(404, "NotFound", str(e)))
        elif isinstance(e, KubeAlreadyExists):
            self._send(409, _status(409, "AlreadyExists", str(e)))
        elif isinstance(e, KubeConflict):
            self._send(409, _status(409, "Conflict", str(e)))
        elif isinstance(e, ResourceGone):
            self._send(410, _status(410, "Expired", str(e)))
        else:
            self._send(500, _status(500, "InternalError", str(e)))

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        if method == "GET":
            address: Any = self.server.server_address
            found = discovery.document(url.path, f"{address[0]!s}:{address[1]}")
            if found is not None:  # what kubectl asks before anything else
                self._send(200, found)
                return
        route = _route(url.path)
        if route is None:
            self._send(404, _status(404, "NotFound", f"no route for {url.path}"))
            return
        kind, namespace, name = route
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if method == "GET" and not name:
                if query.get("watch") in ("1", "true"):
                    self._watch(kind, query)
                    return
                listing = self.kube.list(kind, namespace)
                body = {
                    "apiVersion": kind.api_version,
                    "kind": kind.kind_name + "List",
                    "metadata": {"resourceVersion": listing.resource_version},
                    "items": list(listing.items),
                }
                self._send(200, body)
            elif method == "GET":
                self._send(200, self.kube.get(kind, name, namespace))
            elif method == "POST":
                obj = self._body()
                if namespace:
                    obj.setdefault("metadata", {})["namespace"] = namespace
                self._send(201, self.kube.create(kind, obj))
            elif method == "PUT":
                self._send(200, self.kube.replace(kind, self._body()))
            elif method == "PATCH":
                if "merge-patch" not in (self.headers.get("Content-Type") or ""):
                    self._send(415, _status(415, "UnsupportedMediaType", "only merge patches are served"))
                    return
                self._send(200, self.kube.patch(kind, name, namespace, self._body()))
            elif method == "DELETE":
                options = self._body()
                uid = str(((options or {}).get("preconditions") or {}).get("uid") or "")
                before = self.kube.get(kind, name, namespace)
                self.kube.delete(kind, name, namespace, uid=uid)
                # Like the API server: the object as it is now (held by finalizers) or as it was.
                self._send(200, self.kube.find(kind, name, namespace) or before)
        except KubeError as e:
            self._error(e)

    def _watch(self, kind: Kind, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            timeout = float(query.get("timeoutSeconds") or 30)
            for event in self.kube.watch(kind, query.get("resourceVersion", ""), timeout):
                chunk({"type": event.type, "object": event.object})
        except ResourceGone as e:
            # The API server answers an expired watch with 200 and one ERROR event carrying a 410 Status.
            chunk({"type": "ERROR", "object": _status(410, "Expired", str(e))})
        except (BrokenPipeError, ConnectionResetError):
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class FakeApiServer:
    """A running HTTP fake; ``url`` is what a kubeconfig's ``server`` field would hold."""

    def __init__(self, kube: MemoryKube, host: str = "127.0.0.1", port: int = 0) -> None:
        self.kube = kube
        handler = type("Handler", (_Handler,), {"kube": kube})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def kubeconfig_for(url: str, name: str = "zonal") -> str:
    """A kubeconfig (JSON, which is YAML too) whose one context points at the API server at ``url``."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": url}}],
            "users": [{"name": name, "user": {"token": name}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        },
        indent=2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve an in-memory Kubernetes API for tests.")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    server = FakeApiServer(MemoryKube(), port=args.port)
    print(server.url, flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
