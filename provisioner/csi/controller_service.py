"""The CSI Controller servicer: proto in, :class:`provisioner.controller.ControllerCore` call, proto out.

Each method checks required fields and CSI's limits (:mod:`provisioner.csi.limits`), converts the
request, calls the core and converts the answer. No try/except and no ``context.abort``: the core
raises domain errors and the server's interceptor maps them to status codes in one table. RPCs the
core does not implement raise ``Unimplemented`` explicitly (the generated base class would raise
NotImplementedError, which the interceptor reports as INTERNAL).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import timestamp_pb2

from provisioner.controller import ControllerCore, VolumeStatus
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc
from provisioner.csi.convert import (
    capabilities_from_pb,
    capability_from_pb,
    capacity_from_pb,
    content_source_from_pb,
    content_source_to_pb,
    require,
    requirement_from_pb,
    segments_to_pb,
)
from provisioner.csi.limits import check_capability, check_map, check_name, check_node_id, check_segments
from provisioner.errors import Unimplemented
from provisioner.model import GIB, Snapshot, TopologyRequirement, VolumeCapability
from provisioner.ports.clock import current_deadline

_RPC = csi_pb2.ControllerServiceCapability.RPC


def _volume_pb(status: VolumeStatus) -> csi_pb2.Volume:
    return csi_pb2.Volume(
        volume_id=status.volume_id,
        capacity_bytes=status.capacity_bytes,
        accessible_topology=segments_to_pb(status.accessible_topology),
    )


def _snapshot_pb(snapshot: Snapshot) -> csi_pb2.Snapshot:
    created = timestamp_pb2.Timestamp()
    created.FromNanoseconds(int(snapshot.created_at * 1e9))
    return csi_pb2.Snapshot(
        size_bytes=snapshot.size_gib * GIB,
        snapshot_id=snapshot.snapshot_id,
        source_volume_id=snapshot.source_volume_id,
        creation_time=created,
        ready_to_use=snapshot.ready,  # EC2 state completed
    )


def _condition_pb(status: VolumeStatus) -> csi_pb2.VolumeCondition:
    return csi_pb2.VolumeCondition(abnormal=status.abnormal, message=status.message)


def _capabilities(caps: Sequence[csi_pb2.VolumeCapability]) -> tuple[VolumeCapability, ...]:
    converted = capabilities_from_pb(caps)
    for i, cap in enumerate(converted):
        check_capability(cap, f"volume_capabilities[{i}]")
    return converted


def _capability(cap: csi_pb2.VolumeCapability) -> VolumeCapability:
    return check_capability(capability_from_pb(cap), "volume_capability")


def _requirement(msg: csi_pb2.TopologyRequirement | None) -> TopologyRequirement:
    requirement = requirement_from_pb(msg)
    check_segments(requirement.requisite, "accessibility_requirements.requisite")
    check_segments(requirement.preferred, "accessibility_requirements.preferred")
    return requirement


class ControllerService(csi_pb2_grpc.ControllerServicer):
    def __init__(self, core: ControllerCore) -> None:
        self.core = core
        self._capabilities = csi_pb2.ControllerGetCapabilitiesResponse(
            capabilities=[
                csi_pb2.ControllerServiceCapability(
                    rpc=_RPC(type=_RPC.Type.Value(cap.value))  # type: ignore[arg-type]
                )
                for cap in sorted(core.capabilities(), key=lambda c: _RPC.Type.Value(c.value))
            ]
        )

    def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.CreateVolumeResponse:
        require(request.name, "name")
        require(len(request.volume_capabilities), "volume_capabilities")
        created = self.core.create_volume(
            check_name(request.name, "name"),
            capacity_from_pb(request.capacity_range if request.HasField("capacity_range") else None),
            _capabilities(request.volume_capabilities),
            check_map(request.parameters, "parameters"),
            check_map(request.mutable_parameters, "mutable_parameters"),
            _requirement(
                request.accessibility_requirements if request.HasField("accessibility_requirements") else None
            ),
            content_source_from_pb(
                request.volume_content_source if request.HasField("volume_content_source") else None
            ),
            current_deadline(),
        )
        return csi_pb2.CreateVolumeResponse(
            volume=csi_pb2.Volume(
                volume_id=created.volume_id,
                capacity_bytes=created.capacity_bytes,
                volume_context=dict(created.volume_context),
                content_source=content_source_to_pb(created.content_source),
                accessible_topology=segments_to_pb(created.accessible_topology),
            )
        )

    def DeleteVolume(
        self, request: csi_pb2.DeleteVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.DeleteVolumeResponse:
        require(request.volume_id, "volume_id")
        self.core.delete_volume(request.volume_id, current_deadline())
        return csi_pb2.DeleteVolumeResponse()

    def ControllerPublishVolume(
        self, request: csi_pb2.ControllerPublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerPublishVolumeResponse:
        require(request.volume_id, "volume_id")
        require(request.node_id, "node_id")
        require(request.HasField("volume_capability"), "volume_capability")
        publish_context = self.core.publish(
            request.volume_id,
            check_node_id(request.node_id),
            _capability(request.volume_capability),
            request.readonly,
            check_map(request.volume_context, "volume_context"),
            current_deadline(),
        )
        return csi_pb2.ControllerPublishVolumeResponse(publish_context=publish_context)

    def ControllerUnpublishVolume(
        self, request: csi_pb2.ControllerUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerUnpublishVolumeResponse:
        require(request.volume_id, "volume_id")
        # CSI: node_id is OPTIONAL here; empty means "unpublish from every node" (the core does that).
        self.core.unpublish(request.volume_id, check_node_id(request.node_id), current_deadline())
        return csi_pb2.ControllerUnpublishVolumeResponse()

    def ValidateVolumeCapabilities(
        self, request: csi_pb2.ValidateVolumeCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
        require(request.volume_id, "volume_id")
        require(len(request.volume_capabilities), "volume_capabilities")
        check_map(request.mutable_parameters, "mutable_parameters")
        result = self.core.validate_capabilities(
            request.volume_id,
            _capabilities(request.volume_capabilities),
            check_map(request.volume_context, "volume_context"),
            check_map(request.parameters, "parameters"),
        )
        if not result.confirmed:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message=result.message)
        return csi_pb2.ValidateVolumeCapabilitiesResponse(
            confirmed=csi_pb2.ValidateVolumeCapabilitiesResponse.Confirmed(
                volume_context=dict(request.volume_context),
                volume_capabilities=list(request.volume_capabilities),
                parameters=dict(request.parameters),
                mutable_parameters=dict(request.mutable_parameters),
            )
        )

    def ListVolumes(
        self, request: csi_pb2.ListVolumesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ListVolumesResponse:
        page = self.core.list_volumes(request.max_entries, request.starting_token)
        return csi_pb2.ListVolumesResponse(
            entries=[
                csi_pb2.ListVolumesResponse.Entry(
                    volume=_volume_pb(status),
                    status=csi_pb2.ListVolumesResponse.VolumeStatus(
                        published_node_ids=list(status.published_node_ids),
                        volume_condition=_condition_pb(status),
                    ),
                )
                for status in page.items
            ],
            next_token=page.next_token,
        )

    def ControllerGetVolume(
        self, request: csi_pb2.ControllerGetVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerGetVolumeResponse:
        require(request.volume_id, "volume_id")
        status = self.core.get_volume(request.volume_id)
        return csi_pb2.ControllerGetVolumeResponse(
            volume=_volume_pb(status),
            status=csi_pb2.ControllerGetVolumeResponse.VolumeStatus(
                published_node_ids=list(status.published_node_ids),
                volume_condition=_condition_pb(status),
            ),
        )

    def ControllerGetCapabilities(
        self, request: csi_pb2.ControllerGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerGetCapabilitiesResponse:
        return self._capabilities

    # Snapshots, expansion and modification.

    def CreateSnapshot(
        self, request: csi_pb2.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.CreateSnapshotResponse:
        require(request.name, "name")
        require(request.source_volume_id, "source_volume_id")
        snapshot = self.core.create_snapshot(
            check_name(request.name, "name"),
            request.source_volume_id,
            check_map(request.parameters, "parameters"),
        )
        return csi_pb2.CreateSnapshotResponse(snapshot=_snapshot_pb(snapshot))

    def DeleteSnapshot(
        self, request: csi_pb2.DeleteSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.DeleteSnapshotResponse:
        require(request.snapshot_id, "snapshot_id")
        self.core.delete_snapshot(request.snapshot_id)
        return csi_pb2.DeleteSnapshotResponse()

    def ListSnapshots(
        self, request: csi_pb2.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ListSnapshotsResponse:
        page = self.core.list_snapshots(
            request.snapshot_id, request.source_volume_id, request.max_entries, request.starting_token
        )
        return csi_pb2.ListSnapshotsResponse(
            entries=[csi_pb2.ListSnapshotsResponse.Entry(snapshot=_snapshot_pb(s)) for s in page.items],
            next_token=page.next_token,
        )

    def GetSnapshot(
        self, request: csi_pb2.GetSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetSnapshotResponse:
        require(request.snapshot_id, "snapshot_id")
        return csi_pb2.GetSnapshotResponse(snapshot=_snapshot_pb(self.core.get_snapshot(request.snapshot_id)))

    def ControllerExpandVolume(
        self, request: csi_pb2.ControllerExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerExpandVolumeResponse:
        require(request.volume_id, "volume_id")
        require(request.HasField("capacity_range"), "capacity_range")
        expanded = self.core.expand_volume(
            request.volume_id,
            capacity_from_pb(request.capacity_range),
            _capability(request.volume_capability) if request.HasField("volume_capability") else None,
            current_deadline(),
        )
        return csi_pb2.ControllerExpandVolumeResponse(
            capacity_bytes=expanded.capacity_bytes,
            node_expansion_required=expanded.node_expansion_required,
        )

    def ControllerModifyVolume(
        self, request: csi_pb2.ControllerModifyVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerModifyVolumeResponse:
        require(request.volume_id, "volume_id")
        # CSI: empty mutable_parameters on an existing volume is a no-op (the core checks existence).
        self.core.modify_volume(
            request.volume_id,
            check_map(request.mutable_parameters, "mutable_parameters"),
            current_deadline(),
        )
        return csi_pb2.ControllerModifyVolumeResponse()

    # Not advertised, answered UNIMPLEMENTED (CSI: "Call not implemented").

    def GetCapacity(
        self, request: csi_pb2.GetCapacityRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetCapacityResponse:
        raise Unimplemented("GetCapacity is not supported: EBS has no capacity pool")
