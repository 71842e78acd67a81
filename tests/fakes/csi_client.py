"""A stateful fake CSI controller behind the CsiClient port: volumes by name, zones from the requirement.

CreateVolume is idempotent by name (as the spec requires), places the volume in the first preferred
segment's zone (else the first requisite one, else ``default_zone``), and answers with the matching
accessible topology. Tests script failures with :attr:`errors` (raised in order, one per call) and a
misbehaving driver with :attr:`force_zone`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner.errors import ZonalError
from provisioner.model import ZONE_KEY
from provisioner.ports.csi import (
    ControllerCapability,
    CreatedVolume,
    CreateVolumeRequest,
    PluginCapability,
    PluginInfo,
)


@dataclass
class FakeCsiClient:
    name: str = "zonal.csi.dev"
    default_zone: str = "us-east-1a"
    topology_key: str = ZONE_KEY
    plugin_caps: frozenset[PluginCapability] = frozenset(
        {PluginCapability.CONTROLLER_SERVICE, PluginCapability.VOLUME_ACCESSIBILITY_CONSTRAINTS}
    )
    controller_caps: frozenset[ControllerCapability] = frozenset({ControllerCapability.CREATE_DELETE_VOLUME})
    ready: bool = True
    errors: list[ZonalError] = field(default_factory=list)
    delete_errors: list[ZonalError] = field(default_factory=list)
    force_zone: str = ""
    capacity_override: int | None = None
    volumes: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # name → (id, bytes, zone)
    creates: list[CreateVolumeRequest] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    delete_secrets: list[dict[str, str]] = field(default_factory=list)  # the secrets each DeleteVolume got
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def probe(self) -> bool:
        return self.ready

    def plugin_info(self) -> PluginInfo:
        return PluginInfo(self.name, "1.0.0")

    def plugin_capabilities(self) -> frozenset[PluginCapability]:
        return self.plugin_caps

    def controller_capabilities(self) -> frozenset[ControllerCapability]:
        return self.controller_caps

    def create_volume(self, request: CreateVolumeRequest) -> CreatedVolume:
        with self._lock:
            self.creates.append(request)
            if self.errors:
                raise self.errors.pop(0)
            zone = self.default_zone
            req = request.requirement
            if req is not None:
                first = (req.preferred or req.requisite)[0]
                zone = first.get(self.topology_key, zone)
            zone = self.force_zone or zone
            size = (
                request.capacity.required_bytes if self.capacity_override is None else self.capacity_override
            )
            if request.name not in self.volumes:
                self.volumes[request.name] = (f"vol-{len(self.volumes):04d}", size, zone)
            vid, size, zone = self.volumes[request.name]
            return CreatedVolume(
                volume_id=vid,
                capacity_bytes=size,
                volume_context={"zone": zone},
                accessible_topology=({self.topology_key: zone},),
                content_source=request.content_source,
            )

    def delete_volume(self, volume_id: str, secrets: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self.deletes.append(volume_id)
            self.delete_secrets.append(dict(secrets or {}))
            if self.delete_errors:
                raise self.delete_errors.pop(0)
            for name, (vid, _, _) in list(self.volumes.items()):
                if vid == volume_id:
                    del self.volumes[name]

    def creates_for(self, name: str) -> list[CreateVolumeRequest]:
        with self._lock:
            return [r for r in self.creates if r.name == name]
