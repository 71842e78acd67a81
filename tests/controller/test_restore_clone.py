"""CreateVolume from a snapshot (restore) or from a volume (clone), and mutable_parameters."""

from __future__ import annotations

import pytest

from provisioner import errors
from provisioner.controller import ControllerCore
from provisioner.controller.ownership import TAG_SOURCE_VOLUME
from provisioner.controller.snapshots import TAG_INTERMEDIATE
from provisioner.model import GIB, TAG_SNAPSHOT_NAME, ContentSource, TopologyRequirement
from provisioner.ports.clock import Deadline
from tests.controller.helpers import create, zones
from tests.fakes.cloud import FakeCloud


def _snapshot(core: ControllerCore, size_gib: int = 10) -> tuple[str, str]:
    volume_id = create(core, "origin", size_gib=size_gib, requirement=_in("us-east-1b")).volume_id
    return volume_id, core.create_snapshot("snap-1", volume_id, {}).snapshot_id


def _in(*names: str) -> TopologyRequirement:
    return TopologyRequirement(requisite=zones(*names))


def test_restore_bigger_echoes_the_source(core: ControllerCore, cloud: FakeCloud) -> None:
    _, snapshot_id = _snapshot(core)
    source = ContentSource(snapshot_id=snapshot_id)
    created = create(core, "restored", size_gib=20, source=source)
    assert created.content_source == source
    assert created.capacity_bytes == 20 * GIB
    volume = cloud.volumes[created.volume_id].volume
    assert volume.snapshot_id == snapshot_id and volume.size_gib == 20
    # idempotent by name, with the same source
    again = create(core, "restored", size_gib=20, source=source)
    assert again.volume_id == created.volume_id and again.content_source == source


def test_restore_smaller_than_the_snapshot_grows_to_it(core: ControllerCore, cloud: FakeCloud) -> None:
    _, snapshot_id = _snapshot(core, size_gib=30)
    created = create(core, "restored", size_gib=5, source=ContentSource(snapshot_id=snapshot_id))
    assert created.capacity_bytes == 30 * GIB
    # no capacity range at all: the snapshot's size, not the 100 GiB default
    plain = create(core, "plain", size_gib=0, source=ContentSource(snapshot_id=snapshot_id))
    assert plain.capacity_bytes == 30 * GIB


def test_restore_with_a_limit_below_the_snapshot_is_out_of_range(core: ControllerCore) -> None:
    _, snapshot_id = _snapshot(core, size_gib=30)
    with pytest.raises(errors.OutOfRange, match="30 GiB"):
        create(core, "restored", size_gib=5, limit_gib=20, source=ContentSource(snapshot_id=snapshot_id))


def test_restore_errors(core: ControllerCore, cloud: FakeCloud) -> None:
    _, snapshot_id = _snapshot(core)
    with pytest.raises(errors.NotFound, match="snap-0000000000000dead"):
        create(core, "r", source=ContentSource(snapshot_id="snap-0000000000000dead"))
    cloud.snapshot_polls = 5
    pending = core.create_snapshot("pending", cloud.volumes[next(iter(cloud.volumes))].volume.volume_id, {})
    with pytest.raises(errors.OperationInProgress, match="pending"):
        create(core, "r", source=ContentSource(snapshot_id=pending.snapshot_id))
    # a volume of this name restored from another snapshot is incompatible
    create(core, "r2", source=ContentSource(snapshot_id=snapshot_id))
    with pytest.raises(errors.AlreadyExists, match="source snapshot"):
        create(core, "r2")


def test_clone_uses_copy_volumes_in_the_source_zone(core: ControllerCore, cloud: FakeCloud) -> None:
    origin = create(core, "origin", size_gib=8, requirement=_in("us-east-1c")).volume_id
    source = ContentSource(volume_id=origin)
    clone = create(core, "clone", size_gib=8, source=source)
    volume = cloud.volumes[clone.volume_id].volume
    assert volume.zone == "us-east-1c" and volume.tags[TAG_SOURCE_VOLUME] == origin
    assert clone.content_source == source
    assert [c[0] for c in cloud.copied] == [origin]
    assert cloud.snapshots == {}
    assert create(core, "clone", size_gib=8, source=source).volume_id == clone.volume_id
    assert len(cloud.copied) == 1  # a clone's retry finds the first clone by name


