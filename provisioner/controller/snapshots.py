"""CreateSnapshot / DeleteSnapshot / ListSnapshots / GetSnapshot over the Cloud port.

Idempotency is by name: every snapshot carries ``CSIVolumeSnapshotName=<name>``; a retry finds it and
answers with it (same source volume) or ALREADY_EXISTS (another source). CreateSnapshot never waits for
``completed``: the snapshotter polls ``ready_to_use`` through ListSnapshots. Over ports only: no
boto3, no grpc.

Documented choices:

* ListSnapshots without ``snapshot_id`` lists only this driver's snapshots (ownership tags), sorted by
  id; its token is the id of the next entry, like ListVolumes. With a ``snapshot_id`` (and GetSnapshot)
  any snapshot the account can see is answered, because a pre-provisioned VolumeSnapshotContent names
  a snapshot that the driver did not create and the snapshotter reads its status this way.
* DeleteSnapshot refuses (FAILED_PRECONDITION) a snapshot the driver did not create, unless foreign
  deletes are allowed (the same switch as for volumes), and one that a volume is being restored from.
* A snapshot found by name in EC2's ``error`` state is deleted and the call answers UNAVAILABLE, so the
  retry creates a fresh one.
* VolumeSnapshotClass keys (tags, fast snapshot restores, Outpost, lock) are parsed in
  :mod:`.snapclass`; fast restores and the lock run after CreateSnapshot, in :mod:`.snapshot_steps`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping

from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import drivertags, snapshot_steps
from provisioner.controller.checks import check_tag_count
from provisioner.controller.ownership import check_deletable, is_owned, owner_filter, ownership_tags, owns
from provisioner.controller.paging import EC2_PAGE, check_list_request, page_by_id, read_all
from provisioner.controller.snapclass import (
    TAG_SNAPSHOT_CONTENT_NAME as TAG_SNAPSHOT_CONTENT_NAME,  # re-exported: the tags a snapshot gets
)
from provisioner.controller.snapclass import TAG_SNAPSHOT_OBJECT_NAME as TAG_SNAPSHOT_OBJECT_NAME
from provisioner.controller.snapclass import TAG_SNAPSHOT_OBJECT_NAMESPACE as TAG_SNAPSHOT_OBJECT_NAMESPACE
from provisioner.controller.snapclass import SnapshotClass, parse_snapshot_class
from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    shown,
)
from provisioner.model import TAG_SNAPSHOT_NAME, Page, Snapshot, VolumeState, is_snapshot_id
from provisioner.ports.clock import Clock, SystemClock
from provisioner.ports.cloud import Cloud
from provisioner.ports.csi import InFlight

# Marks the intermediate snapshot of a snapshot-then-restore clone (see sources.py); never listed.
TAG_INTERMEDIATE = "zonal.dev/intermediate"


def is_owned_snapshot(snapshot: Snapshot, driver: DriverConfig) -> bool:
    return owns(snapshot.tags, driver, TAG_SNAPSHOT_NAME)


class Snapshotter:
    def __init__(
        self,
        cloud: Cloud,
        driver: DriverConfig,
        config: ControllerConfig,
        inflight: InFlight,
        logger: logging.Logger,
        clock: Clock | None = None,
    ) -> None:
        self.cloud = cloud
        self.driver = driver
        self.config = config
        self.inflight = inflight
        self.log = logger
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._restoring: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def restoring(self, snapshot_id: str) -> Iterator[None]:
        """Mark ``snapshot_id`` as the source of a restore running in this process."""
        with self._lock:
            self._restoring[snapshot_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._restoring[snapshot_id] -= 1
                if self._restoring[snapshot_id] <= 0:
                    del self._restoring[snapshot_id]

    def create(self, name: str, source_volume_id: str, parameters: Mapping[str, str]) -> Snapshot:
        # CSI: missing name or source → INVALID_ARGUMENT.
        if not name:
            raise InvalidArgument("name is required")
        if not source_volume_id:
            raise InvalidArgument("source_volume_id is required")
        cls = parse_snapshot_class(parameters, self.clock.time())
        self._check_zones(cls)
        with self.inflight.hold(f"snapshot:{name}", f"creating snapshot {name}"):
            existing = self.cloud.find_snapshot_by_name(name)
            if existing is not None:
                existing = self._existing(existing, name, source_volume_id)
                return snapshot_steps.finish(self.cloud, existing, cls, self.log)
            tags = {
                **drivertags.cluster_tags(self.driver, name),
                **drivertags.extra_tags(self.driver, cls.fields),
                **cls.tags,
                **ownership_tags(self.driver),
                TAG_SNAPSHOT_NAME: name,
            }
            check_tag_count(tags, "snapshot")
            # CSI: unknown source volume → NOT_FOUND; SnapshotLimitExceeded → RESOURCE_EXHAUSTED
            # (both raised by the port).
            snapshot = self.cloud.create_snapshot(
                source_volume_id, tags, f"Created by {self.driver.driver_name} for {name}", cls.outpost_arn
            )
            self.log.info("created snapshot %s (%s) of %s", snapshot.snapshot_id, name, source_volume_id)
            return snapshot_steps.finish(self.cloud, snapshot, cls, self.log)

    def _check_zones(self, cls: SnapshotClass) -> None:
        """aws-ebs-csi-driver: fast-restore zones the region lacks are refused before any snapshot."""
        if not cls.fast_restore_zones:
            return
        known = {z.name for z in self.cloud.availability_zones()}
        unknown = [z for z in cls.fast_restore_zones if z not in known]
        if unknown:
            raise InvalidArgument(
                f"parameter {shown(cls.fast_restore_key)}: zone(s) {', '.join(map(shown, unknown))} are not "
                f"in region {self.cloud.region} (its zones: {', '.join(sorted(known))})"
            )

    def _existing(self, existing: Snapshot, name: str, source_volume_id: str) -> Snapshot:
        if not is_owned_snapshot(existing, self.driver):
            raise AlreadyExists(
                f"snapshot {existing.snapshot_id} carries the name {name} but was not created by "
                f"{self.driver.driver_name}"
            )
        if existing.source_volume_id != source_volume_id:
            # CSI: snapshot already exists but is incompatible → ALREADY_EXISTS.
            raise AlreadyExists(
                f"snapshot {name} already exists as {existing.snapshot_id} of volume "
                f"{existing.source_volume_id}, not of {source_volume_id}"
            )
        if existing.state == "error":
            with contextlib.suppress(NotFound):
                self.cloud.delete_snapshot(existing.snapshot_id)
            raise Unavailable(
                f"snapshot {existing.snapshot_id} ({name}) failed in EC2 (state error) and was deleted; retry"
            )
        return existing

    def delete(self, snapshot_id: str) -> None:
        if not snapshot_id:
            raise InvalidArgument("snapshot_id is required")
        # CSI: an id the plugin cannot parse does not exist → OK.
        if not is_snapshot_id(snapshot_id):
            return
        with self.inflight.hold(f"snapshot-id:{snapshot_id}", f"deleting snapshot {snapshot_id}"):
            try:
                snapshot = self.cloud.get_snapshot(snapshot_id)
            except NotFound:
                return  # CSI: deleting a snapshot that does not exist → OK
            deletable = self.config.allow_foreign_volume_delete
            check_deletable(
                f"snapshot {snapshot_id}", snapshot.tags, TAG_SNAPSHOT_NAME, self.driver, deletable
            )
            self._check_not_restoring(snapshot_id)
            try:
                # EC2's InvalidSnapshot.InUse (e.g. an AMI uses it) → FAILED_PRECONDITION via the port.
                self.cloud.delete_snapshot(snapshot_id)
            except NotFound:
                return
            self.log.info("deleted snapshot %s", snapshot_id)

    def _check_not_restoring(self, snapshot_id: str) -> None:
        """CSI: snapshot in use → FAILED_PRECONDITION: a volume is still being restored from it."""
        with self._lock:
            local = self._restoring.get(snapshot_id, 0) > 0
        creating = [] if local else self._creating_from(snapshot_id)
        if local or creating:
            which = ", ".join(creating) or "a volume"
            raise FailedPrecondition(
                f"snapshot {snapshot_id} is in use: {which} is still being restored from it; retry later"
            )

    def _creating_from(self, snapshot_id: str) -> list[str]:
        volumes = read_all(lambda token: self.cloud.list_volumes(owner_filter(self.driver), EC2_PAGE, token))
        return [
            v.volume_id
            for v in volumes
            if v.snapshot_id == snapshot_id and v.state is VolumeState.CREATING and is_owned(v, self.driver)
        ]

    def get(self, snapshot_id: str) -> Snapshot:
        if not snapshot_id:
            raise InvalidArgument("snapshot_id is required")
        if not is_snapshot_id(snapshot_id):
            raise NotFound(f"snapshot {shown(snapshot_id)} does not exist")  # CSI: does not exist → NOT_FOUND
        return self.cloud.get_snapshot(snapshot_id)

    def list(
        self,
        snapshot_id: str = "",
        source_volume_id: str = "",
        max_entries: int = 0,
        starting_token: str = "",
    ) -> Page[Snapshot]:
        check_list_request(max_entries, starting_token, is_snapshot_id)
        if snapshot_id:
            # CSI: an unknown snapshot id is not an error, just an empty list.
            try:
                snapshot = self.get(snapshot_id)
            except NotFound:
                return Page(())
            if source_volume_id and snapshot.source_volume_id != source_volume_id:
                return Page(())
            if starting_token and snapshot.snapshot_id < starting_token:
                return Page(())
            return Page((snapshot,))
        snapshots = read_all(
            lambda token: self.cloud.list_snapshots(
                owner_filter(self.driver), source_volume_id, EC2_PAGE, token
            )
        )
        # A clone's intermediate snapshot is an implementation detail: never listed.
        visible = {
            s.snapshot_id: s
            for s in snapshots
            if s.tags.get(TAG_INTERMEDIATE) != "true" and is_owned_snapshot(s, self.driver)
        }
        return page_by_id(visible.values(), lambda s: s.snapshot_id, max_entries, starting_token)
