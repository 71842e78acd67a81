"""CreateSnapshot's post-steps (fast snapshot restores, a lock) under failures and retries, against the
FakeCloud: never two snapshots, never one left half-configured."""

from __future__ import annotations

import pytest

from provisioner import errors
from provisioner.controller import ControllerCore
from provisioner.controller.snapshot_steps import STEPS_DONE, TAG_STEPS
from tests.controller.helpers import create
from tests.fakes.cloud import FakeCloud

LOCK = {"lockMode": "governance", "lockDuration": "7"}
FSR = {"fastSnapshotRestoreAvailabilityZones": "us-east-1a,us-east-1b"}


def test_steps_run_once_and_a_retry_costs_no_ec2_call(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    first = core.create_snapshot("snap-1", volume_id, {**LOCK, **FSR})
    assert cloud.snapshots[first.snapshot_id].tags[TAG_STEPS] == STEPS_DONE
    assert cloud.fast_restores[first.snapshot_id] == {"us-east-1a", "us-east-1b"}
    calls = dict(cloud.calls)
    again = core.create_snapshot("snap-1", volume_id, {**LOCK, **FSR})  # the snapshotter polls like this
    assert again.snapshot_id == first.snapshot_id
    changed = {k for k, v in cloud.calls.items() if calls.get(k) != v}
    # No lock, FSR or tag call again (the region's zones are cached by the EC2 adapter).
    assert changed == {"find_snapshot_by_name", "availability_zones"}


def test_a_half_configured_snapshot_is_completed_on_retry(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    cloud.fail("lock_snapshot", errors.Unavailable("RequestLimitExceeded"))
    cloud.fail("delete_snapshot", errors.Unavailable("RequestLimitExceeded"))
    with pytest.raises(errors.Unavailable, match="delete it by hand"):
        core.create_snapshot("snap-1", volume_id, {**LOCK, **FSR})
    (left,) = cloud.snapshots.values()  # the crash-like case: FSR on, no lock, no done tag
    assert TAG_STEPS not in left.tags and cloud.fast_restores[left.snapshot_id]
    done = core.create_snapshot("snap-1", volume_id, {**LOCK, **FSR})
    assert done.snapshot_id == left.snapshot_id and len(cloud.snapshots) == 1
    assert cloud.locks[left.snapshot_id].mode == "governance"
    assert cloud.calls["enable_fast_snapshot_restores"] == 1  # the zones already on were not asked again
    assert cloud.snapshots[left.snapshot_id].tags[TAG_STEPS] == STEPS_DONE


def test_only_missing_zones_are_enabled(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    snapshot = core.create_snapshot(
        "snap-1", volume_id, {"fastSnapshotRestoreAvailabilityZones": "us-east-1a"}
    )
    cloud.delete_tags(snapshot.snapshot_id, [TAG_STEPS])  # as if the class gained a zone before a retry
    core.create_snapshot("snap-1", volume_id, FSR)
    assert cloud.fast_restores[snapshot.snapshot_id] == {"us-east-1a", "us-east-1b"}
    assert cloud.calls["enable_fast_snapshot_restores"] == 2


def test_failed_step_deletes_the_snapshot_and_keeps_the_error_kind(
    core: ControllerCore, cloud: FakeCloud
) -> None:
    volume_id = create(core).volume_id
    cloud.fail("enable_fast_snapshot_restores", errors.ResourceExhausted("FastSnapshotRestoreLimitExceeded"))
    with pytest.raises(errors.ResourceExhausted, match="was deleted, the call can be retried"):
        core.create_snapshot("snap-1", volume_id, {**FSR, **LOCK})
    assert cloud.snapshots == {} and cloud.calls["lock_snapshot"] == 0
    retried = core.create_snapshot("snap-1", volume_id, {**FSR, **LOCK})  # a fresh, complete snapshot
    assert cloud.locks[retried.snapshot_id].duration_days == 7


def test_a_failed_done_tag_keeps_the_locked_snapshot(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    cloud.fail("create_tags", errors.Unavailable("RequestLimitExceeded"))
    with pytest.raises(errors.Unavailable):
        core.create_snapshot("snap-1", volume_id, LOCK)
    (kept,) = cloud.snapshots.values()
    assert cloud.calls["delete_snapshot"] == 0 and kept.snapshot_id in cloud.locks
    core.create_snapshot("snap-1", volume_id, LOCK)
    assert (
        cloud.calls["lock_snapshot"] == 1 and cloud.snapshots[kept.snapshot_id].tags[TAG_STEPS] == STEPS_DONE
    )


def test_a_locked_snapshot_cannot_be_deleted(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    snapshot = core.create_snapshot("snap-1", volume_id, LOCK)
    with pytest.raises(errors.FailedPrecondition, match="locked"):
        core.delete_snapshot(snapshot.snapshot_id)


@pytest.mark.parametrize(
    ("parameters", "complaint"),
    [
        ({"lockDuration": "7"}, "'lockDuration' needs lockMode"),
        ({"lockMode": "governance"}, "exactly one of lockDuration or lockExpirationDate"),
        ({**LOCK, "lockExpirationDate": "2030-01-01T00:00:00Z"}, "exactly one"),
        ({**LOCK, "lockCoolOffPeriod": "2"}, "needs lockMode compliance"),
        ({"lockMode": "compliance", "lockExpirationDate": "2001-01-01T00:00:00Z"}, "not in the future"),
        ({"lockMode": "compliance", "lockExpirationDate": "2030-01-01T00:00:00"}, "no time zone"),
        ({"lockMode": "governance", "snapshotLockMode": "governance", "lockDuration": "1"}, "given twice"),
        ({"fastSnapshotRestoreAvailabilityZones": "us-east-1a,,"}, "empty zone"),
        ({"fastSnapshotRestoreAvailabilityZones": "eu-west-1a"}, "not in region us-east-1"),
        ({"outpostArn": "arn:aws:outposts"}, "not a valid ARN"),
        ({"tagSpecification_1": "a={{ .PVName }}"}, "unknown field .PVName"),
        ({"volumeSnapshotClassName": "x"}, "unknown snapshot parameter"),
    ],
)
def test_bad_snapshot_classes_make_no_snapshot(
    core: ControllerCore, cloud: FakeCloud, parameters: dict[str, str], complaint: str
) -> None:
    volume_id = create(core).volume_id
    with pytest.raises(errors.InvalidArgument, match=complaint.replace(".", r"\.")):
        core.create_snapshot("snap-1", volume_id, parameters)
    assert cloud.calls["create_snapshot"] == 0
