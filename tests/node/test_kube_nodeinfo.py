"""The Kubernetes Node metadata source against a local HTTP server serving Node objects."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from provisioner.errors import FailedPrecondition, NotFound, Unavailable
from provisioner.kube.nodeinfo import KubeNodeMetadata, parse_provider_id

NODES: dict[str, dict[str, Any]] = {
    "ip-10-0-0-1": {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "ip-10-0-0-1",
            "labels": {
                "topology.kubernetes.io/zone": "us-east-1b",
                "node.kubernetes.io/instance-type": "m5.large",
            },
        },
        "spec": {"providerID": "aws:///us-east-1b/i-0123456789abcdef0"},
    },
    "bare": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bare"}, "spec": {}},
    "provider-only": {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "provider-only"},
        "spec": {"providerID": "aws:///eu-west-1c/i-0fedcba9876543210"},
    },
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        name = self.path.split("?")[0].removeprefix("/api/v1/nodes/")
        if name == "broken":
            code, body = 500, {"kind": "Status", "code": 500, "message": "etcd down"}
        elif name in NODES:
            code, body = 200, NODES[name]
        else:
            code, body = 404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api() -> Iterator[Callable[[], Any]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    clients: list[client.ApiClient] = []

    def factory() -> Any:
        api_client = client.ApiClient(
            client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
        )
        clients.append(api_client)
        return client.CoreV1Api(api_client)

    try:
        yield factory
    finally:
        for c in clients:
            c.close()  # type: ignore[no-untyped-call]
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_reads_zone_type_and_instance_id(api: Callable[[], Any]) -> None:
    md = KubeNodeMetadata("ip-10-0-0-1", api).fetch()
    assert (md.instance_id, md.zone, md.instance_type, md.source) == (
        "i-0123456789abcdef0",
        "us-east-1b",
        "m5.large",
        "kubernetes",
    )


def test_zone_falls_back_to_the_provider_id(api: Callable[[], Any]) -> None:
    md = KubeNodeMetadata("provider-only", api).fetch()
    assert (md.instance_id, md.zone) == ("i-0fedcba9876543210", "eu-west-1c")


def test_a_node_without_aws_fields_yields_nothing(api: Callable[[], Any]) -> None:
    md = KubeNodeMetadata("bare", api).fetch()
    assert (md.instance_id, md.zone, md.instance_type) == ("", "", "")


def test_missing_node_is_not_found_and_errors_are_unavailable(api: Callable[[], Any]) -> None:
    with pytest.raises(NotFound):
        KubeNodeMetadata("ghost", api).fetch()
    with pytest.raises(Unavailable, match="HTTP 500"):
        KubeNodeMetadata("broken", api).fetch()


def test_no_node_name_is_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match="CSI_NODE_NAME"):
        KubeNodeMetadata("").fetch()


@pytest.mark.parametrize(
    ("provider_id", "expected"),
    [
        ("aws:///us-east-1a/i-0abc", ("i-0abc", "us-east-1a")),
        ("aws:////i-0abc", ("i-0abc", "")),
        ("aws:///i-0abc", ("i-0abc", "")),
        ("gce://project/zone/name", ("", "")),
        ("", ("", "")),
    ],
)
def test_parse_provider_id(provider_id: str, expected: tuple[str, str]) -> None:
    assert parse_provider_id(provider_id) == expected
