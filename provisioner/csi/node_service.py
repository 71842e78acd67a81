"""The CSI Node servicer: proto in, :class:`provisioner.node.NodeCore` call, proto out.

Each method checks required fields, converts the request, calls the core and converts the answer.
No try/except and no ``context.abort``: the core raises domain errors and the server's interceptor
maps them to status codes in one table.
"""

from __future__ import annotations

import grpc

from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.convert import capability_from_pb, require, segment_to_pb
from provisioner.model import VolumeCapability
from provisioner.node import NodeCore

_RPC = csi_pb2.NodeServiceCapability.RPC
_Usage = csi_pb2.VolumeUsage


def _capability(
    request: csi_pb2.NodeStageVolumeRequest
    | csi_pb2.NodePublishVolumeRequest
    | csi_pb2.NodeExpandVolumeRequest,
    required: bool,
) -> VolumeCapability | None:
    if not request.HasField("volume_capability"):
        if required:
            require(None, "volume_capability")
        return None
    return capability_from_pb(request.volume_capability)


class NodeService(csi_pb2_grpc.NodeServicer):
    def __init__(self, core: NodeCore) -> None:
        self.core = core
        # NodeGetInfo and NodeGetCapabilities answer the same for the life of the process (the node's
        # metadata and limits are resolved before the core is built): built once, then shared.
        info = core.get_info()
        self._info = csi_pb2.NodeGetInfoResponse(
            node_id=info.node_id,
            max_volumes_per_node=info.max_volumes_per_node,
            accessible_topology=segment_to_pb(info.segments),
        )
        self._capabilities = csi_pb2.NodeGetCapabilitiesResponse(
            capabilities=[csi_pb2.NodeServiceCapability(rpc=_RPC(type=c.value)) for c in core.capabilities()]
        )

    def NodeStageVolume(
        self, request: csi_pb2.NodeStageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeStageVolumeResponse:
        require(request.volume_id, "volume_id")
        require(request.staging_target_path, "staging_target_path")
        self.core.stage(
            request.volume_id,
            request.staging_target_path,
            _capability(request, required=True),
            dict(request.publish_context),
            dict(request.volume_context),
        )
        return csi_pb2.NodeStageVolumeResponse()

    def NodeUnstageVolume(
        self, request: csi_pb2.NodeUnstageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnstageVolumeResponse:
        require(request.volume_id, "volume_id")
        require(request.staging_target_path, "staging_target_path")
        self.core.unstage(request.volume_id, request.staging_target_path)
        return csi_pb2.NodeUnstageVolumeResponse()

    def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        require(request.volume_id, "volume_id")
        require(request.target_path, "target_path")
        # staging_target_path: optional in the message; NodeCore answers its absence (FAILED_PRECONDITION).
        self.core.publish(
            request.volume_id,
            request.staging_target_path,
            request.target_path,
            _capability(request, required=True),
            request.readonly,
            dict(request.publish_context),
            dict(request.volume_context),
        )
        return csi_pb2.NodePublishVolumeResponse()

    def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        require(request.volume_id, "volume_id")
        require(request.target_path, "target_path")
        self.core.unpublish(request.volume_id, request.target_path)
        return csi_pb2.NodeUnpublishVolumeResponse()

    def NodeGetVolumeStats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        require(request.volume_id, "volume_id")
        require(request.volume_path, "volume_path")
        stats = self.core.get_volume_stats(request.volume_id, request.volume_path)
        usage = [
            _Usage(
                unit=_Usage.BYTES,
                total=stats.total_bytes,
                available=stats.available_bytes or 0,
                used=stats.used_bytes or 0,
            )
        ]
        if stats.total_inodes is not None:
            usage.append(
                _Usage(
                    unit=_Usage.INODES,
                    total=stats.total_inodes,
                    available=stats.available_inodes or 0,
                    used=stats.used_inodes or 0,
                )
            )
        return csi_pb2.NodeGetVolumeStatsResponse(usage=usage)

    def NodeExpandVolume(
        self, request: csi_pb2.NodeExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeExpandVolumeResponse:
        require(request.volume_id, "volume_id")
        require(request.volume_path, "volume_path")
        size = self.core.expand(request.volume_id, request.volume_path, _capability(request, required=False))
        return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=size)

    def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        return self._capabilities

    def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetInfoResponse:
        return self._info
