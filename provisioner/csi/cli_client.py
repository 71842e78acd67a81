"""The calls and the output formats behind ``zonal csi``: a CSI client for operators, like Go's ``csc``.

Why it exists: people (and tests, and the demo) need to poke any CSI endpoint — ours or another
driver's — and read the answer. :class:`CsiOperator` builds on the one client
(:class:`provisioner.csi.client.GrpcCsiClient`: channel, per-call timeout, status mapping, the typed
calls the loop uses too); each of its methods makes one or a few RPCs and returns a plain JSON-able
result; :func:`render_text` turns a result into ``key: value`` lines for people, :func:`render_json` into
JSON for tools. A failed call raises :class:`CallFailed` carrying the gRPC code *name*.

What it must not do: decide anything for the driver (it sends what it is told, no defaults beyond
the CSI ones), or parse command lines (that is :mod:`provisioner.cli.csi`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from provisioner.csi._proto import csi_pb2
from provisioner.csi.client import GrpcCsiClient, wire_status
from provisioner.csi.convert import (
    capability_to_pb,
    controller_capability_name,
    node_capability_name,
    plugin_capability_name,
)
from provisioner.csi.endpoint import Endpoint
from provisioner.errors import ZonalError
from provisioner.model import CapacityRange, ContentSource, TopologyRequirement, VolumeCapability
from provisioner.ports.csi import CreatedVolume, CreateVolumeRequest

Result = dict[str, Any]
_Resp = TypeVar("_Resp")

_BINARY_UNITS = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


class Pairs(dict[str, str]):
    """A string map shown inline as ``k=v,k2=v2`` (topology segments, contexts, parameters)."""


class CallFailed(Exception):
    """A CSI call answered with a non-OK status; ``code`` is the gRPC code's name (``NOT_FOUND``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def parse_pairs(text: str) -> Pairs:
    """``k=v[,k=v]`` → :class:`Pairs`; raises ``ValueError`` naming the bad item."""
    out = Pairs()
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not key=value")
        out[key.strip()] = value.strip()
    if not out:
        raise ValueError("expected key=value[,key=value]")
    return out


def merge_pairs(items: Iterable[Mapping[str, str]]) -> Pairs:
    out = Pairs()
    for item in items:
        out.update(item)
    return out


def human_bytes(count: int) -> str:
    """``10737418240`` → ``10Gi``; inexact sizes get one decimal and a tilde (``~9.8Gi``)."""
    for suffix, size in _BINARY_UNITS:
        if count >= size:
            if count % size == 0:
                return f"{count // size}{suffix}"
            return f"~{count / size:.1f}{suffix}"
    return f"{count}B"


@contextmanager
def _failures() -> Iterator[None]:
    """A call the client failed → :class:`CallFailed` with the code the driver answered."""
    try:
        yield
    except ZonalError as e:
        code, details = wire_status(e)
        raise CallFailed(code, details or "(no message)") from e


