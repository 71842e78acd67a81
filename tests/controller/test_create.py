"""CreateVolume: zone, tags, idempotency, in-flight guard, waiting, error state, arguments."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading

import pytest

from provisioner import errors
from provisioner.config import ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore, client_token
from provisioner.model import (
    GIB,
    TAG_DRIVER,
    TAG_VOLUME_NAME,
    TAG_ZONAL_DRIVER,
    ZONE_ID_KEY,
    ZONE_KEY,
    AccessMode,
    AccessType,
    ContentSource,
    TopologyRequirement,
    Volume,
    VolumeCapability,
    VolumeSpec,
    VolumeState,
)
from provisioner.params import TAG_PVC_NAME
from provisioner.ports.clock import Deadline
from provisioner.ports.csi import CreatedVolume
from tests.controller.conftest import DRIVER
from tests.controller.helpers import BLOCK_RWO, BLOCK_RWX, MOUNT_ROX, MOUNT_RWX, create, zones
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud


def test_creates_in_the_preferred_zone_and_reports_the_zone_ec2_reports(
    core: ControllerCore, cloud: FakeCloud, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=core.log.name):
        created = create(
            core,
            requirement=TopologyRequirement(
                requisite=zones("us-east-1a", "us-east-1b"), preferred=zones("us-east-1b")
            ),
        )
    volume = cloud.volumes[created.volume_id].volume
    assert volume.zone == "us-east-1b"
    assert created.accessible_topology == ({ZONE_KEY: "us-east-1b"},)
    assert created.capacity_bytes == 10 * GIB
    assert volume.state is VolumeState.AVAILABLE
    assert "zone us-east-1b from preferred[0]" in caplog.text  # how the zone was chosen is logged


def test_zone_id_request_answers_with_the_zone_name(core: ControllerCore) -> None:
    created = create(core, requirement=TopologyRequirement(preferred=({ZONE_ID_KEY: "use1-az4"},)))
    assert created.accessible_topology == ({ZONE_KEY: "us-east-1c"},)


def test_request_shape_tags_and_client_token(core: ControllerCore, cloud: FakeCloud) -> None:
    create(
        core,
        name="pvc-42",
        parameters={
            "tagSpecification_1": "cost=db",
            "csi.storage.k8s.io/pvc/name": "data",
            "encrypted": "true",
        },
    )
    spec, _, token = cloud.created_with[0]
    assert token == hashlib.sha256(b"pvc-42").hexdigest() and len(token) == 64
    assert spec.size_gib == 10 and spec.volume_type == "gp3" and spec.encrypted
    assert spec.tags == {
        TAG_VOLUME_NAME: "pvc-42",
        TAG_ZONAL_DRIVER: "zonal.csi.dev",
        TAG_DRIVER: "true",
        "kubernetes.io/cluster/test-cluster": "owned",
        "team": "storage",
        "cost": "db",
        TAG_PVC_NAME: "data",
    }


def test_same_name_same_request_returns_the_same_volume(core: ControllerCore, cloud: FakeCloud) -> None:
    first = create(core)
    second = create(core)
    assert second.volume_id == first.volume_id
    assert second.accessible_topology == first.accessible_topology
    # the retry is idempotent through the client token, with no lookup by name
    assert cloud.calls["create_volume"] == 2 and len(cloud.volumes) == 1
    assert cloud.created_with[0][2] == cloud.created_with[1][2]
    assert cloud.calls["find_volume_by_name"] == 0


@pytest.mark.parametrize(
    ("size_gib", "parameters"),
    [(20, {}), (10, {"type": "gp2"}), (10, {"encrypted": "true"}), (10, {"iops": "4000"})],
)
def test_same_name_incompatible_request_is_already_exists(
    core: ControllerCore, size_gib: int, parameters: dict[str, str]
) -> None:
    create(core, size_gib=10)
    with pytest.raises(errors.AlreadyExists, match="incompatible"):
        create(core, size_gib=size_gib, parameters=parameters)


def test_existing_volume_in_a_zone_outside_the_requirement_is_already_exists(core: ControllerCore) -> None:
    first = create(core, requirement=TopologyRequirement(requisite=zones("us-east-1a")))
    with pytest.raises(
        errors.AlreadyExists, match=r"zone us-east-1a, outside the requested topology \[us-east-1c\]"
    ):
        create(core, requirement=TopologyRequirement(requisite=zones("us-east-1c")))
    # inside the requirement (or none at all): the same volume
    again = create(core, requirement=TopologyRequirement(requisite=zones("us-east-1c", "us-east-1a")))
    # EC2 answered the token with the first volume: no zone was chosen by this call
    assert again.accessible_topology == ({ZONE_KEY: "us-east-1a"},) and again.volume_id == first.volume_id
    assert create(core).accessible_topology == ({ZONE_KEY: "us-east-1a"},)


def test_existing_volume_of_another_driver_is_already_exists(core: ControllerCore, cloud: FakeCloud) -> None:
    # Another driver made pvc-1 with the same token scheme: its tags differ, so EC2 answers
    # IdempotentParameterMismatch and the lookup by name finds a volume that is not ours.
    foreign = cloud.create_volume(
        VolumeSpec("pvc-1", 10, tags={TAG_VOLUME_NAME: "pvc-1"}), "us-east-1a", client_token("pvc-1")
    )
    with pytest.raises(errors.AlreadyExists, match=r"not created by zonal\.csi\.dev"):
        create(core)
    assert list(cloud.volumes) == [foreign.volume_id]


def test_lookup_before_create_finds_a_volume_made_by_another_token(
    cloud: FakeCloud, clock: FakeClock
) -> None:
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig(lookup_before_create=True))
    cloud.add_volume(
        Volume(
            cloud.new_volume_id(), 10, "us-east-1a", VolumeState.AVAILABLE, tags={TAG_VOLUME_NAME: "pvc-1"}
        )
    )
    with pytest.raises(errors.AlreadyExists, match=r"not created by zonal\.csi\.dev"):
        create(core)
    ours = create(core, name="pvc-2")
    assert create(core, name="pvc-2").volume_id == ours.volume_id
    assert cloud.calls["find_volume_by_name"] == 3 and cloud.calls["create_volume"] == 1


def test_concurrent_duplicate_is_aborted_and_the_first_call_finishes(
    core: ControllerCore, cloud: FakeCloud
) -> None:
    hold = cloud.hold("create_volume")
    results: list[CreatedVolume] = []
    first = threading.Thread(target=lambda: results.append(create(core)))
    first.start()
    assert hold.entered.wait(5)
    with pytest.raises(errors.OperationInProgress, match="pvc-1"):
        create(core)
    hold.release.set()
    first.join(5)
    assert len(results) == 1
    assert create(core).volume_id == results[0].volume_id  # the guard is released afterwards
    assert len(cloud.volumes) == 1


def test_other_names_are_not_blocked_by_the_guard(core: ControllerCore, cloud: FakeCloud) -> None:
    hold = cloud.hold("create_volume")
    worker = threading.Thread(target=lambda: create(core, name="pvc-slow"))
    worker.start()
    assert hold.entered.wait(5)
    assert create(core, name="pvc-fast").volume_id
    hold.release.set()
    worker.join(5)
    assert cloud.calls["create_volume"] == 2


def test_waits_with_initial_delay_then_exponential_backoff(clock: FakeClock) -> None:
    cloud = FakeCloud(creating_polls=8)
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig(learned_waits=False))
    create(core)
    assert clock.sleeps == pytest.approx([1.0, 1.6, 2.56, 4.096, 6.5536, 8.0, 8.0, 8.0])
    assert cloud.calls["get_volume"] == 8


def test_a_first_volume_of_its_kind_is_checked_at_the_initial_delay_then_closely(clock: FakeClock) -> None:
    cloud = FakeCloud(creating_polls=8)
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig())
    create(core)
    # Nothing learned yet: the kind's point is the initial delay; after it, gaps from a quarter of it
    # growing ×1.6, never more than 0.6 × the time waited (tests/controller/test_pacing.py has the rest).
    assert clock.sleeps == pytest.approx([1.0, 0.25, 0.4, 0.64, 1.024, 1.6384, 2.62144, 4.194304])
    assert cloud.calls["get_volume"] == 8


def test_deadline_aborts_and_the_retry_finds_the_volume(clock: FakeClock) -> None:
    cloud = FakeCloud(creating_polls=6)
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig(learned_waits=False))
    with pytest.raises(errors.DeadlineExceeded, match="still creating"):
        create(core, deadline=Deadline(clock, 5.0))
    assert sum(clock.sleeps) == pytest.approx(5.0)  # never slept past the deadline
    created = create(core, deadline=Deadline(clock, 60.0))
    assert list(cloud.volumes) == [created.volume_id]  # the retry's token got the first volume
    assert cloud.volumes[created.volume_id].volume.state is VolumeState.AVAILABLE


def test_no_deadline_uses_the_configured_default(clock: FakeClock) -> None:
    cloud = FakeCloud(creating_polls=1000)
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig(default_wait_timeout=30.0))
    with pytest.raises(errors.DeadlineExceeded):
        create(core, deadline=Deadline(clock, None))
    assert sum(clock.sleeps) == pytest.approx(30.0)


def test_error_state_deletes_the_volume_and_fails(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.create_outcome = VolumeState.ERROR
    with pytest.raises(errors.Internal, match="state error"):
        create(core)
    assert len(cloud.deleted) == 1 and not cloud.volumes
    # the retry uses a fresh client token, so EC2 creates a new volume
    cloud.create_outcome = VolumeState.AVAILABLE
    created = create(core)
    assert created.volume_id != cloud.deleted[0]
    assert cloud.created_with[0][2] != cloud.created_with[1][2]


def test_stale_token_with_other_parameters_is_rotated_after_the_grace(
    core: ControllerCore, cloud: FakeCloud, clock: FakeClock
) -> None:
    # EC2 remembers the token from an earlier request with other parameters whose volume is gone.
    earlier = cloud.create_volume(VolumeSpec("pvc-1", 50), "us-east-1a", client_token("pvc-1"))
    cloud.delete_volume(earlier.volume_id)
    with pytest.raises(errors.OperationInProgress, match="no volume of that name is visible yet"):
        create(core)  # it could still be an invisible, live volume: no second request yet
    clock.advance(ControllerConfig().token_mismatch_grace)
    created = create(core)
    tokens = [token for _, _, token in cloud.created_with]
    assert tokens[0] == tokens[1] == tokens[2] != tokens[3]
    assert cloud.volumes[created.volume_id].volume.size_gib == 10


def test_token_mismatch_never_duplicates_a_volume_that_is_not_visible_yet(
    core: ControllerCore, cloud: FakeCloud, clock: FakeClock
) -> None:
    # Eventual consistency: EC2 created the first request's volume but Describe does not show it yet,
    # and the same name comes back with other parameters.
    cloud.fail("create_volume", *[errors.AlreadyExists("IdempotentParameterMismatch")] * 5)
    for _ in range(5):
        with pytest.raises(errors.OperationInProgress):
            create(core)
        clock.advance(5)
    assert not cloud.volumes  # no second volume was created within the grace
    assert len({token for _, _, token in cloud.created_with}) <= 1


def test_mismatch_with_a_visible_volume_is_judged_by_the_lookup(
    core: ControllerCore, cloud: FakeCloud
) -> None:
    first = create(core, size_gib=10)
    with pytest.raises(errors.AlreadyExists, match="incompatible"):
        create(core, size_gib=20)  # the lookup by name finds it first: ALREADY_EXISTS, no new request
    assert list(cloud.volumes) == [first.volume_id]


def test_recreating_a_deleted_name_gets_a_new_volume(core: ControllerCore, cloud: FakeCloud) -> None:
    first = create(core)
    core.delete_volume(first.volume_id)
    second = create(core)  # EC2 answers the old token with the deleted volume: rotated, created anew
    assert second.volume_id != first.volume_id
    assert second.volume_id in cloud.volumes


def test_unknown_zones_are_skipped_and_logged(core: ControllerCore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    requirement = TopologyRequirement(
        requisite=zones("us-east-1q", "us-east-1c"), preferred=zones("us-east-1q")
    )
    assert create(core, requirement=requirement).accessible_topology == ({ZONE_KEY: "us-east-1c"},)
    assert any("us-east-1q" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_no_usable_zone_is_resource_exhausted(core: ControllerCore, cloud: FakeCloud) -> None:
    with pytest.raises(errors.ResourceExhausted, match="eu-west-1a"):
        create(core, requirement=TopologyRequirement(requisite=zones("eu-west-1a")))
    assert cloud.calls["create_volume"] == 0


def test_no_requirement_uses_the_default_zone(cloud: FakeCloud, clock: FakeClock) -> None:
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig(default_zone="us-east-1c"))
    assert create(core).accessible_topology == ({ZONE_KEY: "us-east-1c"},)


def test_mutable_parameters_override_parameters(core: ControllerCore, cloud: FakeCloud) -> None:
    create(core, parameters={"type": "gp2"}, mutable={"TYPE": "gp3", "throughput": "500"})
    spec = cloud.created_with[0][0]
    assert (spec.volume_type, spec.throughput) == ("gp3", 500)


def test_format_options_are_returned_in_the_volume_context(core: ControllerCore) -> None:
    created = create(core, parameters={"blockSize": "4096", "ext4BigAlloc": "true"})
    assert created.volume_context == {"blocksize": "4096", "ext4bigalloc": "true"}


def test_no_cluster_id_means_no_cluster_tag(cloud: FakeCloud, clock: FakeClock) -> None:
    core = ControllerCore(cloud, clock, DriverConfig(driver_name="other.driver"), ControllerConfig())
    create(core)
    tags = cloud.created_with[0][0].tags
    assert tags[TAG_ZONAL_DRIVER] == "other.driver"
    assert not any(k.startswith("kubernetes.io/cluster/") for k in tags)


def test_multi_attach_needs_io2_block(core: ControllerCore, cloud: FakeCloud) -> None:
    created = create(core, parameters={"type": "io2", "iops": "1000"}, capabilities=[BLOCK_RWX, BLOCK_RWO])
    assert cloud.volumes[created.volume_id].volume.multi_attach
    with pytest.raises(errors.InvalidArgument, match="io2"):
        create(core, name="pvc-2", capabilities=[BLOCK_RWX])
    with pytest.raises(errors.InvalidArgument, match="block volumes only"):
        create(core, name="pvc-3", parameters={"type": "io2", "iops": "1000"}, capabilities=[MOUNT_RWX])


@pytest.mark.parametrize(
    "capability",
    [
        MOUNT_ROX,
        VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_READER_ONLY),
        VolumeCapability(AccessType.BLOCK, AccessMode.MULTI_NODE_SINGLE_WRITER),
        VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_MULTI_WRITER),
        VolumeCapability(AccessType.MOUNT, AccessMode.UNKNOWN),
        VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, "zfs"),
        VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, "ext4; rm -rf /"),
    ],
)
def test_unsupported_capabilities_are_invalid(core: ControllerCore, capability: VolumeCapability) -> None:
    with pytest.raises(errors.InvalidArgument, match="not supported"):
        create(core, capabilities=[capability])


def test_missing_name_or_capabilities_are_invalid(core: ControllerCore, cloud: FakeCloud) -> None:
    with pytest.raises(errors.InvalidArgument, match="name"):
        create(core, name="")
    with pytest.raises(errors.InvalidArgument, match="volume_capabilities"):
        create(core, capabilities=[])
    assert sum(cloud.calls.values()) == 0


def test_bad_parameter_and_capacity_fail_before_any_cloud_call(
    core: ControllerCore, cloud: FakeCloud
) -> None:
    with pytest.raises(errors.InvalidArgument, match="colour"):
        create(core, parameters={"colour": "blue"})
    with pytest.raises(errors.OutOfRange):
        create(core, size_gib=10, limit_gib=5)
    assert sum(cloud.calls.values()) == 0


def test_missing_source_snapshot_is_not_found_and_empty_source_is_none(core: ControllerCore) -> None:
    with pytest.raises(errors.NotFound, match="snap-0123456789abcdef0"):
        create(core, source=ContentSource(snapshot_id="snap-0123456789abcdef0"))
    # an empty source is no source
    created = create(core, source=ContentSource())
    assert created.volume_id and created.content_source is None


def test_cloud_errors_propagate(core: ControllerCore, cloud: FakeCloud) -> None:
    cloud.fail("create_volume", errors.ResourceExhausted("VolumeLimitExceeded"))
    with pytest.raises(errors.ResourceExhausted, match="VolumeLimitExceeded"):
        create(core)
    cloud.fail("create_volume", errors.Unavailable("throttled"))
    with pytest.raises(errors.Unavailable):
        create(core)
    cloud.fail("create_volume", errors.AlreadyExists("IdempotentParameterMismatch"))
    cloud.fail("find_volume_by_name", errors.Unavailable("throttled"))
    with pytest.raises(errors.Unavailable):
        create(core)


def test_an_account_that_encrypts_by_default_does_not_make_a_retry_incompatible(
    cloud: FakeCloud, clock: FakeClock
) -> None:
    # EBS encryption by default: the volume is encrypted although the StorageClass did not ask.
    core = ControllerCore(cloud, clock, DRIVER, ControllerConfig(lookup_before_create=True))
    first = create(core)
    entry = cloud.volumes[first.volume_id]
    entry.volume = dataclasses.replace(entry.volume, encrypted=True)
    assert create(core).volume_id == first.volume_id
    # asking for encryption of an unencrypted volume is still incompatible
    other = create(core, name="pvc-plain")
    with pytest.raises(errors.AlreadyExists, match="not encrypted"):
        create(core, name="pvc-plain", parameters={"encrypted": "true"})
    assert other.volume_id in cloud.volumes
