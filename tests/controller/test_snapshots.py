"""CreateSnapshot / DeleteSnapshot / ListSnapshots / GetSnapshot rules, against the FakeCloud."""

from __future__ import annotations

import pytest

from provisioner import errors
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.controller.snapshots import (
    TAG_SNAPSHOT_CONTENT_NAME,
    TAG_SNAPSHOT_OBJECT_NAME,
    TAG_SNAPSHOT_OBJECT_NAMESPACE,
)
from provisioner.model import TAG_SNAPSHOT_NAME, ContentSource, Snapshot, VolumeState
from tests.controller.conftest import DRIVER
from tests.controller.helpers import create
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

UNKNOWN_VOLUME = "vol-0000000000000dead"
UNKNOWN_SNAPSHOT = "snap-0000000000000dead"


def test_create_snapshot_tags_and_metadata(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    snapshot = core.create_snapshot(
        "snapshot-1",
        volume_id,
        {
            "tagSpecification_1": "cost-center=42",
            "csi.storage.k8s.io/volumesnapshot/name": "backup",
            "csi.storage.k8s.io/volumesnapshot/namespace": "apps",
            "csi.storage.k8s.io/volumesnapshotcontent/name": "snapcontent-1",
        },
    )
    assert snapshot.source_volume_id == volume_id and snapshot.size_gib == 10 and snapshot.ready
    tags = cloud.snapshots[snapshot.snapshot_id].tags
    assert tags[TAG_SNAPSHOT_NAME] == "snapshot-1"
    assert tags["cost-center"] == "42" and tags["team"] == "storage"  # parameter tag and --extra-tags
    assert tags["kubernetes.io/cluster/test-cluster"] == "owned"
    assert tags[TAG_SNAPSHOT_OBJECT_NAME] == "backup"
    assert tags[TAG_SNAPSHOT_OBJECT_NAMESPACE] == "apps"
    assert tags[TAG_SNAPSHOT_CONTENT_NAME] == "snapcontent-1"


def test_create_snapshot_is_idempotent_by_name(core: ControllerCore, cloud: FakeCloud) -> None:
    first_volume = create(core, "pvc-a").volume_id
    other_volume = create(core, "pvc-b").volume_id
    first = core.create_snapshot("snap-a", first_volume, {})
    assert core.create_snapshot("snap-a", first_volume, {}).snapshot_id == first.snapshot_id
    assert cloud.calls["create_snapshot"] == 1
    with pytest.raises(errors.AlreadyExists, match=other_volume):
        core.create_snapshot("snap-a", other_volume, {})


def test_create_snapshot_returns_at_once_while_pending(cloud: FakeCloud, clock: FakeClock) -> None:
    cloud.snapshot_polls = 2
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig())
    volume_id = create(core).volume_id
    first = core.create_snapshot("s", volume_id, {})
    assert not first.ready and first.state == "pending"
    assert not core.create_snapshot("s", volume_id, {}).ready  # the retry reads it once more
    assert core.create_snapshot("s", volume_id, {}).ready