class CsiOperator:
    """One channel to one endpoint; every RPC gets its own deadline of ``timeout`` seconds."""

    def __init__(
        self, endpoint: Endpoint, timeout: float = 60.0, channel: grpc.Channel | None = None
    ) -> None:
        self.client = GrpcCsiClient(endpoint, timeout, channel)
        self.identity = self.client.identity
        self.controller = self.client.controller
        self.node = self.client.node

    def close(self) -> None:
        self.client.close()

    def _call(self, method: Callable[..., _Resp], request: object) -> _Resp:
        with _failures():
            return self.client.call(method, request)

    # Identity

    def info(self) -> Result:
        """Plugin info and capabilities, plus the controller and node capabilities of whichever
        services answer (a service that is not served answers UNIMPLEMENTED and is left out)."""
        info = self._call(self.identity.GetPluginInfo, csi_pb2.GetPluginInfoRequest())
        caps = self._call(self.identity.GetPluginCapabilities, csi_pb2.GetPluginCapabilitiesRequest())
        out: Result = {
            "name": info.name,
            "vendor_version": info.vendor_version,
            "manifest": Pairs(info.manifest),
            "plugin_capabilities": [plugin_capability_name(c) for c in caps.capabilities],
        }
        try:
            ctrl = self._call(
                self.controller.ControllerGetCapabilities, csi_pb2.ControllerGetCapabilitiesRequest()
            )
            out["controller_capabilities"] = [
                controller_capability_name(c) for c in ctrl.capabilities if c.HasField("rpc")
            ]
        except CallFailed as e:
            if e.code != "UNIMPLEMENTED":
                raise
        try:
            node = self._call(self.node.NodeGetCapabilities, csi_pb2.NodeGetCapabilitiesRequest())
            out["node_capabilities"] = [
                node_capability_name(c) for c in node.capabilities if c.HasField("rpc")
            ]
        except CallFailed as e:
            if e.code != "UNIMPLEMENTED":
                raise
        return out

    def probe(self) -> Result:
        with _failures():
            return {"ready": self.client.probe()}

    # Controller

    def create_volume(
        self,
        name: str,
        required_bytes: int,
        capability: VolumeCapability,
        *,
        limit_bytes: int = 0,
        requisite: Sequence[Mapping[str, str]] = (),
        preferred: Sequence[Mapping[str, str]] = (),
        parameters: Mapping[str, str] | None = None,
        snapshot_id: str = "",
        source_volume_id: str = "",
    ) -> Result:
        request = CreateVolumeRequest(
            name=name,
            capacity=CapacityRange(required_bytes=required_bytes, limit_bytes=limit_bytes),
            capabilities=(capability,),
            parameters=dict(parameters or {}),
            content_source=ContentSource(snapshot_id=snapshot_id)
            if snapshot_id
            else ContentSource(volume_id=source_volume_id)
            if source_volume_id
            else None,
            requirement=TopologyRequirement(tuple(requisite), tuple(preferred))
            if requisite or preferred
            else None,
        )
        with _failures():
            return _created(self.client.create_volume(request))

    def delete_volume(self, volume_id: str) -> Result:
        with _failures():
            self.client.delete_volume(volume_id)
        return {"volume_id": volume_id, "deleted": True}

    def publish(
        self,
        volume_id: str,
        node_id: str,
        capability: VolumeCapability,
        *,
        readonly: bool = False,
        volume_context: Mapping[str, str] | None = None,
    ) -> Result:
        resp = self._call(
            self.controller.ControllerPublishVolume,
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume_id,
                node_id=node_id,
                volume_capability=capability_to_pb(capability),
                readonly=readonly,
                volume_context=dict(volume_context or {}),
            ),
        )
        return {"volume_id": volume_id, "node_id": node_id, "publish_context": Pairs(resp.publish_context)}

    def unpublish(self, volume_id: str, node_id: str) -> Result:
        self._call(
            self.controller.ControllerUnpublishVolume,
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=node_id),
        )
        return {"volume_id": volume_id, "node_id": node_id, "unpublished": True}

    def list_volumes(self, max_entries: int = 0, starting_token: str = "") -> Result:
        """One page when ``max_entries`` or ``starting_token`` is given, else every page."""
        volumes: list[Result] = []
        token = starting_token
        while True:
            resp = self._call(
                self.controller.ListVolumes,
                csi_pb2.ListVolumesRequest(max_entries=max_entries, starting_token=token),
            )
            for entry in resp.entries:
                item = _volume(entry.volume)
                if entry.HasField("status"):
                    item.update(_status(entry.status))
                volumes.append(item)
            token = resp.next_token
            if not token or max_entries or starting_token:
                break
        out: Result = {"volumes": volumes}
        if token:
            out["next_token"] = token
        return out

    def get_volume(self, volume_id: str) -> Result:
        resp = self._call(
            self.controller.ControllerGetVolume, csi_pb2.ControllerGetVolumeRequest(volume_id=volume_id)
        )
        out = _volume(resp.volume)
        if resp.HasField("status"):
            out.update(_status(resp.status))
        return out

    def expand_volume(self, volume_id: str, required_bytes: int) -> Result:
        resp = self._call(
            self.controller.ControllerExpandVolume,
            csi_pb2.ControllerExpandVolumeRequest(
                volume_id=volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=required_bytes)
            ),
        )
        return {
            "volume_id": volume_id,
            "capacity_bytes": resp.capacity_bytes,
            "node_expansion_required": resp.node_expansion_required,
        }

    def create_snapshot(self, name: str, source_volume_id: str, parameters: Mapping[str, str]) -> Result:
        resp = self._call(
            self.controller.CreateSnapshot,
            csi_pb2.CreateSnapshotRequest(
                name=name, source_volume_id=source_volume_id, parameters=dict(parameters)
            ),
        )
        return _snapshot(resp.snapshot)

    def delete_snapshot(self, snapshot_id: str) -> Result:
        self._call(self.controller.DeleteSnapshot, csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))
        return {"snapshot_id": snapshot_id, "deleted": True}

    def list_snapshots(self, source_volume_id: str = "", snapshot_id: str = "") -> Result:
        snapshots: list[Result] = []
        token = ""
        while True:
            resp = self._call(
                self.controller.ListSnapshots,
                csi_pb2.ListSnapshotsRequest(
                    source_volume_id=source_volume_id, snapshot_id=snapshot_id, starting_token=token
                ),
            )
            snapshots.extend(_snapshot(e.snapshot) for e in resp.entries)
            token = resp.next_token
            if not token:
                return {"snapshots": snapshots}

    # Node

    def node_info(self) -> Result:
        resp = self._call(self.node.NodeGetInfo, csi_pb2.NodeGetInfoRequest())
        out: Result = {"node_id": resp.node_id, "max_volumes_per_node": resp.max_volumes_per_node}
        if resp.HasField("accessible_topology"):
            out["accessible_topology"] = [Pairs(resp.accessible_topology.segments)]
        return out

    def stage(
        self,
        volume_id: str,
        staging_path: str,
        capability: VolumeCapability,
        *,
        publish_context: Mapping[str, str] | None = None,
        volume_context: Mapping[str, str] | None = None,
    ) -> Result:
        self._call(
            self.node.NodeStageVolume,
            csi_pb2.NodeStageVolumeRequest(
                volume_id=volume_id,
                staging_target_path=staging_path,
                volume_capability=capability_to_pb(capability),
                publish_context=dict(publish_context or {}),
                volume_context=dict(volume_context or {}),
            ),
        )
        return {"volume_id": volume_id, "staging_path": staging_path, "staged": True}

    def unstage(self, volume_id: str, staging_path: str) -> Result:
        self._call(
            self.node.NodeUnstageVolume,
            csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=staging_path),
        )
        return {"volume_id": volume_id, "staging_path": staging_path, "unstaged": True}

    def node_publish(
        self,
        volume_id: str,
        staging_path: str,
        target_path: str,
        capability: VolumeCapability,
        *,
        readonly: bool = False,
        publish_context: Mapping[str, str] | None = None,
        volume_context: Mapping[str, str] | None = None,
    ) -> Result:
        self._call(
            self.node.NodePublishVolume,
            csi_pb2.NodePublishVolumeRequest(
                volume_id=volume_id,
                staging_target_path=staging_path,
                target_path=target_path,
                volume_capability=capability_to_pb(capability),
                readonly=readonly,
                publish_context=dict(publish_context or {}),
                volume_context=dict(volume_context or {}),
            ),
        )
        return {"volume_id": volume_id, "target_path": target_path, "published": True}

    def node_unpublish(self, volume_id: str, target_path: str) -> Result:
        self._call(
            self.node.NodeUnpublishVolume,
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target_path),
        )
        return {"volume_id": volume_id, "target_path": target_path, "unpublished": True}

    def stats(self, volume_id: str, path: str, staging_path: str = "") -> Result:
        resp = self._call(
            self.node.NodeGetVolumeStats,
            csi_pb2.NodeGetVolumeStatsRequest(
                volume_id=volume_id, volume_path=path, staging_target_path=staging_path
            ),
        )
        out: Result = {"volume_id": volume_id, "path": path}
        for usage in resp.usage:
            unit = "bytes" if usage.unit == csi_pb2.VolumeUsage.BYTES else "inodes"
            out[f"total_{unit}"] = usage.total
            out[f"available_{unit}"] = usage.available
            out[f"used_{unit}"] = usage.used
        if resp.HasField("volume_condition"):
            out["abnormal"] = resp.volume_condition.abnormal
            if resp.volume_condition.message:
                out["condition"] = resp.volume_condition.message
        return out


