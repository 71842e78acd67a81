"""CreateVolume's content sources: restore from a snapshot, clone another volume.

:meth:`Sources.plan` turns a ``ContentSource`` into a :class:`SourcePlan` (which snapshot to restore,
the smallest allowed size, the zone a clone must live in, the tags marking a clone); the controller
core then creates the volume as usual. A clone is made with EC2's CopyVolumes when the endpoint has
it, otherwise by snapshot-then-restore: an intermediate snapshot named ``clone:<volume name>`` (found
again by that name when the call is retried), a restore from it, and the snapshot's deletion once the
clone is available. Over ports only: no boto3, no grpc.

Documented choices:

* A restore or clone asked to be smaller than its source is made the source's size (CSI's
  ``required_bytes`` is a floor, so a larger volume satisfies the request); only when ``limit_bytes``
  is below the source's size is the answer OUT_OF_RANGE. No capacity range means the source's size.
* A snapshot still ``pending`` answers ABORTED (the CO retries); one in ``error`` INVALID_ARGUMENT
  (CSI: source incompatible).
* A clone lives in its source's zone; when the accessibility requirement does not allow that zone the
  answer is RESOURCE_EXHAUSTED naming the zone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner import params as P
from provisioner.config import DriverConfig
from provisioner.controller.ownership import TAG_SOURCE_VOLUME, ownership_tags
from provisioner.controller.snapshots import TAG_INTERMEDIATE
from provisioner.controller.waiter import Waiter
from provisioner.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OperationInProgress,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from provisioner.model import (
    GIB,
    TAG_SNAPSHOT_NAME,
    CapacityRange,
    ContentSource,
    Snapshot,
    TopologyRequirement,
    Zone,
)
from provisioner.ports.clock import Deadline
from provisioner.ports.cloud import Cloud
from provisioner.topology.zones import requested_zones, zone_in_requirement

CLONE_SNAPSHOT_PREFIX = "clone:"


@dataclass(frozen=True)
class SourcePlan:
    """What a content source means for the volume to create."""

    source: ContentSource | None = None
    snapshot_id: str = ""  # restore from this snapshot
    clone_of: str = ""  # copy this volume
    min_gib: int = 0  # the source's size
    zone: str = ""  # the zone the volume must be created in (a clone's source zone)
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"snapshot {self.snapshot_id}" if self.snapshot_id else f"volume {self.clone_of}"


def size_for(capacity: CapacityRange, volume_type: str, plan: SourcePlan) -> int:
    """The size to create; with a source at least the source's size (grown to it, see the docstring)."""
    if not plan.min_gib:
        return P.capacity_gib(capacity, volume_type)
    required = max(capacity.required_bytes, plan.min_gib * GIB)
    try:
        return P.capacity_gib(CapacityRange(required, capacity.limit_bytes), volume_type)
    except OutOfRange as e:
        # CSI: unsupported capacity_range → OUT_OF_RANGE.
        raise OutOfRange(f"the source {plan.label} is {plan.min_gib} GiB: {e.message}") from e


def intermediate_name(volume_name: str) -> str:
    return CLONE_SNAPSHOT_PREFIX + volume_name


class Sources:
    def __init__(self, cloud: Cloud, waiter: Waiter, driver: DriverConfig, logger: logging.Logger) -> None:
        self.cloud = cloud
        self.waiter = waiter
        self.driver = driver
        self.log = logger

    def plan(self, source: ContentSource | None, requirement: TopologyRequirement) -> SourcePlan:
        if source is None or not (source.snapshot_id or source.volume_id):
            return SourcePlan()
        if source.snapshot_id:
            try:
                snapshot = self.cloud.get_snapshot(source.snapshot_id)
            except NotFound as e:
                # CSI: source does not exist → NOT_FOUND.
                raise NotFound(f"source snapshot {source.snapshot_id} does not exist") from e
            if snapshot.state == "error":
                # CSI: source incompatible or not supported → INVALID_ARGUMENT.
                raise InvalidArgument(f"source snapshot {source.snapshot_id} is in EC2's error state")
            if not snapshot.ready:
                raise OperationInProgress(
                    f"source snapshot {source.snapshot_id} is still {snapshot.state}; retry"
                )
            return SourcePlan(source, snapshot_id=snapshot.snapshot_id, min_gib=snapshot.size_gib)
        try:
            volume = self.cloud.get_volume(source.volume_id)
        except NotFound as e:
            raise NotFound(f"source volume {source.volume_id} does not exist") from e
        if not requirement.empty:
            zone = next((z for z in self.cloud.availability_zones() if z.name == volume.zone), None)
            if not zone_in_requirement(zone or Zone(volume.zone, ""), requirement):
                # CSI: unable to provision in accessible_topology → RESOURCE_EXHAUSTED.
                raise ResourceExhausted(
                    f"a clone of {volume.volume_id} must be in its zone {volume.zone}, which the "
                    f"accessibility requirements do not allow [{', '.join(requested_zones(requirement))}]"
                )
        return SourcePlan(
            source,
            clone_of=volume.volume_id,
            min_gib=volume.size_gib,
            zone=volume.zone,
            tags={TAG_SOURCE_VOLUME: volume.volume_id},
        )

    def intermediate_snapshot(self, volume_name: str, source_volume_id: str, until: Deadline) -> Snapshot:
        """The completed snapshot of ``source_volume_id`` a fallback clone restores from (found or made)."""
        name = intermediate_name(volume_name)
        snapshot = self.cloud.find_snapshot_by_name(name)
        if snapshot is not None and (
            snapshot.source_volume_id != source_volume_id or snapshot.state == "error"
        ):
            with contextlib.suppress(NotFound):
                self.cloud.delete_snapshot(snapshot.snapshot_id)
            snapshot = None
        if snapshot is None:
            tags = {
                **self.driver.extra_tags,
                **ownership_tags(self.driver),
                TAG_SNAPSHOT_NAME: name,
                TAG_INTERMEDIATE: "true",
            }
            snapshot = self.cloud.create_snapshot(
                source_volume_id, tags, f"Intermediate snapshot for the clone {volume_name}"
            )
            self.log.info("clone %s: snapshot %s of %s", volume_name, snapshot.snapshot_id, source_volume_id)
        if snapshot.ready:
            return snapshot
        snapshot_id = snapshot.snapshot_id

        def completed() -> Snapshot | None:
            current = self.cloud.get_snapshot(snapshot_id)
            if current.state == "error":
                raise Unavailable(
                    f"the intermediate snapshot {snapshot_id} of the clone {volume_name} failed"
                )
            return current if current.ready else None

        return self.waiter.wait(
            until,
            completed,
            lambda: f"clone {volume_name}: snapshot {snapshot_id} of {source_volume_id} is still pending",
        )

    def remove_intermediate(self, volume_name: str) -> None:
        """Delete the intermediate snapshot of a finished clone, if there is one (best effort)."""
        snapshot = self.cloud.find_snapshot_by_name(intermediate_name(volume_name))
        if snapshot is None or snapshot.tags.get(TAG_INTERMEDIATE) != "true":
            return
        try:
            self.cloud.delete_snapshot(snapshot.snapshot_id)
        except NotFound:
            return
        except (FailedPrecondition, Unavailable) as e:
            self.log.warning(
                "clone %s: could not delete snapshot %s: %s", volume_name, snapshot.snapshot_id, e
            )
            return
        self.log.info("clone %s: deleted intermediate snapshot %s", volume_name, snapshot.snapshot_id)
