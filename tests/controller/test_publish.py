"""ControllerPublishVolume / ControllerUnpublishVolume: argument order, zones, device names, waits."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from provisioner import errors
from provisioner.config import ControllerConfig
from provisioner.controller import DEVICE_NAMES, ControllerCore
from provisioner.model import Instance, TopologyRequirement, VolumeState
from provisioner.ports.clock import Deadline
from tests.controller.conftest import DRIVER
from tests.controller.helpers import BLOCK_RWX, MOUNT_ROX, MOUNT_RWO, create, zones
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

NODE = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"
IN_A = TopologyRequirement(requisite=zones("us-east-1a"))


def volume_in_a(core: ControllerCore, name: str = "pvc-1") -> str:
    return create(core, name=name, requirement=IN_A).volume_id


def publish(core: ControllerCore, volume_id: str, node: str = NODE, deadline: Deadline | None = None) -> str:
    return core.publish(volume_id, node, MOUNT_RWO, False, {}, deadline)["devicePath"]


def test_device_names_list() -> None:
    assert DEVICE_NAMES[0] == "/dev/xvdaa" and DEVICE_NAMES[-1] == "/dev/xvdzz" and len(DEVICE_NAMES) == 676


def test_publish_attaches_and_waits(core: ControllerCore, cloud: FakeCloud, clock: FakeClock) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    volume_id = volume_in_a(core)
    clock.sleeps.clear()
    assert publish(core, volume_id) == "/dev/xvdaa"
    volume = cloud.volumes[volume_id].volume
    assert volume.state is VolumeState.IN_USE and volume.attachments[0].state == "attached"
    assert clock.sleeps == [1.0]
    assert cloud.calls["get_instance"] == 1  # one read of the node serves its check and the device name


def test_publish_is_idempotent(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    volume_id = volume_in_a(core)
    assert publish(core, volume_id) == publish(core, volume_id) == "/dev/xvdaa"
    assert cloud.calls["attach_volume"] == 1


def test_device_names_skip_mapped_and_reserved_names(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a", block_devices={"/dev/xvda": "vol-root", "/dev/xvdaa": "vol-other"})
    first, second = volume_in_a(core, "pvc-1"), volume_in_a(core, "pvc-2")
    assert publish(core, first) == "/dev/xvdab"
    assert publish(core, second) == "/dev/xvdac"


def test_a_freed_device_name_is_reused_after_detach(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    first, second = volume_in_a(core, "pvc-1"), volume_in_a(core, "pvc-2")
    assert publish(core, first) == "/dev/xvdaa"
    core.unpublish(first, NODE, None)
    assert publish(core, second) == "/dev/xvdaa"


def test_required_arguments_come_before_existence(core: ControllerCore, cloud: FakeCloud) -> None:
    with pytest.raises(errors.InvalidArgument, match="volume_id"):
        core.publish("", NODE, MOUNT_RWO, False, {}, None)
    with pytest.raises(errors.InvalidArgument, match="node_id"):
        core.publish("vol-0000000000000dead", "", MOUNT_RWO, False, {}, None)
    with pytest.raises(errors.InvalidArgument, match="volume_capability"):
        core.publish("vol-0000000000000dead", NODE, None, False, {}, None)
    with pytest.raises(errors.InvalidArgument, match="MULTI_NODE_READER_ONLY"):
        core.publish("vol-0000000000000dead", NODE, MOUNT_ROX, False, {}, None)
    assert sum(cloud.calls.values()) == 0


@pytest.mark.parametrize("volume_id", ["vol-0000000000000dead", "bogus"])
def test_unknown_volume_is_not_found(core: ControllerCore, cloud: FakeCloud, volume_id: str) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    with pytest.raises(errors.NotFound):
        publish(core, volume_id)


@pytest.mark.parametrize("node", ["i-0000000000000dead", "node-1"])
def test_unknown_instance_is_not_found(core: ControllerCore, node: str) -> None:
    with pytest.raises(errors.NotFound):
        publish(core, volume_in_a(core), node)


def test_zone_mismatch_names_both_zones(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1b")
    with pytest.raises(errors.FailedPrecondition, match=r"us-east-1a.*us-east-1b"):
        publish(core, volume_in_a(core))
    assert cloud.calls["attach_volume"] == 0


def test_attached_elsewhere_is_failed_precondition(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    cloud.add_instance(OTHER, "us-east-1a")
    volume_id = volume_in_a(core)
    publish(core, volume_id, OTHER)
    with pytest.raises(errors.FailedPrecondition, match=OTHER):
        publish(core, volume_id, NODE)


def test_multi_attach_io2_publishes_to_two_nodes(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    cloud.add_instance(OTHER, "us-east-1a")
    volume_id = create(
        core, parameters={"type": "io2", "iops": "1000"}, capabilities=[BLOCK_RWX], requirement=IN_A
    )
    for node in (NODE, OTHER):
        context = core.publish(volume_id.volume_id, node, BLOCK_RWX, False, {}, None)
        assert context["devicePath"] == "/dev/xvdaa"
    status = core.get_volume(volume_id.volume_id)
    assert sorted(status.published_node_ids) == sorted([NODE, OTHER])


def test_multi_writer_on_a_single_attach_volume_is_invalid(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    with pytest.raises(errors.InvalidArgument, match="multi-attach"):
        core.publish(volume_in_a(core), NODE, BLOCK_RWX, False, {}, None)


def test_attachment_limit_is_resource_exhausted(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a", attachment_limit=1)  # the root volume uses the only slot
    with pytest.raises(errors.ResourceExhausted, match="AttachmentLimitExceeded"):
        publish(core, volume_in_a(core))


def test_stuck_attaching_is_detached_and_the_name_tried_last(cloud: FakeCloud, clock: FakeClock) -> None:
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig(attach_timeout=90.0))
    cloud.add_instance(NODE, "us-east-1a")
    volume_id = volume_in_a(core)
    cloud.stuck_attaching = True
    start = clock.monotonic()
    with pytest.raises(errors.Unavailable, match="stayed attaching"):
        publish(core, volume_id)
    assert clock.monotonic() - start == pytest.approx(90.0)
    assert cloud.calls["detach_volume"] == 1
    cloud.stuck_attaching = False
    core.unpublish(volume_id, NODE, None)  # the detach completes
    assert publish(core, volume_id) == "/dev/xvdab"


def test_caller_deadline_before_attach_timeout_leaves_the_attach_going(
    core: ControllerCore, cloud: FakeCloud, clock: FakeClock
) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    volume_id = volume_in_a(core)
    cloud.stuck_attaching = True
    with pytest.raises(errors.DeadlineExceeded, match="still attaching"):
        publish(core, volume_id, deadline=Deadline(clock, 10.0))
    assert cloud.calls["detach_volume"] == 0
    cloud.stuck_attaching = False
    assert publish(core, volume_id) == "/dev/xvdaa"  # the retry waits for the same attachment
    assert cloud.calls["attach_volume"] == 1


def test_attach_errors_release_the_device_name(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    volume_id = volume_in_a(core)
    cloud.fail("attach_volume", errors.Unavailable("throttled"))
    with pytest.raises(errors.Unavailable):
        publish(core, volume_id)
    assert publish(core, volume_id) == "/dev/xvdaa"


def test_unpublish_detaches_and_waits(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.detach_polls = 3
    cloud.add_instance(NODE, "us-east-1a")
    volume_id = volume_in_a(core)
    publish(core, volume_id)
    core.unpublish(volume_id, NODE, None)
    volume = cloud.volumes[volume_id].volume
    assert volume.attachments == () and volume.state is VolumeState.AVAILABLE
    assert "/dev/xvdaa" not in cloud.instances[NODE].instance.block_devices


def test_unpublish_of_unknown_or_detached_is_ok(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    volume_id = volume_in_a(core)
    core.unpublish(volume_id, NODE, None)  # never attached
    core.unpublish("vol-0000000000000dead", NODE, None)  # unknown volume
    core.unpublish(volume_id, "i-0000000000000dead", None)  # unknown instance
    core.unpublish("junk", "junk", None)
    assert cloud.calls["detach_volume"] == 0


def test_unpublish_requires_the_volume_id(core: ControllerCore) -> None:
    with pytest.raises(errors.InvalidArgument, match="volume_id"):
        core.unpublish("", NODE, None)


def test_unpublish_without_node_detaches_from_every_node(core: ControllerCore, cloud: FakeCloud) -> None:
    # CSI: node_id is optional; unset means "unpublish the volume from all nodes it is published to".
    cloud.add_instance(NODE, "us-east-1a")
    cloud.add_instance(OTHER, "us-east-1a")
    volume_id = create(
        core,
        name="shared",
        parameters={"type": "io2", "iops": "1000"},
        capabilities=(BLOCK_RWX,),
        requirement=IN_A,
    ).volume_id
    for node in (NODE, OTHER):
        core.publish(volume_id, node, BLOCK_RWX, False, {}, None)
    core.unpublish(volume_id, "", None)
    assert cloud.calls["detach_volume"] == 2
    assert all(a.state == "detached" for a in cloud.volumes[volume_id].volume.attachments)
    core.unpublish(volume_id, "", None)  # nothing attached any more: OK, no call
    core.unpublish("vol-0000000000000dead", "", None)  # unknown volume: OK
    assert cloud.calls["detach_volume"] == 2


def test_unpublish_deadline(core: ControllerCore, cloud: FakeCloud, clock: FakeClock) -> None:
    cloud.add_instance(NODE, "us-east-1a")
    volume_id = volume_in_a(core)
    publish(core, volume_id)
    cloud.detach_polls = 100
    with pytest.raises(errors.DeadlineExceeded, match="detaching"):
        core.unpublish(volume_id, NODE, Deadline(clock, 5.0))
    cloud.detach_polls = 1
    core.unpublish(volume_id, NODE, None)  # the retry waits for the detach already running
    assert cloud.calls["detach_volume"] == 1


def test_attaches_to_one_instance_read_its_mappings_together(
    core: ControllerCore, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four publishes to one node are all inside the device-name lookup at once (no lock across it:
    they share a batched DescribeInstances instead of queueing behind each other's)."""
    cloud.add_instance(NODE, "us-east-1a")
    volumes = [volume_in_a(core, f"pvc-{i}") for i in range(4)]
    together = threading.Barrier(len(volumes), timeout=10)
    reads: dict[int, int] = {}
    plain = cloud.get_instance

    def get_instance(instance_id: str) -> Instance:
        me = threading.get_ident()
        reads[me] = reads.get(me, 0) + 1
        if reads[me] == 1:  # the lookup whose mappings pick the device name
            together.wait()  # BrokenBarrierError if the lookups were serialised
        return plain(instance_id)

    monkeypatch.setattr(cloud, "get_instance", get_instance)
    with ThreadPoolExecutor(len(volumes)) as pool:
        devices = list(pool.map(lambda v: publish(core, v), volumes))
    assert sorted(devices) == list(DEVICE_NAMES[:4])


