"""The standard grpc.health.v1 service on the CSI socket reflects Probe."""

from __future__ import annotations

from pathlib import Path

import grpc

from provisioner import errors
from provisioner.csi.health import add_health_service
from provisioner.csi.identity import IdentityService
from provisioner.csi.server import Services
from tests.grpcutil import channel, running_server

SERVING = b"\x08\x01"
NOT_SERVING = b"\x08\x02"


def _check(tmp_path: Path, probe_ok: bool) -> bytes:
    def probe() -> None:
        if not probe_ok:
            raise errors.FailedPrecondition("EC2 unreachable")

    services = Services(
        identity=IdentityService("t.csi.dev", "1", controller=True, probe=probe),
        extra=(lambda server: add_health_service(server, probe),),
    )
    with running_server(tmp_path, services) as srv, channel(srv) as ch:
        check = ch.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        answer: bytes = check(b"", timeout=5)  # HealthCheckRequest{} encodes to nothing
        return answer


def test_serving_when_probe_passes(tmp_path: Path) -> None:
    assert _check(tmp_path, True) == SERVING


def test_not_serving_when_probe_fails(tmp_path: Path) -> None:
    assert _check(tmp_path, False) == NOT_SERVING


def test_unknown_method_is_unimplemented(tmp_path: Path) -> None:
    services = Services(identity=IdentityService("t.csi.dev", "1", controller=False))
    with running_server(tmp_path, services) as srv, channel(srv) as ch:
        check = ch.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        try:
            check(b"", timeout=5)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNIMPLEMENTED
        else:
            raise AssertionError("health service answered although it was not registered")
