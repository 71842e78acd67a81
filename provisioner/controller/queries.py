"""The controller's read RPCs: ValidateVolumeCapabilities, ControllerGetVolume and ListVolumes, what
they answer (:class:`VolumeStatus`, :class:`Validation`) and the short-lived read cache validation uses.

Over the Cloud port only; it changes nothing in EC2. ListVolumes pages as :mod:`.paging` says.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from provisioner import params as P
from provisioner.config import DriverConfig
from provisioner.controller.checks import check_capability, check_fs_type, wants_multi_attach
from provisioner.controller.ownership import is_owned, owner_filter
from provisioner.controller.paging import EC2_PAGE, check_list_request, page_by_id, read_all
from provisioner.errors import InvalidArgument
from provisioner.model import (
    GIB,
    ZONE_KEY,
    Page,
    Segment,
    Volume,
    VolumeCapability,
    VolumeState,
    is_volume_id,
)
from provisioner.ports.clock import Clock
from provisioner.ports.cloud import Cloud

# Attachment states that mean "published to that node" (EC2's "busy" is attached and in use).
PUBLISHED_STATES = frozenset({"attached", "busy"})


@dataclass(frozen=True)
class VolumeStatus:
    """One ListVolumes entry / the ControllerGetVolume answer."""

    volume_id: str
    capacity_bytes: int
    accessible_topology: tuple[Segment, ...]
    published_node_ids: tuple[str, ...]
    abnormal: bool = False
    message: str = ""


@dataclass(frozen=True)
class Validation:
    """ValidateVolumeCapabilities' answer: confirmed, or a message saying why not."""

    confirmed: bool
    message: str = ""


def volume_status(volume: Volume) -> VolumeStatus:
    nodes = tuple(a.instance_id for a in volume.attachments if a.state in PUBLISHED_STATES)
    abnormal = volume.state in (VolumeState.ERROR, VolumeState.DELETING, VolumeState.DELETED)
    message = f"volume is {volume.state.value}" if abnormal else "volume is healthy"
    return VolumeStatus(
        volume_id=volume.volume_id,
        capacity_bytes=volume.size_gib * GIB,
        accessible_topology=({ZONE_KEY: volume.zone},),
        published_node_ids=nodes,
        abnormal=abnormal,
        message=message,
    )


class RecentVolumes:
    """Volumes read from EC2 within the last ``ttl`` seconds, for reads that tolerate that staleness.

    ValidateVolumeCapabilities must answer NOT_FOUND for a volume that does not exist, but whether a
    volume exists and is multi-attach changes rarely, and EC2's own Describe lags by seconds anyway; so
    a read is reused for ``ttl`` seconds. A missing volume is never remembered (NOT_FOUND is always
    EC2's fresh answer), and this driver's own deletions and modifications forget the volume at once.
    """

    def __init__(self, clock: Clock, ttl: float) -> None:
        self._clock = clock
        self._ttl = ttl
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, Volume]] = {}

    def get(self, volume_id: str, read: Callable[[str], Volume]) -> Volume:
        now = self._clock.monotonic()
        with self._lock:
            hit = self._seen.get(volume_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        volume = read(volume_id)
        if self._ttl > 0:
            with self._lock:
                if len(self._seen) >= 4096:  # bounded: drop what has expired, else everything
                    self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._ttl}
                    if len(self._seen) >= 4096:
                        self._seen.clear()
                self._seen[volume_id] = (now, volume)
        return volume

    def forget(self, volume_id: str) -> None:
        with self._lock:
            self._seen.pop(volume_id, None)


class Queries:
    """The read RPCs over the cloud; validation reads through ``recent``."""

    def __init__(self, cloud: Cloud, driver: DriverConfig, recent: RecentVolumes) -> None:
        self.cloud = cloud
        self.driver = driver
        self.recent = recent

    def validate(
        self,
        volume_id: str,
        capabilities: Sequence[VolumeCapability],
        parameters: Mapping[str, str] | None = None,
    ) -> Validation:
        if not volume_id:
            raise InvalidArgument("volume_id is required")
        if not capabilities:
            raise InvalidArgument("volume_capabilities is required")
        # CSI: volume does not exist → NOT_FOUND (a read up to validate_cache_seconds old).
        volume = self.recent.get(volume_id, self.cloud.get_volume)
        for capability in capabilities:
            try:
                check_capability(capability)
                check_fs_type(capability)
            except InvalidArgument as e:
                return Validation(False, e.message)
            if wants_multi_attach(capability) and not volume.multi_attach:
                return Validation(False, f"volume {volume_id} is not multi-attach")
        if parameters:
            try:
                parsed = P.parse_parameters(parameters)
            except InvalidArgument as e:
                return Validation(False, e.message)
            if parsed.volume_type != volume.volume_type:
                return Validation(
                    False, f"volume {volume_id} is {volume.volume_type}, not {parsed.volume_type}"
                )
        return Validation(True)

    def get(self, volume_id: str) -> VolumeStatus:
        if not volume_id:
            raise InvalidArgument("volume_id is required")
        return volume_status(self.cloud.get_volume(volume_id))  # CSI: does not exist → NOT_FOUND

    def list(self, max_entries: int = 0, starting_token: str = "") -> Page[VolumeStatus]:
        check_list_request(max_entries, starting_token, is_volume_id)
        volumes = read_all(lambda token: self.cloud.list_volumes(owner_filter(self.driver), EC2_PAGE, token))
        live = (
            v
            for v in volumes
            if v.state not in (VolumeState.DELETING, VolumeState.DELETED) and is_owned(v, self.driver)
        )
        page = page_by_id(live, lambda v: v.volume_id, max_entries, starting_token)
        return Page(tuple(volume_status(v) for v in page.items), page.next_token)