def _created(vol: CreatedVolume) -> Result:
    out: Result = {
        "volume_id": vol.volume_id,
        "capacity_bytes": vol.capacity_bytes,
        "accessible_topology": [Pairs(t) for t in vol.accessible_topology],
        "volume_context": Pairs(vol.volume_context),
    }
    source = vol.content_source
    if source is not None:
        out["content_source"] = (
            Pairs(snapshot_id=source.snapshot_id) if source.snapshot_id else Pairs(volume_id=source.volume_id)
        )
    return out


def _volume(vol: csi_pb2.Volume) -> Result:
    out: Result = {
        "volume_id": vol.volume_id,
        "capacity_bytes": vol.capacity_bytes,
        "accessible_topology": [Pairs(t.segments) for t in vol.accessible_topology],
    }
    if vol.HasField("content_source"):
        source = vol.content_source
        if source.HasField("snapshot"):
            out["content_source"] = Pairs(snapshot_id=source.snapshot.snapshot_id)
        elif source.HasField("volume"):
            out["content_source"] = Pairs(volume_id=source.volume.volume_id)
    return out


def _status(
    status: csi_pb2.ListVolumesResponse.VolumeStatus | csi_pb2.ControllerGetVolumeResponse.VolumeStatus,
) -> Result:
    out: Result = {"published_node_ids": list(status.published_node_ids)}
    if status.HasField("volume_condition"):
        out["abnormal"] = status.volume_condition.abnormal
        if status.volume_condition.message:
            out["condition"] = status.volume_condition.message
    return out


