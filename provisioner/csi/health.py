"""The standard gRPC health service (grpc.health.v1) on the CSI socket, reflecting Probe.

Written by hand over the generated CSI code's runtime (no extra package): ``Check`` answers SERVING
when the probe function passes and NOT_SERVING otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from provisioner.errors import ZonalError

_SERVING = 1
_NOT_SERVING = 2


def _encode_status(status: int) -> bytes:
    # HealthCheckResponse { ServingStatus status = 1; }: field 1, varint.
    return bytes([0x08, status])


def add_health_service(server: grpc.Server, probe: Callable[[], None] | None) -> None:
    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        if probe is not None:
            try:
                probe()
            except ZonalError:
                return _encode_status(_NOT_SERVING)
        return _encode_status(_SERVING)

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=lambda b: b, response_serializer=lambda b: b
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
