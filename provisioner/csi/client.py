"""The gRPC CSI client the provisioner loop uses: implements :class:`provisioner.ports.kube.CsiClient`.

Why it exists: the loop speaks model terms and domain errors; this adapter turns them into CSI messages,
bounds every call with the ``--timeout`` deadline, and maps gRPC status codes back to domain errors (the
one table below), so no grpc type leaves ``provisioner.csi``. It makes no provisioning decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.convert import (
    capability_to_pb,
    content_source_from_pb,
    content_source_to_pb,
    requirement_to_pb,
    segments_from_pb,
)
from provisioner.csi.endpoint import connect_failure, parse_endpoint
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
from provisioner.ports.kube import Cancelled, CreatedVolume, CreateVolumeRequest, PluginInfo

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


def error_for(e: grpc.RpcError) -> ZonalError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = (e.details() if hasattr(e, "details") else "") or str(code)
    return CODE_TO_ERROR.get(code, Internal)(details)


class GrpcCsiClient:
    """A CSI client over one channel; every call has its own deadline of ``timeout`` seconds."""

    def __init__(self, address: str, timeout: float = 10.0, channel: grpc.Channel | None = None) -> None:
        self.timeout = timeout
        self.address = address
        self.channel = channel or grpc.insecure_channel(parse_endpoint(address).grpc_target)
        self._identity = csi_pb2_grpc.IdentityStub(self.channel)
        self._controller = csi_pb2_grpc.ControllerStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            error = error_for(e)
            if isinstance(error, Unavailable):
                error = Unavailable(connect_failure(self.address, error.message))
            raise error from e

    def probe(self) -> bool:
        resp = self._call(self._identity.Probe, csi_pb2.ProbeRequest())
        # CSI: an unset ready field means ready.
        return not resp.HasField("ready") or bool(resp.ready.value)

    def plugin_info(self) -> PluginInfo:
        resp = self._call(self._identity.GetPluginInfo, csi_pb2.GetPluginInfoRequest())
        return PluginInfo(resp.name, resp.vendor_version)

    def plugin_capabilities(self) -> frozenset[str]:
        resp = self._call(self._identity.GetPluginCapabilities, csi_pb2.GetPluginCapabilitiesRequest())
        names = set()
        for cap in resp.capabilities:
            if cap.HasField("service"):
                names.add(csi_pb2.PluginCapability.Service.Type.Name(cap.service.type))
        return frozenset(names)

    def controller_capabilities(self) -> frozenset[str]:
        try:
            resp = self._call(
                self._controller.ControllerGetCapabilities, csi_pb2.ControllerGetCapabilitiesRequest()
            )
        except Unimplemented:
            return frozenset()
        return frozenset(
            csi_pb2.ControllerServiceCapability.RPC.Type.Name(c.rpc.type)
            for c in resp.capabilities
            if c.HasField("rpc")
        )

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
        resp = self._call(self._controller.CreateVolume, msg)
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
        self._call(
            self._controller.DeleteVolume,
            csi_pb2.DeleteVolumeRequest(volume_id=volume_id, secrets=dict(secrets or {})),
        )
