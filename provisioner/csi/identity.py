"""The Identity service: who the plugin is, what it can do, whether it is healthy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
from google.protobuf import wrappers_pb2

from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.convert import plugin_capability_to_pb
from provisioner.ports.csi import PluginCapability

# Immutable answers, built once: the server only serializes them, so sharing them between calls and
# threads is safe (nothing mutates a response after the servicer returns it).
_READY = csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=True))


class IdentityService(csi_pb2_grpc.IdentityServicer):
    def __init__(
        self,
        name: str,
        vendor_version: str,
        *,
        controller: bool,
        online_expansion: bool = False,
        probe: Callable[[], None] | None = None,
        manifest: dict[str, str] | None = None,
    ) -> None:
        self._info = csi_pb2.GetPluginInfoResponse(
            name=name, vendor_version=vendor_version, manifest=manifest or {}
        )
        caps: list[PluginCapability] = []
        if controller:
            caps.append(PluginCapability.CONTROLLER_SERVICE)
        # Both the controller (CreateVolume honours requirements) and the node (NodeGetInfo reports
        # accessible_topology) take part in topology.
        caps.append(PluginCapability.VOLUME_ACCESSIBILITY_CONSTRAINTS)
        if online_expansion:
            caps.append(PluginCapability.VOLUME_EXPANSION_ONLINE)
        self._caps = csi_pb2.GetPluginCapabilitiesResponse(
            capabilities=[plugin_capability_to_pb(c) for c in caps]
        )
        self._probe = probe

    @property
    def capabilities(self) -> Sequence[csi_pb2.PluginCapability]:
        return list(self._caps.capabilities)

    def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginInfoResponse:
        return self._info

    def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        return self._caps

    def Probe(self, request: csi_pb2.ProbeRequest, context: grpc.ServicerContext) -> csi_pb2.ProbeResponse:
        # CSI: unhealthy → FAILED_PRECONDITION (raised by the probe function as a domain error).
        if self._probe is not None:
            self._probe()
        return _READY
