"""DeleteVolume: unknown ids succeed, attached and foreign volumes are refused."""

from __future__ import annotations

import threading

import pytest

from provisioner import errors
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.model import TAG_VOLUME_NAME, TAG_ZONAL_DRIVER, Volume, VolumeState
from tests.controller.conftest import DRIVER
from tests.controller.helpers import MOUNT_RWO, create
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud


def test_deletes_an_owned_volume(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    core.delete_volume(volume_id)
    assert cloud.deleted == [volume_id]
    core.delete_volume(volume_id)  # CSI: deleting again is OK
    assert cloud.deleted == [volume_id]


@pytest.mark.parametrize("volume_id", ["vol-0123456789abcdef0", "not-a-volume", "vol-XYZ"])
def test_unknown_or_malformed_ids_are_ok(core: ControllerCore, cloud: FakeCloud, volume_id: str) -> None:
    core.delete_volume(volume_id)
    assert cloud.calls["delete_volume"] == 0


def test_missing_id_is_invalid(core: ControllerCore) -> None:
    with pytest.raises(errors.InvalidArgument):
        core.delete_volume("")


def test_attached_volume_is_failed_precondition(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core, requirement=None).volume_id
    zone = cloud.volumes[volume_id].volume.zone
    cloud.add_instance("i-0123456789abcdef0", zone)
    core.publish(volume_id, "i-0123456789abcdef0", MOUNT_RWO, False, {}, None)
    with pytest.raises(errors.FailedPrecondition, match="attached to i-0123456789abcdef0"):
        core.delete_volume(volume_id)
    assert volume_id in cloud.volumes


def _foreign(cloud: FakeCloud, tags: dict[str, str]) -> str:
    return cloud.add_volume(
        Volume(cloud.new_volume_id(), 10, "us-east-1a", VolumeState.AVAILABLE, tags=tags)
    ).volume_id


@pytest.mark.parametrize(
    "tags",
    [
        {},
        {TAG_VOLUME_NAME: "pvc-1", "ebs.csi.aws.com/cluster": "true"},  # another driver's volume
        {TAG_ZONAL_DRIVER: "zonal.csi.dev", "kubernetes.io/cluster/other-cluster": "owned"},  # other cluster
    ],
)
def test_foreign_volume_is_refused(core: ControllerCore, cloud: FakeCloud, tags: dict[str, str]) -> None:
    volume_id = _foreign(cloud, tags)
    with pytest.raises(errors.FailedPrecondition, match="allow-foreign-volume-delete"):
        core.delete_volume(volume_id)
    assert volume_id in cloud.volumes


def test_foreign_volume_deleted_when_allowed(cloud: FakeCloud, clock: FakeClock) -> None:
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig(allow_foreign_volume_delete=True))
    volume_id = _foreign(cloud, {})
    core.delete_volume(volume_id)
    assert cloud.deleted == [volume_id]


def test_without_cluster_id_the_driver_tag_decides(cloud: FakeCloud, clock: FakeClock) -> None:
    core = ControllerCore(cloud, clock, DriverConfig(driver_name="zonal.csi.dev"), ControllerConfig())
    volume_id = _foreign(cloud, {TAG_ZONAL_DRIVER: "zonal.csi.dev"})
    core.delete_volume(volume_id)
    assert cloud.deleted == [volume_id]


def test_volume_vanishing_between_lookup_and_delete_is_ok(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    cloud.fail("delete_volume", errors.NotFound("gone"))
    core.delete_volume(volume_id)


def test_concurrent_delete_is_aborted(core: ControllerCore, cloud: FakeCloud) -> None:
    volume_id = create(core).volume_id
    hold = cloud.hold("delete_volume")
    worker = threading.Thread(target=core.delete_volume, args=(volume_id,))
    worker.start()
    assert hold.entered.wait(5)
    with pytest.raises(errors.OperationInProgress):
        core.delete_volume(volume_id)
    hold.release.set()
    worker.join(5)
    assert cloud.deleted == [volume_id]
