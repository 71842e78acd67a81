"""Pieces shared by the controller core's modules: result values, the in-flight guard, the waiter,
capability checks and the ownership rule.

Everything here works over ports and model values only; it must not import an adapter, grpc or boto3.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from provisioner.config import EBS_DRIVER_NAME, ControllerConfig, DriverConfig
from provisioner.errors import DeadlineExceeded, InvalidArgument
from provisioner.model import (
    GIB,
    TAG_CLUSTER_PREFIX,
    TAG_DRIVER,
    TAG_VOLUME_NAME,
    TAG_ZONAL_DRIVER,
    ZONE_KEY,
    AccessMode,
    AccessType,
    Segment,
    Volume,
    VolumeCapability,
    VolumeState,
)
from provisioner.ports.clock import Clock, Deadline

R = TypeVar("R")

# Written on a clone: the volume it was copied from (a snapshot-then-restore clone's own SnapshotId
# names the intermediate snapshot, so idempotency compares this tag instead).
TAG_SOURCE_VOLUME = "zonal.dev/source-volume"

# EC2: at most 50 user tags on one resource.
MAX_TAGS = 50

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


def check_capability(capability: VolumeCapability) -> None:
    """SINGLE_NODE_WRITER for mount and block; MULTI_NODE_MULTI_WRITER for block only (EBS
    multi-attach), as aws-ebs-csi-driver. Raises InvalidArgument otherwise."""
    mode = capability.access_mode
    if mode is AccessMode.SINGLE_NODE_WRITER:
        return
    if mode is AccessMode.MULTI_NODE_MULTI_WRITER:
        if capability.access_type is AccessType.BLOCK:
            return
        raise InvalidArgument("access mode MULTI_NODE_MULTI_WRITER is supported for block volumes only")
    raise InvalidArgument(f"access mode {mode.name} is not supported")


def check_tag_count(tags: Mapping[str, str], what: str) -> None:
    """EC2 allows at most 50 tags on a volume or snapshot. Counted before the call, so too many
    tagSpecification_N is INVALID_ARGUMENT naming the cause, not EC2's TagLimitExceeded after it."""
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(
            f"the {what} would carry {len(tags)} tags (the driver's own, --extra-tags and "
            f"tagSpecification_N); EC2 allows at most {MAX_TAGS}"
        )


def wants_multi_attach(capability: VolumeCapability) -> bool:
    return capability.access_mode is AccessMode.MULTI_NODE_MULTI_WRITER


def ownership_tags(driver: DriverConfig) -> dict[str, str]:
    """Tags marking a volume as created by this driver (and cluster, when one is configured)."""
    tags = {TAG_ZONAL_DRIVER: driver.driver_name, TAG_DRIVER: "true"}
    if driver.cluster_id:
        tags[TAG_CLUSTER_PREFIX + driver.cluster_id] = "owned"
    return tags


def owner_filter(driver: DriverConfig) -> dict[str, str]:
    """The EC2 tag filter that selects at least every volume or snapshot this driver owns.

    Listings keep only what :func:`owns` accepts among them: as ``ebs.csi.aws.com`` the filter is
    aws-ebs-csi-driver's own tag, which zonal writes too, so it also selects objects of zonal instances
    running under other driver names."""
    tags = (
        {TAG_DRIVER: "true"}
        if driver.driver_name == EBS_DRIVER_NAME
        else {TAG_ZONAL_DRIVER: driver.driver_name}
    )
    if driver.cluster_id:
        tags[TAG_CLUSTER_PREFIX + driver.cluster_id] = "owned"
    return tags


def owns(tags: Mapping[str, str], driver: DriverConfig, name_tag: str) -> bool:
    """Whether the volume or snapshot carrying ``tags`` was made by this driver (and cluster).

    Made by zonal: ``zonal.dev/driver`` names this driver. Taking over from aws-ebs-csi-driver (zonal
    runs as ``ebs.csi.aws.com``): also what that driver makes, its name tag (``CSIVolumeName`` or
    ``CSIVolumeSnapshotName``) with ``ebs.csi.aws.com/cluster=true`` and no ``zonal.dev/driver`` (a
    zonal object of another driver name stays that driver's). With a cluster id, both drivers also
    write ``kubernetes.io/cluster/<id>=owned``, which must match."""
    if driver.cluster_id and tags.get(TAG_CLUSTER_PREFIX + driver.cluster_id) != "owned":
        return False
    made_by = tags.get(TAG_ZONAL_DRIVER)
    if made_by is not None:
        return made_by == driver.driver_name
    return (
        driver.driver_name == EBS_DRIVER_NAME and tags.get(TAG_DRIVER) == "true" and bool(tags.get(name_tag))
    )


def why_not_owned(tags: Mapping[str, str], driver: DriverConfig, name_tag: str) -> str:
    """What the tags say instead, for the refusal message (the operator decides what to do)."""
    cluster_tag = TAG_CLUSTER_PREFIX + driver.cluster_id
    if driver.cluster_id and tags.get(cluster_tag) != "owned":
        return f"it is not tagged {cluster_tag}=owned"
    made_by = tags.get(TAG_ZONAL_DRIVER)
    if made_by is not None:
        return f"its {TAG_ZONAL_DRIVER} tag names {made_by}"
    if tags.get(TAG_DRIVER) == "true" and tags.get(name_tag):
        return f"it carries aws-ebs-csi-driver's tags (zonal owns those only as {EBS_DRIVER_NAME})"
    return "it carries no ownership tag (made outside Kubernetes or by another tool)"


def is_owned(volume: Volume, driver: DriverConfig) -> bool:
    return owns(volume.tags, driver, TAG_VOLUME_NAME)


def volume_label(volume: Volume) -> str:
    name = volume.tags.get(TAG_VOLUME_NAME)
    return f"{volume.volume_id} ({name})" if name else volume.volume_id


class Waiter:
    """Polls until a check returns a value: an initial delay, then exponential backoff capped at
    ``wait_max_delay``, never sleeping past the deadline."""

    def __init__(self, clock: Clock, config: ControllerConfig) -> None:
        self.clock = clock
        self.config = config

    def deadline(self, deadline: Deadline | None) -> Deadline:
        """The caller's deadline, or the configured default wait when the call carries none."""
        if deadline is None or deadline.at is None:
            return Deadline(self.clock, self.config.default_wait_timeout)
        return deadline

    def sooner(self, deadline: Deadline, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now, or ``deadline`` if that comes first."""
        remaining = deadline.remaining()
        return Deadline(self.clock, seconds if remaining is None else min(seconds, remaining))

    def wait(self, until: Deadline, check: Callable[[], R | None], what: Callable[[], str]) -> R:
        """Call ``check`` after each pause until it returns non-None. Raises DeadlineExceeded with
        ``what()`` (a description of the state still awaited) when ``until`` passes."""
        delay = self.config.wait_initial_delay
        while True:
            pause = until.bounded(delay)
            if pause <= 0:
                raise DeadlineExceeded(what())
            self.clock.sleep(pause)
            result = check()
            if result is not None:
                return result
            delay = min(delay * self.config.wait_factor, self.config.wait_max_delay)


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
