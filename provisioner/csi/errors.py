"""The one table from domain errors to gRPC status codes, following the CSI spec's error tables.

:func:`status_for` walks the exception's class hierarchy (most specific first), so a subclass such
as ``ModificationRateLimited`` inherits its parent's code unless it has a row of its own. Anything
that is not a :class:`~provisioner.errors.ZonalError` is a bug: INTERNAL with a generic message (the
traceback goes to the log, never to the client). Every message is capped at :data:`MESSAGE_LIMIT`
bytes: gRPC carries it in a header (percent-encoded, so up to three bytes each) whose hard limit is
16 KiB, and a longer one reaches the client as RESOURCE_EXHAUSTED instead of the real code.
"""

from __future__ import annotations

import grpc

from provisioner import errors

CODES: dict[type[errors.ZonalError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    # CSI: "Operation pending for volume" → ABORTED; the sidecars retry.
    errors.OperationInProgress: grpc.StatusCode.ABORTED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    # Our wait outlived the caller's deadline; the operation continues in EC2. ABORTED makes the
    # sidecar retry with the same name, which then finds the volume.
    errors.DeadlineExceeded: grpc.StatusCode.ABORTED,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}

GENERIC_INTERNAL = "internal error; see the plugin's log"
MESSAGE_LIMIT = 1024  # UTF-8 bytes of a status message; messages quote inputs shortly, this is a safety net
_CUT = "… (message cut)"


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-safe message for ``exc``."""
    if isinstance(exc, errors.ZonalError):
        for cls in type(exc).__mro__:
            code = CODES.get(cls)
            if code is not None:
                return code, capped(exc.message)
        return grpc.StatusCode.INTERNAL, capped(exc.message)
    return grpc.StatusCode.INTERNAL, GENERIC_INTERNAL


def capped(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` cut to at most ``limit`` UTF-8 bytes (on a character boundary), marked as cut."""
    encoded = message.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return message
    keep = encoded[: limit - len(_CUT.encode("utf-8"))].decode("utf-8", "ignore")
    return keep + _CUT
