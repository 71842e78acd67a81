"""ImdsClient against a local HTTP server that speaks IMDSv2: token PUT first, then GETs with it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from provisioner.aws.imds import ImdsClient
from provisioner.errors import NotFound, Unavailable

TOKEN = "AQAEAFakeToken=="


@dataclass
class FakeImds:
    """State of the fake metadata service: the answers, the requests seen, and knobs for failure."""

    data: dict[str, str] = field(
        default_factory=lambda: {
            "instance-id": "i-0123456789abcdef0",
            "placement/availability-zone": "us-east-1c",
            "placement/region": "us-east-1",
            "instance-type": "m5.xlarge",
            "block-device-mapping/": "ami\nebs1\nroot",
            "network/interfaces/macs/": "0a:00:00:00:00:01/\n0a:00:00:00:00:02/",
        }
    )
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, token header)
    delay: float = 0.0
    reject_tokens: set[str] = field(default_factory=set)
    tokens_issued: int = 0
    release: threading.Event = field(default_factory=threading.Event)


def _handler(state: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _reply(self, code: int, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            # A client that gave up (the timeout tests) has closed the socket: nothing to tell it.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def do_PUT(self) -> None:
            state.requests.append(
                ("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
            )
            if state.delay:
                state.release.wait(state.delay)
            if self.path != "/latest/api/token" or not self.headers.get(
                "X-aws-ec2-metadata-token-ttl-seconds"
            ):
                self._reply(400, "")
                return
            state.tokens_issued += 1
            self._reply(200, f"{TOKEN}{state.tokens_issued}")

        def do_GET(self) -> None:
            token = self.headers.get("X-aws-ec2-metadata-token", "")
            state.requests.append(("GET", self.path, token))
            if not token.startswith(TOKEN) or token in state.reject_tokens:
                self._reply(401, "")
                return
            key = self.path.removeprefix("/latest/meta-data/")
            if key not in state.data:
                self._reply(404, "")
                return
            self._reply(200, state.data[key])

    return Handler


@pytest.fixture
def imds() -> Iterator[tuple[FakeImds, str]]:
    state = FakeImds()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_fetch_gets_a_token_then_reads_with_it(imds: tuple[FakeImds, str]) -> None:
    state, url = imds
    md = ImdsClient(url, timeout=2).fetch()
    assert (md.instance_id, md.zone, md.region, md.instance_type) == (
        "i-0123456789abcdef0",
        "us-east-1c",
        "us-east-1",
        "m5.xlarge",
    )
    assert md.block_device_count == 2  # root (ami and root are the same volume) + ebs1
    assert md.eni_count == 2
    assert md.source == "imds"
    assert state.requests[0] == ("PUT", "/latest/api/token", "21600")
    assert all(r[0] == "GET" and r[2] == f"{TOKEN}1" for r in state.requests[1:])
    assert state.tokens_issued == 1


def test_optional_keys_may_be_missing(imds: tuple[FakeImds, str]) -> None:
    state, url = imds
    for key in ("instance-type", "placement/region", "block-device-mapping/", "network/interfaces/macs/"):
        del state.data[key]
    md = ImdsClient(url, timeout=2).fetch()
    assert md.instance_id and md.zone
    assert (md.instance_type, md.region, md.block_device_count, md.eni_count) == ("", "", None, None)


def test_missing_instance_id_is_not_found(imds: tuple[FakeImds, str]) -> None:
    state, url = imds
    del state.data["instance-id"]
    with pytest.raises(NotFound):
        ImdsClient(url, timeout=2).fetch()


def test_an_expired_token_is_renewed_once(imds: tuple[FakeImds, str]) -> None:
    state, url = imds
    client = ImdsClient(url, timeout=2)
    assert client.get("instance-id") == "i-0123456789abcdef0"
    state.reject_tokens.add(f"{TOKEN}1")
    assert client.get("placement/availability-zone") == "us-east-1c"
    assert state.tokens_issued == 2


def test_a_slow_service_times_out_quickly(imds: tuple[FakeImds, str]) -> None:
    state, url = imds
    state.delay = 3600.0  # held until the fixture ends: only the client's own timeout can end the call
    with pytest.raises(Unavailable, match="unreachable"):
        ImdsClient(url, timeout=0.2).fetch()


def test_nothing_listening_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        ImdsClient("http://127.0.0.1:9", timeout=0.5).fetch()
