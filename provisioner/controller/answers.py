"""What the controller's read RPCs answer: a volume's status (ListVolumes, ControllerGetVolume), a
validation (ValidateVolumeCapabilities), and the short-lived read cache ValidateVolumeCapabilities uses.

Values and one small cache over model values; it must not call the cloud except through the reader it
is given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from provisioner.model import GIB, ZONE_KEY, Segment, Volume, VolumeState
from provisioner.ports.clock import Clock

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
