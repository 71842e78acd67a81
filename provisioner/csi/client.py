"""The one gRPC CSI client: implements :class:`provisioner.ports.csi.CsiClient` for the provisioner loop,
and is what ``zonal csi`` (:mod:`provisioner.csi.cli_client`) and the demo dial drivers with.

Why it exists: callers speak model terms and domain errors; this adapter turns them into CSI messages,
bounds every call with the ``--timeout`` deadline, and maps gRPC status codes back to domain errors (the
one table below, raised ``from`` the gRPC error so :func:`wire_status` can still name the code), so no
grpc type leaves ``provisioner.csi``. It makes no provisioning decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import grpc

from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.convert import (
    capability_to_pb,
    content_source_from_pb,
    content_source_to_pb,
    controller_capability_name,
    known,
    plugin_capability_name,
    requirement_to_pb,
    segments_from_pb,
)
from provisioner.csi.endpoint import Endpoint, connect_failure, parse_endpoint
from provisioner.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OperationInProgress,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    ZonalError,
)
from provisioner.ports.csi import (
    Cancelled,
    ControllerCapability,
    CreatedVolume,
    CreateVolumeRequest,
    PluginCapability,
    PluginInfo,
)

_Resp = TypeVar("_Resp")

# gRPC status code → domain error (the reverse of provisioner.csi.errors, for what a driver answers).
CODE_TO_ERROR: dict[grpc.StatusCode, type[ZonalError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: OperationInProgress,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
}


def _status(e: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else ""
    return (code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN), details or ""


def error_for(e: grpc.RpcError) -> ZonalError:
    code, details = _status(e)
    return CODE_TO_ERROR.get(code, Internal)(details or str(code))


def wire_status(e: ZonalError) -> tuple[str, str]:
    """The gRPC code name a driver answered and its message ("" when it sent none), for an error
    :class:`GrpcCsiClient` raised (``("UNKNOWN", message)`` for one it did not)."""
    cause = e.__cause__
    if isinstance(cause, grpc.RpcError):
        code, details = _status(cause)
        return code.name, e.message if details else ""
    return grpc.StatusCode.UNKNOWN.name, e.message


class GrpcCsiClient:
    """A CSI client over one channel; every call has its own deadline of ``timeout`` seconds.

    The typed methods are what the loop needs; :meth:`call` sends any request on the stubs
    (:attr:`identity`, :attr:`controller`, :attr:`node`) with the same deadline and error mapping."""

    def __init__(
        self, address: str | Endpoint, timeout: float = 10.0, channel: grpc.Channel | None = None
    ) -> None:
        self.timeout = timeout
        self.address = str(address)
        endpoint = address if isinstance(address, Endpoint) else parse_endpoint(address)
        self.channel = channel or grpc.insecure_channel(endpoint.grpc_target)
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.controller = csi_pb2_grpc.ControllerStub(self.channel)
        self.node = csi_pb2_grpc.NodeStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, method: Callable[..., _Resp], request: object) -> _Resp:
        """One RPC bounded by the timeout; a non-OK status raises its domain error (see the table)."""
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            error = error_for(e)
            if isinstance(error, Unavailable):
                error = Unavailable(connect_failure(self.address, error.message))
            raise error from e

    def probe(self) -> bool:
        resp = self.call(self.identity.Probe, csi_pb2.ProbeRequest())
        # CSI: an unset ready field means ready.
        return not resp.HasField("ready") or bool(resp.ready.value)

    def plugin_info(self) -> PluginInfo:
        resp = self.call(self.identity.GetPluginInfo, csi_pb2.GetPluginInfoRequest())
        return PluginInfo(resp.name, resp.vendor_version)

    def plugin_capabilities(self) -> frozenset[PluginCapability]:
        resp = self.call(self.identity.GetPluginCapabilities, csi_pb2.GetPluginCapabilitiesRequest())
        return known(PluginCapability, (plugin_capability_name(c) for c in resp.capabilities))

    def controller_capabilities(self) -> frozenset[ControllerCapability]:
        try:
            resp = self.call(
                self.controller.ControllerGetCapabilities, csi_pb2.ControllerGetCapabilitiesRequest()
            )
        except Unimplemented:
            return frozenset()
        names = (controller_capability_name(c) for c in resp.capabilities if c.HasField("rpc"))
        return known(ControllerCapability, names)

    def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        msg = csi_pb2.CreateVolumeRequest(
            name=request.name,
            capacity_range=csi_pb2.CapacityRange(
                required_bytes=request.capacity.required_bytes, limit_bytes=request.capacity.limit_bytes
            ),
            volume_capabilities=[capability_to_pb(c) for c in request.capabilities],
            parameters=dict(request.parameters),
            secrets=dict(request.secrets),
        )
        source = content_source_to_pb(request.content_source)
        if source is not None:
            msg.volume_content_source.CopyFrom(source)
        if request.requirement is not None:
            msg.accessibility_requirements.CopyFrom(requirement_to_pb(request.requirement))
        resp = self.call(self.controller.CreateVolume, msg)
        vol = resp.volume
        return CreatedVolume(
            volume_id=vol.volume_id,
            capacity_bytes=vol.capacity_bytes,
            volume_context=dict(vol.volume_context),
            accessible_topology=segments_from_pb(vol.accessible_topology),
            content_source=content_source_from_pb(vol.content_source)
            if vol.HasField("content_source")
            else None,
        )

    def delete_volume(self, volume_id: str, secrets: Mapping[str, str] | None = None) -> None:
        self.call(
            self.controller.DeleteVolume,
            csi_pb2.DeleteVolumeRequest(volume_id=volume_id, secrets=dict(secrets or {})),
        )