def test_create_snapshot_errors(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    with pytest.raises(errors.InvalidArgument, match="name"):
        core.create_snapshot("", volume_id, {})
    with pytest.raises(errors.InvalidArgument, match="source_volume_id"):
        core.create_snapshot("s", "", {})
    with pytest.raises(errors.InvalidArgument, match="'color'"):
        core.create_snapshot("s", volume_id, {"color": "blue"})
    with pytest.raises(errors.InvalidArgument, match="reserved"):
        core.create_snapshot("s", volume_id, {"tagSpecification_1": "CSIVolumeSnapshotName=x"})
    with pytest.raises(errors.NotFound):
        core.create_snapshot("s", UNKNOWN_VOLUME, {})
    cloud.fail("create_snapshot", errors.ResourceExhausted("SnapshotLimitExceeded"))
    with pytest.raises(errors.ResourceExhausted, match="SnapshotLimitExceeded"):
        core.create_snapshot("s", volume_id, {})


def test_a_foreign_snapshot_with_the_name_is_already_exists(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    cloud.create_snapshot(volume_id, {TAG_SNAPSHOT_NAME: "s"}, "someone else's")
    with pytest.raises(errors.AlreadyExists, match="not created by"):
        core.create_snapshot("s", volume_id, {})


def test_a_failed_snapshot_is_deleted_and_retried(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    snapshot = core.create_snapshot("s", volume_id, {})
    cloud.snapshots[snapshot.snapshot_id] = Snapshot(
        snapshot.snapshot_id, volume_id, 10, "error", tags=snapshot.tags
    )
    with pytest.raises(errors.Unavailable, match="error"):
        core.create_snapshot("s", volume_id, {})
    assert snapshot.snapshot_id not in cloud.snapshots
    assert core.create_snapshot("s", volume_id, {}).snapshot_id != snapshot.snapshot_id


def test_delete_snapshot(core: ControllerCore, cloud: FakeCloud) -> None:
    snapshot = core.create_snapshot("s", create(core).volume_id, {})
    core.delete_snapshot(snapshot.snapshot_id)
    assert cloud.snapshots == {}
    core.delete_snapshot(snapshot.snapshot_id)  # CSI: already gone → OK
    core.delete_snapshot("not-a-snapshot-id")  # CSI: malformed → OK
    with pytest.raises(errors.InvalidArgument):
        core.delete_snapshot("")


def test_delete_of_a_foreign_snapshot_is_refused(core: ControllerCore, cloud: FakeCloud) -> None:
    foreign = cloud.create_snapshot(create(core).volume_id, {}, "not ours")
    with pytest.raises(errors.FailedPrecondition, match="not created by"):
        core.delete_snapshot(foreign.snapshot_id)
    assert foreign.snapshot_id in cloud.snapshots


def test_delete_of_a_snapshot_being_restored_is_failed_precondition(
    cloud: FakeCloud, clock: FakeClock
) -> None:
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig())
    snapshot = core.create_snapshot("s", create(core).volume_id, {})
    restored = create(core, "restored", source=ContentSource(snapshot_id=snapshot.snapshot_id))
    entry = cloud.volumes[restored.volume_id]
    entry.volume = entry.volume.__class__(**{**entry.volume.__dict__, "state": VolumeState.CREATING})
    with pytest.raises(errors.FailedPrecondition, match=restored.volume_id):
        core.delete_snapshot(snapshot.snapshot_id)
    cloud.get_volume(restored.volume_id)  # creating → available
    core.delete_snapshot(snapshot.snapshot_id)
    assert snapshot.snapshot_id not in cloud.snapshots


def test_delete_while_this_process_restores_is_failed_precondition(
    core: ControllerCore, cloud: FakeCloud
) -> None:
    snapshot = core.create_snapshot("s", create(core).volume_id, {})
    with core.snapshotter.restoring(snapshot.snapshot_id), pytest.raises(errors.FailedPrecondition):
        core.delete_snapshot(snapshot.snapshot_id)
    core.delete_snapshot(snapshot.snapshot_id)


def _make(core: ControllerCore, cloud: FakeCloud, count: int) -> tuple[str, list[str]]:
    volume_id = create(core).volume_id
    return volume_id, sorted(core.create_snapshot(f"s{i}", volume_id, {}).snapshot_id for i in range(count))


def test_list_snapshots_pages_through_ours_only(core: ControllerCore, cloud: FakeCloud) -> None:
    _, ids = _make(core, cloud, 5)
    cloud.create_snapshot(create(core, "pvc-x").volume_id, {"owner": "someone else"}, "foreign")
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = core.list_snapshots(max_entries=2, starting_token=token)
        seen.extend(s.snapshot_id for s in page.items)
        pages += 1
        token = page.next_token
        if not token:
            break
    assert seen == ids and pages == 3
    assert [s.snapshot_id for s in core.list_snapshots().items] == ids


def test_list_snapshots_by_source_and_by_id(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_a, ids_a = _make(core, cloud, 2)
    volume_b = create(core, "pvc-b").volume_id
    b = core.create_snapshot("sb", volume_b, {})
    assert [s.snapshot_id for s in core.list_snapshots(source_volume_id=volume_a).items] == ids_a
    assert [s.snapshot_id for s in core.list_snapshots(snapshot_id=b.snapshot_id).items] == [b.snapshot_id]
    # CSI: an unknown or malformed id, or a mismatching source, is an empty list, not an error.
    assert core.list_snapshots(snapshot_id=UNKNOWN_SNAPSHOT).items == ()
    assert core.list_snapshots(snapshot_id="garbage").items == ()
    assert core.list_snapshots(snapshot_id=b.snapshot_id, source_volume_id=volume_a).items == ()
    assert core.list_snapshots(source_volume_id=UNKNOWN_VOLUME).items == ()


def test_list_snapshots_by_id_answers_a_pre_provisioned_snapshot(
    core: ControllerCore, cloud: FakeCloud
) -> None:
    foreign = cloud.create_snapshot(create(core).volume_id, {}, "imported")
    assert [s.snapshot_id for s in core.list_snapshots(snapshot_id=foreign.snapshot_id).items] == [
        foreign.snapshot_id
    ]
    assert core.list_snapshots().items == ()


def test_list_snapshots_bad_token_and_negative_limit(core: ControllerCore) -> None:
    with pytest.raises(errors.InvalidStartingToken):
        core.list_snapshots(starting_token="stok-3")
    with pytest.raises(errors.InvalidArgument):
        core.list_snapshots(max_entries=-1)


def test_get_snapshot(core: ControllerCore, cloud: FakeCloud) -> None:
    snapshot = core.create_snapshot("s", create(core).volume_id, {})
    assert core.get_snapshot(snapshot.snapshot_id) == snapshot
    for missing in (UNKNOWN_SNAPSHOT, "garbage"):
        with pytest.raises(errors.NotFound):
            core.get_snapshot(missing)
    with pytest.raises(errors.InvalidArgument):
        core.get_snapshot("")


def test_snapshots_of_another_cluster_are_not_listed(cloud: FakeCloud, clock: FakeClock) -> None:
    ours = ControllerCore(cloud, clock, DRIVER, ControllerConfig())
    theirs = ControllerCore(
        cloud, clock, DriverConfig(driver_name="zonal.csi.dev", cluster_id="other"), ControllerConfig()
    )
    mine = ours.create_snapshot("s", create(ours).volume_id, {})
    theirs.create_snapshot("t", create(theirs, "pvc-t").volume_id, {})
    assert [s.snapshot_id for s in ours.list_snapshots().items] == [mine.snapshot_id]