def test_a_name_whose_attach_ended_during_a_lookup_is_not_picked_from_that_lookup(
    core: ControllerCore, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B reads the node's mappings; before the answer arrives, A attaches as /dev/xvdaa and ends its
    reservation. B's (older) answer does not list /dev/xvdaa, but B must not take it."""
    cloud.add_instance(NODE, "us-east-1a")
    a, b = volume_in_a(core, "pvc-a"), volume_in_a(core, "pvc-b")
    plain = cloud.get_instance
    lookups = {"b": 0}
    seen_a: list[str] = []

    def get_instance(instance_id: str) -> Instance:
        if threading.current_thread().name != "b":
            return plain(instance_id)
        lookups["b"] += 1
        stale = plain(instance_id)
        if lookups["b"] == 1:  # B's lookup of the mappings: A publishes entirely meanwhile
            runner = threading.Thread(target=lambda: seen_a.append(publish(core, a)))
            runner.start()
            runner.join(10)
            assert "/dev/xvdaa" not in stale.block_devices
        return stale

    monkeypatch.setattr(cloud, "get_instance", get_instance)
    got: list[str] = []
    thread_b = threading.Thread(target=lambda: got.append(publish(core, b)), name="b")
    thread_b.start()
    thread_b.join(10)
    assert seen_a == ["/dev/xvdaa"]
    assert got == ["/dev/xvdab"]
    assert cloud.volumes[b].volume.attachments[0].device == "/dev/xvdab"