def _timestamp(ts: timestamp_pb2.Timestamp) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def _snapshot(snap: csi_pb2.Snapshot) -> Result:
    out: Result = {
        "snapshot_id": snap.snapshot_id,
        "source_volume_id": snap.source_volume_id,
        "size_bytes": snap.size_bytes,
        "ready_to_use": snap.ready_to_use,
    }
    if snap.HasField("creation_time"):
        out["creation_time"] = _timestamp(snap.creation_time)
    return out


# Output


def render_json(result: Mapping[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=False)


def render_text(result: Mapping[str, Any]) -> str:
    """``key: value`` lines; a list of records becomes blocks separated by blank lines."""
    lines: list[str] = []
    _render(result, "", lines)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)


def _render(record: Mapping[str, Any], prefix: str, lines: list[str]) -> None:
    for key, value in record.items():
        name = prefix + key
        if value is None:
            continue
        if isinstance(value, list) and value and all(_is_record(v) for v in value):
            for item in value:
                if lines and lines[-1] != "":
                    lines.append("")
                _render(item, "", lines)
            lines.append("")
        elif _is_record(value):
            _render(value, name + ".", lines)
        else:
            lines.append(f"{name}: {_scalar(key, value)}")


def _is_record(value: object) -> bool:
    return isinstance(value, dict) and not isinstance(value, Pairs)


def _scalar(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and key.endswith("_bytes") and value > 0:
        return f"{value} ({human_bytes(value)})"
    if isinstance(value, Pairs):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        if not value:
            return "-"
        # Topology: one segment per entry, segments separated by spaces.
        sep = " " if all(isinstance(v, Pairs) for v in value) else ", "
        return sep.join(_scalar(key, v) for v in value)
    return str(value) if value != "" else "-"
