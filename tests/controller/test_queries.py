"""ListVolumes, ControllerGetVolume, ValidateVolumeCapabilities, Probe and the capability list."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner import errors
from provisioner.config import ControllerConfig
from provisioner.controller import ControllerCore
from provisioner.model import GIB, ZONE_KEY, TopologyRequirement, Volume, VolumeState
from provisioner.ports.csi import ControllerCapability
from tests.controller.helpers import BLOCK_RWX, MOUNT_ROX, MOUNT_RWO, create, zones
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

NODE = "i-0123456789abcdef0"


def test_list_pages_through_this_drivers_volumes(core: ControllerCore, cloud: FakeCloud) -> None:
    ids = sorted(create(core, name=f"pvc-{i}").volume_id for i in range(5))
    cloud.add_volume(Volume(cloud.new_volume_id(), 1, "us-east-1a", VolumeState.AVAILABLE))  # foreign
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = core.list_volumes(max_entries=2, starting_token=token)
        assert len(page.items) <= 2
        seen.extend(v.volume_id for v in page.items)
        pages += 1
        token = page.next_token
        if not token:
            break
    assert seen == ids and pages == 3
    assert [v.volume_id for v in core.list_volumes().items] == ids


def test_list_token_survives_deletion_of_the_volume_it_names(core: ControllerCore) -> None:
    ids = sorted(create(core, name=f"pvc-{i}").volume_id for i in range(3))
    page = core.list_volumes(max_entries=1)
    assert page.next_token == ids[1]
    core.delete_volume(ids[1])
    assert [v.volume_id for v in core.list_volumes(starting_token=page.next_token).items] == [ids[2]]


def test_list_follows_cloud_pages(core: ControllerCore, cloud: FakeCloud) -> None:
    for i in range(3):
        create(core, name=f"pvc-{i}")
    assert len(core.list_volumes().items) == 3
    assert cloud.calls["list_volumes"] == 1


@pytest.mark.parametrize("token", ["garbage", "vtok-1", "vol-ZZ"])
def test_list_bad_token_is_aborted(core: ControllerCore, token: str) -> None:
    with pytest.raises(errors.InvalidStartingToken) as info:
        core.list_volumes(starting_token=token)
    assert isinstance(info.value, errors.OperationInProgress)  # → ABORTED through the one table


def test_list_negative_max_entries_is_invalid(core: ControllerCore) -> None:
    with pytest.raises(errors.InvalidArgument):
        core.list_volumes(max_entries=-1)


def test_list_and_get_report_published_nodes_and_topology(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1b")
    volume_id = create(core, requirement=TopologyRequirement(requisite=zones("us-east-1b"))).volume_id
    core.publish(volume_id, NODE, MOUNT_RWO, False, {}, None)
    (entry,) = core.list_volumes().items
    assert entry.published_node_ids == (NODE,)
    status = core.get_volume(volume_id)
    assert status == entry
    assert status.accessible_topology == ({ZONE_KEY: "us-east-1b"},)
    assert status.capacity_bytes == 10 * GIB
    assert not status.abnormal


def test_get_volume_condition_and_errors(core: ControllerCore, cloud: FakeCloud) -> None:
    broken = cloud.add_volume(Volume(cloud.new_volume_id(), 1, "us-east-1a", VolumeState.ERROR))
    status = core.get_volume(broken.volume_id)
    assert status.abnormal and "error" in status.message
    with pytest.raises(errors.NotFound):
        core.get_volume("vol-0000000000000dead")
    with pytest.raises(errors.InvalidArgument):
        core.get_volume("")


def test_validate_capabilities(core: ControllerCore) -> None:
    volume_id = create(core).volume_id
    assert core.validate_capabilities(volume_id, [MOUNT_RWO]).confirmed
    assert core.validate_capabilities(volume_id, [MOUNT_RWO], {}, {"type": "gp3"}).confirmed
    refused = core.validate_capabilities(volume_id, [MOUNT_ROX])
    assert not refused.confirmed and "MULTI_NODE_READER_ONLY" in refused.message
    assert not core.validate_capabilities(volume_id, [BLOCK_RWX]).confirmed
    assert not core.validate_capabilities(volume_id, [MOUNT_RWO], {}, {"type": "io1"}).confirmed
    # A fs type no node can make is not confirmed (the node would refuse it at NodeStage).
    zfs = core.validate_capabilities(volume_id, [replace(MOUNT_RWO, fs_type="zfs")])
    assert not zfs.confirmed and "zfs" in zfs.message
    assert core.validate_capabilities(volume_id, [replace(MOUNT_RWO, fs_type="XFS")]).confirmed
    with pytest.raises(errors.NotFound):
        core.validate_capabilities("vol-0000000000000dead", [MOUNT_RWO])
    with pytest.raises(errors.InvalidArgument):
        core.validate_capabilities(volume_id, [])
    with pytest.raises(errors.InvalidArgument):
        core.validate_capabilities("", [MOUNT_RWO])


def test_validate_reuses_a_recent_read_and_never_outlives_a_deletion(
    core: ControllerCore, cloud: FakeCloud, clock: FakeClock
) -> None:
    volume_id = create(core).volume_id
    reads = cloud.calls["get_volume"]
    for _ in range(5):
        assert core.validate_capabilities(volume_id, [MOUNT_RWO]).confirmed
    assert cloud.calls["get_volume"] == reads + 1  # one EC2 read for five calls within the TTL
    # deleted behind the driver's back: seen only once the read is older than validate_cache_seconds
    del cloud.volumes[volume_id]
    assert core.validate_capabilities(volume_id, [MOUNT_RWO]).confirmed
    clock.advance(ControllerConfig().validate_cache_seconds)
    with pytest.raises(errors.NotFound):
        core.validate_capabilities(volume_id, [MOUNT_RWO])
    # deleted through the driver: NOT_FOUND at once, and a missing volume is never remembered
    other = create(core, name="pvc-other").volume_id
    assert core.validate_capabilities(other, [MOUNT_RWO]).confirmed
    core.delete_volume(other)
    for _ in range(2):
        with pytest.raises(errors.NotFound):
            core.validate_capabilities(other, [MOUNT_RWO])


def test_validate_after_a_modification_reads_the_new_type(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    assert core.validate_capabilities(volume_id, [MOUNT_RWO], {}, {"type": "gp3"}).confirmed
    core.modify_volume(volume_id, {"type": "io2", "iops": "4000"}, None)
    assert core.validate_capabilities(volume_id, [MOUNT_RWO], {}, {"type": "io2"}).confirmed


def test_probe_caches_success(core: ControllerCore, cloud: FakeCloud, clock: FakeClock) -> None:
    core.probe()
    core.probe()
    assert cloud.calls["check_access"] == 1
    clock.advance(61)
    core.probe()
    assert cloud.calls["check_access"] == 2


def test_probe_failure_is_failed_precondition_and_not_cached(
    core: ControllerCore, cloud: FakeCloud, clock: FakeClock
) -> None:
    cloud.fail(
        "check_access", errors.FailedPrecondition("UnauthorizedOperation: no ec2:DescribeAvailabilityZones")
    )
    with pytest.raises(errors.FailedPrecondition, match="UnauthorizedOperation"):
        core.probe()
    cloud.fail("check_access", errors.Unavailable("endpoint unreachable"))
    with pytest.raises(errors.FailedPrecondition, match="endpoint unreachable"):
        core.probe()
    core.probe()
    assert cloud.calls["check_access"] == 3


def test_capabilities_are_what_works(core: ControllerCore) -> None:
    assert core.capabilities() == {
        ControllerCapability.CREATE_DELETE_VOLUME,
        ControllerCapability.PUBLISH_UNPUBLISH_VOLUME,
        ControllerCapability.LIST_VOLUMES,
        ControllerCapability.LIST_VOLUMES_PUBLISHED_NODES,
        ControllerCapability.GET_VOLUME,
        ControllerCapability.VOLUME_CONDITION,
        ControllerCapability.CLONE_VOLUME,
        ControllerCapability.CREATE_DELETE_SNAPSHOT,
        ControllerCapability.LIST_SNAPSHOTS,
        ControllerCapability.GET_SNAPSHOT,
        ControllerCapability.EXPAND_VOLUME,
        ControllerCapability.MODIFY_VOLUME,
    }
    assert core.online_expansion
