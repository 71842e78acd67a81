"""The FakeCloud's own EC2 rules, so the core tests stand on a faithful double."""

from __future__ import annotations

import pytest

from provisioner import errors
from provisioner.model import VolumeSpec, VolumeState
from tests.fakes.cloud import FakeCloud


def test_creating_becomes_available_after_polls() -> None:
    cloud = FakeCloud(creating_polls=2)
    volume = cloud.create_volume(VolumeSpec("n", 5), "us-east-1a", "t")
    assert volume.state is VolumeState.CREATING
    assert cloud.get_volume(volume.volume_id).state is VolumeState.CREATING
    assert cloud.get_volume(volume.volume_id).state is VolumeState.AVAILABLE


def test_client_token_idempotency() -> None:
    cloud = FakeCloud()
    first = cloud.create_volume(VolumeSpec("n", 5), "us-east-1a", "t")
    assert cloud.create_volume(VolumeSpec("n", 5), "us-east-1a", "t").volume_id == first.volume_id
    with pytest.raises(errors.AlreadyExists):
        cloud.create_volume(VolumeSpec("n", 6), "us-east-1a", "t")
    assert len(cloud.volumes) == 1


def test_unknown_zone_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgument, match="us-east-1z"):
        FakeCloud().create_volume(VolumeSpec("n", 5), "us-east-1z", "t")


def test_attach_and_detach_state_machine() -> None:
    cloud = FakeCloud(creating_polls=0, attach_polls=2, detach_polls=1)
    cloud.add_instance("i-0123456789abcdef0", "us-east-1a")
    volume_id = cloud.create_volume(VolumeSpec("n", 5), "us-east-1a", "t").volume_id
    cloud.get_volume(volume_id)
    cloud.attach_volume(volume_id, "i-0123456789abcdef0", "/dev/xvdaa")
    with pytest.raises(errors.FailedPrecondition):
        cloud.delete_volume(volume_id)
    states = [cloud.get_volume(volume_id).attachments[0].state for _ in range(2)]
    assert states == ["attaching", "attached"]
    cloud.detach_volume(volume_id, "i-0123456789abcdef0")
    assert cloud.get_volume(volume_id).attachments == ()
    with pytest.raises(errors.NotFound):
        cloud.detach_volume(volume_id, "i-0123456789abcdef0")


def test_injected_errors_are_raised_once_per_call() -> None:
    cloud = FakeCloud()
    cloud.fail("availability_zones", errors.Unavailable("one"), errors.Unavailable("two"))
    for expected in ("one", "two"):
        with pytest.raises(errors.Unavailable, match=expected):
            cloud.availability_zones()
    assert len(cloud.availability_zones()) == 3
    assert cloud.calls["availability_zones"] == 3


def test_pages_and_bad_tokens() -> None:
    cloud = FakeCloud()
    for i in range(3):
        cloud.create_volume(VolumeSpec(f"n{i}", 5, tags={"k": "v"}), "us-east-1a", f"t{i}")
    page = cloud.list_volumes({"k": "v"}, 2, "")
    assert len(page.items) == 2 and page.next_token
    assert len(cloud.list_volumes({"k": "v"}, 2, page.next_token).items) == 1
    with pytest.raises(errors.InvalidArgument):
        cloud.list_volumes({}, 2, "nope")
