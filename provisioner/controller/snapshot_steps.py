"""What CreateSnapshot does after EC2's CreateSnapshot: fast snapshot restores, then a lock.

As aws-ebs-csi-driver documents (docs/snapshot.md, "Failure Mode"): when EnableFastSnapshotRestores or
LockSnapshot fails, the snapshot is deleted and the error returned, so no snapshot is left without
what its class asked for. On top of that, zonal makes the whole call idempotent under retry:

* The snapshot is found by name first (as before), so a retry never makes a second one.
* A snapshot whose steps all succeeded carries ``zonal.dev/snapshot-steps=done``; a retry that finds
  it answers at once, with no further EC2 call (the snapshotter calls CreateSnapshot again and again
  until ``ready_to_use``).
* A snapshot found WITHOUT that tag while its class has steps is half-configured (a crash, a lost
  answer): the steps are completed, each only where missing — fast restores for the zones not yet
  enabling/enabled, the lock only if the snapshot is not locked — and the tag written; if a step fails
  now, the snapshot is deleted as on the first try.

Over ports only: no boto3, no grpc.
"""

from __future__ import annotations

import contextlib
import logging

from provisioner.controller.snapclass import SnapshotClass
from provisioner.errors import NotFound, ZonalError
from provisioner.model import Snapshot
from provisioner.ports.cloud import Cloud

TAG_STEPS = "zonal.dev/snapshot-steps"
STEPS_DONE = "done"


def steps_done(snapshot: Snapshot) -> bool:
    return snapshot.tags.get(TAG_STEPS) == STEPS_DONE


def finish(cloud: Cloud, snapshot: Snapshot, cls: SnapshotClass, log: logging.Logger) -> Snapshot:
    """Run the class's steps on ``snapshot`` (each only where still missing) and mark it done. On a
    failure the snapshot is deleted and the step's error raised with that said in its message."""
    if not cls.post_steps or steps_done(snapshot):
        return snapshot
    snapshot_id = snapshot.snapshot_id
    try:
        if cls.fast_restore_zones:
            enabled = cloud.fast_snapshot_restore_zones(snapshot_id)
            missing = [z for z in cls.fast_restore_zones if z not in enabled]
            if missing:
                cloud.enable_fast_snapshot_restores(snapshot_id, missing)
                log.info("snapshot %s: fast snapshot restore enabled in %s", snapshot_id, ", ".join(missing))
        if cls.lock is not None and not cloud.snapshot_lock_state(snapshot_id):
            cloud.lock_snapshot(snapshot_id, cls.lock)
            log.info("snapshot %s: locked in %s mode", snapshot_id, cls.lock.mode)
    except ZonalError as e:
        _discard(cloud, snapshot_id, e, log)
        # aws-ebs-csi-driver: a failed post-step hard-fails the request and deletes the snapshot.
        raise type(e)(f"{e.message}; snapshot {snapshot_id} was deleted, the call can be retried") from e
    # Not inside the try: the steps are done (a locked snapshot could not be deleted anyway); if this
    # write fails, a retry finds them in place and only writes the tag.
    cloud.create_tags(snapshot_id, {TAG_STEPS: STEPS_DONE})
    return Snapshot(
        snapshot.snapshot_id,
        snapshot.source_volume_id,
        snapshot.size_gib,
        snapshot.state,
        snapshot.created_at,
        {**snapshot.tags, TAG_STEPS: STEPS_DONE},
    )


def _discard(cloud: Cloud, snapshot_id: str, cause: ZonalError, log: logging.Logger) -> None:
    log.error("snapshot %s: %s; deleting it", snapshot_id, cause.message)
    try:
        with contextlib.suppress(NotFound):
            cloud.delete_snapshot(snapshot_id)
    except ZonalError as e:
        raise type(cause)(
            f"{cause.message}; deleting snapshot {snapshot_id} failed too ({e.message}): delete it by hand"
        ) from e
