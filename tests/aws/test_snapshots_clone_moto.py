"""CopyVolumes in the EC2 adapter, and the controller's snapshot/restore/clone/expand rules over moto.

moto lacks CopyVolumes, which is exactly the fallback path; the request shape of a real CopyVolumes
and EC2's refusal codes are replayed with botocore's Stubber.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3.session
import pytest
from botocore.stub import Stubber

from provisioner import errors
from provisioner.aws.client import build_ec2_client
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import CloudConfig, ControllerConfig, DriverConfig
from provisioner.controller import ControllerCore
from provisioner.controller.ownership import TAG_SOURCE_VOLUME
from provisioner.model import (
    GIB,
    TAG_VOLUME_NAME,
    ZONE_KEY,
    AccessMode,
    AccessType,
    CapacityRange,
    ContentSource,
    TopologyRequirement,
    VolumeCapability,
    VolumeSpec,
)
from tests.aws.conftest import REGION, Recorder
from tests.fakes.clock import FakeClock

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

DRIVER = DriverConfig(driver_name="zonal.csi.dev", cluster_id="moto")
RWO = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, "ext4")
SOURCE = "vol-0123456789abcdef0"


def _core(cloud: Ec2Cloud) -> ControllerCore:
    return ControllerCore(cloud, FakeClock(), DRIVER, ControllerConfig(modify_merge_window=0.0))


def _create(
    core: ControllerCore, name: str, gib: int, source: ContentSource | None = None, zone: str = ""
) -> str:
    requirement = TopologyRequirement(requisite=({ZONE_KEY: zone},)) if zone else TopologyRequirement()
    created = core.create_volume(name, CapacityRange(gib * GIB), (RWO,), {}, {}, requirement, source, None)
    return created.volume_id


def test_copy_volume_on_moto_is_unimplemented_and_remembered(cloud: Ec2Cloud, recorder: Recorder) -> None:
    source = cloud.create_volume(VolumeSpec("src", 5), "us-east-1a", "tok")
    for _ in range(2):
        with pytest.raises(errors.Unimplemented, match="CopyVolumes"):
            cloud.copy_volume(source.volume_id, VolumeSpec("clone", 5), "tok2")
    assert len(recorder.of("CopyVolumes")) == 1


def test_clone_restore_expand_and_listing_over_moto(cloud: Ec2Cloud, ec2: EC2Client) -> None:
    core = _core(cloud)
    origin = _create(core, "origin", 5, zone="us-east-1b")
    clone = _create(core, "clone", 8, ContentSource(volume_id=origin))
    described = ec2.describe_volumes(VolumeIds=[clone])["Volumes"][0]
    assert described["AvailabilityZone"] == "us-east-1b" and described["Size"] == 8
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags[TAG_SOURCE_VOLUME] == origin and tags[TAG_VOLUME_NAME] == "clone"
    assert ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] == [], "intermediate snapshot deleted"
    assert _create(core, "clone", 8, ContentSource(volume_id=origin)) == clone

    snapshot = core.create_snapshot("snap-1", origin, {"tagSpecification_1": "k=v"})
    assert core.create_snapshot("snap-1", origin, {}).snapshot_id == snapshot.snapshot_id
    with pytest.raises(errors.AlreadyExists):
        core.create_snapshot("snap-1", clone, {})
    restored = _create(core, "restored", 2, ContentSource(snapshot_id=snapshot.snapshot_id))
    assert ec2.describe_volumes(VolumeIds=[restored])["Volumes"][0]["Size"] == 5, "grown to the snapshot"
    assert core.expand_volume(restored, CapacityRange(7 * GIB), RWO, None).capacity_bytes == 7 * GIB
    assert ec2.describe_volumes(VolumeIds=[restored])["Volumes"][0]["Size"] == 7

    assert [s.snapshot_id for s in core.list_snapshots().items] == [snapshot.snapshot_id]
    core.delete_snapshot(snapshot.snapshot_id)
    core.delete_snapshot(snapshot.snapshot_id)
    assert core.list_snapshots().items == ()


def test_list_snapshots_never_shows_public_ones(ec2_with_public_images: EC2Client) -> None:
    core = _core(Ec2Cloud(ec2_with_public_images, REGION))
    public = ec2_with_public_images.describe_snapshots(MaxResults=5)["Snapshots"][0]["SnapshotId"]
    origin = _create(core, "origin", 1, zone="us-east-1a")
    ours = sorted(core.create_snapshot(f"s{i}", origin, {}).snapshot_id for i in range(3))
    first = core.list_snapshots(max_entries=2)
    rest = core.list_snapshots(max_entries=2, starting_token=first.next_token)
    assert [s.snapshot_id for s in first.items + rest.items] == ours and not rest.next_token
    # a pre-provisioned (imported) snapshot is answered when named explicitly
    assert [s.snapshot_id for s in core.list_snapshots(snapshot_id=public).items] == [public]


@pytest.fixture
def stubbed(boto_session: boto3.session.Session) -> Iterator[tuple[Ec2Cloud, Stubber]]:
    client = build_ec2_client(CloudConfig(region=REGION, max_attempts=1), boto_session)
    with Stubber(client) as stub:
        yield Ec2Cloud(client, REGION), stub
        stub.assert_no_pending_responses()


def test_copy_volume_request_shape(stubbed: tuple[Ec2Cloud, Stubber]) -> None:
    cloud, stub = stubbed
    stub.add_response(
        "copy_volumes",
        {"Volumes": [{"VolumeId": "vol-0aaaaaaaaaaaaaaaa", "Size": 20, "State": "creating"}]},
        {
            "SourceVolumeId": SOURCE,
            "Size": 20,
            "VolumeType": "gp3",
            "ClientToken": "tok",
            "Iops": 4000,
            "TagSpecifications": [
                {
                    "ResourceType": "volume",
                    "Tags": [{"Key": TAG_VOLUME_NAME, "Value": "clone"}, {"Key": "k", "Value": "v"}],
                }
            ],
        },
    )
    volume = cloud.copy_volume(SOURCE, VolumeSpec("clone", 20, iops=4000, tags={"k": "v"}), "tok")
    assert volume.volume_id == "vol-0aaaaaaaaaaaaaaaa" and volume.size_gib == 20


@pytest.mark.parametrize(
    ("code", "expected", "remembered"),
    [
        ("InvalidAction", errors.Unimplemented, True),
        ("UnsupportedOperation", errors.Unimplemented, True),
        ("InvalidVolume.NotFound", errors.NotFound, False),
        ("IdempotentParameterMismatch", errors.AlreadyExists, False),
    ],
)
def test_copy_volume_errors(
    stubbed: tuple[Ec2Cloud, Stubber], code: str, expected: type[errors.ZonalError], remembered: bool
) -> None:
    cloud, stub = stubbed
    stub.add_client_error("copy_volumes", service_error_code=code, service_message=f"{code} happened")
    with pytest.raises(expected, match=code):
        cloud.copy_volume(SOURCE, VolumeSpec("clone", 20), "tok")
    if remembered:  # no second request: the Stubber would fail on an unexpected call
        with pytest.raises(errors.Unimplemented):
            cloud.copy_volume(SOURCE, VolumeSpec("clone", 20), "tok")
