"""The Cloud port's contract: the same scenarios over the tests' FakeCloud and the EC2 adapter on the
simulator.

Every controller-core test trusts FakeCloud; this suite is what makes that trust earned. Each scenario
runs twice — over ``FakeCloud`` and over :class:`~provisioner.aws.ec2.Ec2Cloud` talking boto3 to the
embedded EC2 simulator (moto plus ClientToken idempotency, zone checks and lifecycles on a fake clock) —
and asserts only what the :class:`~provisioner.ports.cloud.Cloud` protocol promises. Where the two
disagree, one of them is wrong about EC2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from provisioner import errors
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.model import TAG_VOLUME_NAME, Volume, VolumeSpec, VolumeState
from provisioner.ports.cloud import Cloud
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

UNKNOWN_VOLUME = "vol-0123456789abcdef0"
UNKNOWN_SNAPSHOT = "snap-0123456789abcdef0"
UNKNOWN_INSTANCE = "i-0123456789abcdef0"
OWNER = {"zonal.dev/contract": "yes"}


@dataclass
class Side:
    """One implementation of the port, with what a scenario needs around it."""

    cloud: Cloud
    clock: FakeClock
    zones: tuple[str, ...]
    add_instance: Callable[[str], str]

    def until(self, read: Callable[[], Volume], done: Callable[[Volume], bool]) -> Volume:
        """Read until ``done``, letting time pass between reads (the fake moves per read, EC2 per second)."""
        for _ in range(60):
            volume = read()
            if done(volume):
                return volume
            self.clock.advance(0.5)
        raise AssertionError(f"never reached: last read {volume}")

    def available(self, volume_id: str) -> Volume:
        return self.until(
            lambda: self.cloud.get_volume(volume_id), lambda v: v.state is VolumeState.AVAILABLE
        )

    def attached(self, volume_id: str) -> Volume:
        return self.until(
            lambda: self.cloud.get_volume(volume_id),
            lambda v: any(a.state == "attached" for a in v.attachments),
        )


def _fake() -> Side:
    clock = FakeClock()
    cloud = FakeCloud(clock=clock, creating_polls=2, snapshot_polls=2, modify_polls=2)
    return Side(cloud, clock, tuple(z.name for z in cloud.zones), lambda zone: _fake_instance(cloud, zone))


def _fake_instance(cloud: FakeCloud, zone: str) -> str:
    instance_id = f"i-{cloud.new_volume_id()[4:]}"
    cloud.add_instance(instance_id, zone)
    return instance_id


def _simulated() -> Side:
    clock = FakeClock()
    delays = Delays(volume_create=1.0, attach=1.0, detach=1.0, snapshot=2.0)
    sim = Simulator(SimConfig(throttling=False, delays=delays), clock=clock)
    return Side(Ec2Cloud(sim.client(), sim.region), clock, sim.zones, sim.create_instance)


@pytest.fixture(params=["fake", "ec2-on-simulator"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    yield _fake() if request.param == "fake" else _simulated()


def spec(name: str, size: int = 1, **tags: str) -> VolumeSpec:
    return VolumeSpec(name=name, size_gib=size, volume_type="gp3", tags={**OWNER, **tags})


# --- CreateVolume: state, zones, ClientToken ------------------------------------------------------


def test_a_new_volume_is_creating_then_available_in_its_zone(side: Side) -> None:
    zone = side.zones[1]
    created = side.cloud.create_volume(spec("pvc-a", 2), zone, "token-a")
    assert created.state is VolumeState.CREATING  # never available at once (moto alone would be)
    assert (created.zone, created.size_gib, created.volume_type) == (zone, 2, "gp3")
    assert created.tags[TAG_VOLUME_NAME] == "pvc-a" and created.tags["zonal.dev/contract"] == "yes"
    assert side.cloud.get_volume(created.volume_id).state is VolumeState.CREATING
    ready = side.available(created.volume_id)
    assert (ready.volume_id, ready.zone) == (created.volume_id, zone)


def test_an_unknown_zone_is_invalid_argument(side: Side) -> None:
    with pytest.raises(errors.InvalidArgument):
        side.cloud.create_volume(spec("pvc-z"), "us-east-1z", "token-z")
    assert side.cloud.find_volume_by_name("pvc-z") is None


def test_a_reused_token_with_the_same_parameters_answers_the_first_volume_whatever_the_zone(
    side: Side,
) -> None:
    first = side.cloud.create_volume(spec("pvc-t"), side.zones[0], "token-t")
    again = side.cloud.create_volume(spec("pvc-t"), side.zones[2], "token-t")  # EC2 ignores the zone here
    assert again.volume_id == first.volume_id and again.zone == side.zones[0]
    side.available(first.volume_id)
    listed = side.cloud.list_volumes(OWNER, 0, "").items
    assert [v.volume_id for v in listed] == [first.volume_id]  # no second volume was made


def test_a_reused_token_with_other_parameters_is_already_exists(side: Side) -> None:
    side.cloud.create_volume(spec("pvc-m", 1), side.zones[0], "token-m")
    with pytest.raises(errors.AlreadyExists, match="IdempotentParameterMismatch"):
        side.cloud.create_volume(spec("pvc-m", 2), side.zones[0], "token-m")


def test_a_reused_token_after_the_delete_answers_the_deleted_volume(side: Side) -> None:
    first = side.cloud.create_volume(spec("pvc-d"), side.zones[0], "token-d")
    side.available(first.volume_id)
    side.cloud.delete_volume(first.volume_id)
    again = side.cloud.create_volume(spec("pvc-d"), side.zones[0], "token-d")
    assert again.volume_id == first.volume_id and again.state is VolumeState.DELETED
    assert side.cloud.find_volume_by_name("pvc-d") is None


def test_another_token_makes_another_volume(side: Side) -> None:
    first = side.cloud.create_volume(spec("pvc-n"), side.zones[0], "token-n1")
    side.clock.advance(1.0)
    second = side.cloud.create_volume(spec("pvc-n"), side.zones[0], "token-n2")
    assert first.volume_id != second.volume_id
    found = side.cloud.find_volume_by_name("pvc-n")
    assert found is not None and found.volume_id == first.volume_id  # the oldest of the name


# --- not found ------------------------------------------------------------------------------------


@pytest.mark.parametrize("volume_id", [UNKNOWN_VOLUME, "not-a-volume-id", "vol-\x00"])
def test_unknown_or_malformed_volume_ids_are_not_found(side: Side, volume_id: str) -> None:
    with pytest.raises(errors.NotFound):
        side.cloud.get_volume(volume_id)
    with pytest.raises(errors.NotFound):
        side.cloud.delete_volume(volume_id)
    assert dict(side.cloud.describe_volumes([volume_id])) == {}


@pytest.mark.parametrize("instance_id", [UNKNOWN_INSTANCE, "not-an-instance"])
def test_unknown_or_malformed_instance_ids_are_not_found(side: Side, instance_id: str) -> None:
    with pytest.raises(errors.NotFound):
        side.cloud.get_instance(instance_id)
    assert dict(side.cloud.describe_instances([instance_id])) == {}


@pytest.mark.parametrize("snapshot_id", [UNKNOWN_SNAPSHOT, "not-a-snapshot"])
def test_unknown_or_malformed_snapshot_ids_are_not_found(side: Side, snapshot_id: str) -> None:
    with pytest.raises(errors.NotFound):
        side.cloud.get_snapshot(snapshot_id)
    with pytest.raises(errors.NotFound):
        side.cloud.delete_snapshot(snapshot_id)


def test_a_snapshot_of_an_unknown_volume_is_not_found(side: Side) -> None:
    with pytest.raises(errors.NotFound):
        side.cloud.create_snapshot(UNKNOWN_VOLUME, {}, "")


def test_detaching_what_is_not_attached_is_not_found(side: Side) -> None:
    volume = side.cloud.create_volume(spec("pvc-x"), side.zones[0], "token-x")
    side.available(volume.volume_id)
    instance = side.add_instance(side.zones[0])
    with pytest.raises(errors.NotFound):
        side.cloud.detach_volume(volume.volume_id, instance)


# --- attachments ----------------------------------------------------------------------------------


def test_attach_then_detach_in_one_zone(side: Side) -> None:
    zone = side.zones[0]
    volume = side.cloud.create_volume(spec("pvc-at"), zone, "token-at")
    side.available(volume.volume_id)
    instance = side.add_instance(zone)
    side.cloud.attach_volume(volume.volume_id, instance, "/dev/xvdba")
    states = {a.state for a in side.cloud.get_volume(volume.volume_id).attachments}
    assert states <= {"attaching", "attached"}
    attached = side.attached(volume.volume_id)
    assert attached.state is VolumeState.IN_USE
    assert [(a.instance_id, a.device) for a in attached.attachments] == [(instance, "/dev/xvdba")]
    assert side.cloud.get_instance(instance).block_devices.get("/dev/xvdba") == volume.volume_id
    with pytest.raises(errors.FailedPrecondition):  # EC2's VolumeInUse
        side.cloud.delete_volume(volume.volume_id)
    side.cloud.detach_volume(volume.volume_id, instance)
    free = side.until(lambda: side.cloud.get_volume(volume.volume_id), lambda v: not v.attachments)
    assert free.state is VolumeState.AVAILABLE
    side.cloud.delete_volume(volume.volume_id)


def test_a_detaching_volume_keeps_its_device_name_until_detached(side: Side) -> None:
    zone = side.zones[0]
    first = side.cloud.create_volume(spec("pvc-d1"), zone, "token-d1")
    second = side.cloud.create_volume(spec("pvc-d2"), zone, "token-d2")
    side.available(first.volume_id)
    side.available(second.volume_id)
    instance = side.add_instance(zone)
    side.cloud.attach_volume(first.volume_id, instance, "/dev/xvdba")
    side.attached(first.volume_id)
    side.cloud.detach_volume(first.volume_id, instance)
    # EC2 lists the mapping (attachment detaching) and refuses its name until the detach completes.
    assert side.cloud.get_instance(instance).block_devices.get("/dev/xvdba") == first.volume_id
    with pytest.raises(errors.FailedPrecondition):  # InvalidParameterValue "... already in use"
        side.cloud.attach_volume(second.volume_id, instance, "/dev/xvdba")
    side.until(lambda: side.cloud.get_volume(first.volume_id), lambda v: not v.attachments)
    assert "/dev/xvdba" not in side.cloud.get_instance(instance).block_devices
    side.cloud.attach_volume(second.volume_id, instance, "/dev/xvdba")
    assert side.attached(second.volume_id).attachments[0].device == "/dev/xvdba"


def test_attaching_across_zones_is_failed_precondition(side: Side) -> None:
    volume = side.cloud.create_volume(spec("pvc-cz"), side.zones[0], "token-cz")
    side.available(volume.volume_id)
    elsewhere = side.add_instance(side.zones[1])
    with pytest.raises(errors.FailedPrecondition):
        side.cloud.attach_volume(volume.volume_id, elsewhere, "/dev/xvdba")


def test_attaching_a_creating_volume_is_failed_precondition(side: Side) -> None:
    volume = side.cloud.create_volume(spec("pvc-cr"), side.zones[0], "token-cr")
    instance = side.add_instance(side.zones[0])
    with pytest.raises(errors.FailedPrecondition):
        side.cloud.attach_volume(volume.volume_id, instance, "/dev/xvdba")


# --- listings and pagination ----------------------------------------------------------------------


def test_list_volumes_pages_through_every_owned_volume_once(side: Side) -> None:
    made = {
        side.cloud.create_volume(spec(f"pvc-p{i}"), side.zones[i % 3], f"token-p{i}").volume_id
        for i in range(7)
    }
    side.cloud.create_volume(VolumeSpec("foreign", 1), side.zones[0], "token-foreign")  # not ours
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = side.cloud.list_volumes(OWNER, 5, token)
        assert 0 < len(page.items) <= 5
        seen.extend(v.volume_id for v in page.items)
        pages += 1
        token = page.next_token
        if not token:
            break
    assert pages == 2 and sorted(seen) == sorted(made)
    assert {v.volume_id for v in side.cloud.list_volumes(OWNER, 0, "").items} == made


def test_a_token_the_cloud_did_not_issue_is_invalid_argument(side: Side) -> None:
    with pytest.raises(errors.InvalidArgument):
        side.cloud.list_volumes(OWNER, 5, "not-a-token")
    with pytest.raises(errors.InvalidArgument):
        side.cloud.list_snapshots(OWNER, "", 5, "not-a-token")


def test_describe_volumes_answers_the_known_ones_only(side: Side) -> None:
    a = side.cloud.create_volume(spec("pvc-da"), side.zones[0], "token-da")
    b = side.cloud.create_volume(spec("pvc-db"), side.zones[1], "token-db")
    found = side.cloud.describe_volumes([a.volume_id, UNKNOWN_VOLUME, b.volume_id, "garbage"])
    assert set(found) == {a.volume_id, b.volume_id}
    assert found[b.volume_id].zone == side.zones[1]


# --- snapshots ------------------------------------------------------------------------------------


def test_a_snapshot_is_pending_then_completed_and_listed_by_its_source(side: Side) -> None:
    volume = side.cloud.create_volume(spec("pvc-s", 3), side.zones[0], "token-s")
    side.available(volume.volume_id)
    snap = side.cloud.create_snapshot(volume.volume_id, {**OWNER, "CSIVolumeSnapshotName": "snap-a"}, "d")
    assert (snap.state, snap.source_volume_id, snap.size_gib) == ("pending", volume.volume_id, 3)
    assert snap.progress < 100
    for _ in range(60):
        snap = side.cloud.get_snapshot(snap.snapshot_id)
        if snap.ready:
            break
        side.clock.advance(0.5)
    assert snap.state == "completed" and snap.progress == 100
    found = side.cloud.find_snapshot_by_name("snap-a")
    assert found is not None and found.snapshot_id == snap.snapshot_id
    listed = side.cloud.list_snapshots(OWNER, volume.volume_id, 0, "").items
    assert [s.snapshot_id for s in listed] == [snap.snapshot_id]
    assert side.cloud.list_snapshots(OWNER, UNKNOWN_VOLUME, 0, "").items == ()
    side.cloud.delete_snapshot(snap.snapshot_id)
    with pytest.raises(errors.NotFound):
        side.cloud.get_snapshot(snap.snapshot_id)


def test_a_volume_restored_from_a_snapshot_is_not_smaller_than_it(side: Side) -> None:
    volume = side.cloud.create_volume(spec("pvc-r", 4), side.zones[0], "token-r")
    side.available(volume.volume_id)
    snap = side.cloud.create_snapshot(volume.volume_id, dict(OWNER), "")
    side.clock.advance(10)
    while not side.cloud.get_snapshot(snap.snapshot_id).ready:
        side.clock.advance(1)
    small = VolumeSpec("pvc-r2", 2, snapshot_id=snap.snapshot_id, tags=dict(OWNER))
    with pytest.raises(errors.InvalidArgument):
        side.cloud.create_volume(small, side.zones[0], "token-r2")
    restored = side.cloud.create_volume(
        VolumeSpec("pvc-r3", 4, snapshot_id=snap.snapshot_id, tags=dict(OWNER)), side.zones[1], "token-r3"
    )
    assert restored.snapshot_id == snap.snapshot_id and restored.size_gib == 4


# --- tags -----------------------------------------------------------------------------------------


def test_tags_are_added_and_removed(side: Side) -> None:
    volume = side.cloud.create_volume(spec("pvc-tag"), side.zones[0], "token-tag")
    side.cloud.create_tags(volume.volume_id, {"a": "1", "b": "2"})
    side.cloud.delete_tags(volume.volume_id, ["a"])
    tags = side.cloud.get_volume(volume.volume_id).tags
    assert tags.get("b") == "2" and "a" not in tags
    assert side.cloud.list_volumes({"b": "2"}, 0, "").items[0].volume_id == volume.volume_id


# --- modification ---------------------------------------------------------------------------------


def test_a_modification_runs_its_course_and_refuses_another_meanwhile(side: Side) -> None:
    volume = side.cloud.create_volume(spec("pvc-mod", 4), side.zones[0], "token-mod")
    side.available(volume.volume_id)
    assert side.cloud.get_volume_modification(volume.volume_id) is None  # never modified
    with pytest.raises(errors.InvalidArgument):  # EBS volumes never shrink
        side.cloud.modify_volume(volume.volume_id, size_gib=2)
    started = side.cloud.modify_volume(volume.volume_id, size_gib=8)
    assert (started.volume_id, started.state, started.target_size_gib) == (volume.volume_id, "modifying", 8)
    with pytest.raises(errors.ModificationRateLimited):  # EC2's IncorrectModificationState
        side.cloud.modify_volume(volume.volume_id, size_gib=9)
    states = []
    for _ in range(60):
        modification = side.cloud.get_volume_modification(volume.volume_id)
        assert modification is not None
        states.append(modification.state)
        if modification.state == "completed":
            break
        side.clock.advance(1.0)
    assert states[-1] == "completed" and "optimizing" in states
    assert side.cloud.get_volume(volume.volume_id).size_gib == 8
    with pytest.raises(errors.NotFound):
        side.cloud.modify_volume(UNKNOWN_VOLUME, size_gib=8)