def test_clone_falls_back_to_snapshot_then_restore(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.supports_copy = False
    origin = create(core, "origin", size_gib=8, requirement=_in("us-east-1a")).volume_id
    clone = create(core, "clone", size_gib=12, source=ContentSource(volume_id=origin))
    volume = cloud.volumes[clone.volume_id].volume
    assert volume.zone == "us-east-1a" and volume.size_gib == 12 and volume.snapshot_id
    assert volume.tags[TAG_SOURCE_VOLUME] == origin
    assert cloud.snapshots == {}, "the intermediate snapshot is cleaned up"
    assert cloud.calls["create_snapshot"] == 1 and cloud.calls["delete_snapshot"] == 1
    # idempotent: the same name and source answers the same clone although its SnapshotId is the
    # (deleted) intermediate snapshot
    assert (
        create(core, "clone", size_gib=12, source=ContentSource(volume_id=origin)).volume_id
        == clone.volume_id
    )
    other = create(core, "other", requirement=_in("us-east-1a")).volume_id
    with pytest.raises(errors.AlreadyExists, match="source volume"):
        create(core, "clone", size_gib=12, source=ContentSource(volume_id=other))


def test_fallback_clone_resumes_after_a_deadline(cloud: FakeCloud, core: ControllerCore) -> None:
    cloud.supports_copy = False
    origin = create(core, "origin", requirement=_in("us-east-1a")).volume_id
    cloud.snapshot_polls = 100
    with pytest.raises(errors.DeadlineExceeded, match="pending"):
        create(core, "clone", source=ContentSource(volume_id=origin), deadline=Deadline(core.clock, 3.0))
    (snapshot,) = cloud.snapshots.values()
    assert snapshot.tags[TAG_INTERMEDIATE] == "true" and snapshot.tags[TAG_SNAPSHOT_NAME] == "clone:clone"
    assert core.list_snapshots().items == (), "intermediate snapshots are never listed"
    cloud.snapshot_polls = 0
    cloud.snapshots[snapshot.snapshot_id] = snapshot.__class__(**{**snapshot.__dict__, "state": "completed"})
    clone = create(core, "clone", source=ContentSource(volume_id=origin))
    assert cloud.volumes[clone.volume_id].volume.snapshot_id == snapshot.snapshot_id
    assert cloud.calls["create_snapshot"] == 1 and cloud.snapshots == {}


def test_clone_outside_the_allowed_topology_is_resource_exhausted(core: ControllerCore) -> None:
    origin = create(core, "origin", requirement=_in("us-east-1a")).volume_id
    with pytest.raises(errors.ResourceExhausted, match="us-east-1a"):
        create(core, "clone", source=ContentSource(volume_id=origin), requirement=_in("us-east-1b"))


def test_clone_errors(core: ControllerCore, cloud: FakeCloud) -> None:
    with pytest.raises(errors.NotFound, match="source volume"):
        create(core, "clone", source=ContentSource(volume_id="vol-0000000000000dead"))
    origin = create(core, "origin", size_gib=50).volume_id
    with pytest.raises(errors.OutOfRange, match="50 GiB"):
        create(core, "clone", size_gib=10, limit_gib=20, source=ContentSource(volume_id=origin))


def test_mutable_parameters_win_over_parameters(core: ControllerCore, cloud: FakeCloud) -> None:
    created = create(
        core,
        parameters={"type": "gp3", "iops": "4000", "throughput": "200"},
        mutable={"IOPS": "5000", "throughput": "300"},
    )
    volume = cloud.volumes[created.volume_id].volume
    assert (volume.iops, volume.throughput) == (5000, 300)
    with pytest.raises(errors.InvalidArgument, match="bogus"):
        create(core, "pvc-2", mutable={"bogus": "1"})
