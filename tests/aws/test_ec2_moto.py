"""Ec2Cloud against moto: request shape, tags, filters, pagination, and the errors moto can produce."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from provisioner import errors
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.model import TAG_SNAPSHOT_NAME, TAG_VOLUME_NAME, VolumeSpec, VolumeState
from provisioner.ports.cloud import Cloud
from tests.aws.conftest import REGION, Recorder, run_instance

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

OWNER = {"kubernetes.io/cluster/test": "owned"}
UNKNOWN_VOLUME = "vol-0123456789abcdef0"
UNKNOWN_INSTANCE = "i-0123456789abcdef0"
UNKNOWN_SNAPSHOT = "snap-0123456789abcdef0"


def spec(name: str = "pvc-1", **kw: object) -> VolumeSpec:
    return VolumeSpec(name=name, size_gib=kw.pop("size_gib", 10), tags=kw.pop("tags", OWNER), **kw)  # type: ignore[arg-type]


def test_ec2_cloud_implements_the_cloud_port(cloud: Ec2Cloud) -> None:
    port: Cloud = cloud
    assert port.region == REGION


def test_check_access_sends_a_dry_run(cloud: Ec2Cloud, recorder: Recorder) -> None:
    cloud.check_access()
    assert recorder.last("DescribeAvailabilityZones")["DryRun"] is True


def test_zones_are_listed_once_and_cached(cloud: Ec2Cloud, recorder: Recorder) -> None:
    first = cloud.availability_zones()
    second = cloud.availability_zones()
    assert first == second
    assert [z.name for z in first][:3] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert all(z.zone_id.startswith("use1-az") for z in first)
    assert len(recorder.of("DescribeAvailabilityZones")) == 1


def test_create_volume_sends_token_tags_and_only_the_set_options(cloud: Ec2Cloud, recorder: Recorder) -> None:
    volume = cloud.create_volume(spec(tags={**OWNER, "team": "a"}), "us-east-1b", "tok-123")

    sent = recorder.last("CreateVolume")
    assert sent["ClientToken"] == "tok-123"
    assert sent["AvailabilityZone"] == "us-east-1b"
    assert sent["Size"] == 10
    assert sent["VolumeType"] == "gp3"
    assert sent["TagSpecifications"] == [
        {
            "ResourceType": "volume",
            "Tags": [
                {"Key": TAG_VOLUME_NAME, "Value": "pvc-1"},
                {"Key": "kubernetes.io/cluster/test", "Value": "owned"},
                {"Key": "team", "Value": "a"},
            ],
        }
    ]
    for absent in ("Iops", "Throughput", "Encrypted", "KmsKeyId", "MultiAttachEnabled", "SnapshotId"):
        assert absent not in sent
    assert volume.zone == "us-east-1b"
    assert volume.size_gib == 10
    assert volume.name == "pvc-1"
    assert volume.tags["team"] == "a"


def test_create_volume_sends_performance_encryption_and_multi_attach(
    cloud: Ec2Cloud, recorder: Recorder
) -> None:
    wanted = spec(
        volume_type="io2", iops=3000, kms_key_id="arn:aws:kms:us-east-1:123456789012:key/k", multi_attach=True
    )
    volume = cloud.create_volume(wanted, "us-east-1a", "tok")

    sent = recorder.last("CreateVolume")
    assert (sent["VolumeType"], sent["Iops"], sent["MultiAttachEnabled"]) == ("io2", 3000, True)
    assert (sent["Encrypted"], sent["KmsKeyId"]) == (True, wanted.kms_key_id)
    assert "Throughput" not in sent
    assert volume.encrypted
    assert volume.volume_type == "io2"


def test_gp3_throughput_is_sent_when_set(cloud: Ec2Cloud, recorder: Recorder) -> None:
    cloud.create_volume(spec(iops=4000, throughput=250, encrypted=True), "us-east-1a", "tok")
    sent = recorder.last("CreateVolume")
    assert (sent["Iops"], sent["Throughput"], sent["Encrypted"]) == (4000, 250, True)
    assert "KmsKeyId" not in sent


def test_get_volume_reads_back_what_ec2_reports(cloud: Ec2Cloud) -> None:
    created = cloud.create_volume(spec(), "us-east-1c", "tok")
    got = cloud.get_volume(created.volume_id)
    assert got.volume_id == created.volume_id
    assert got.zone == "us-east-1c"
    assert got.state is VolumeState.AVAILABLE
    assert got.attachments == ()


def test_find_volume_by_name_uses_the_name_tag_filter(cloud: Ec2Cloud, recorder: Recorder) -> None:
    created = cloud.create_volume(spec("pvc-a"), "us-east-1a", "tok-a")
    cloud.create_volume(spec("pvc-b"), "us-east-1a", "tok-b")

    found = cloud.find_volume_by_name("pvc-a")

    assert found is not None
    assert found.volume_id == created.volume_id
    assert recorder.last("DescribeVolumes")["Filters"] == [
        {"Name": f"tag:{TAG_VOLUME_NAME}", "Values": ["pvc-a"]}
    ]
    assert cloud.find_volume_by_name("pvc-missing") is None


def test_find_volume_by_name_ignores_deleted_volumes(cloud: Ec2Cloud) -> None:
    created = cloud.create_volume(spec("pvc-a"), "us-east-1a", "tok-a")
    cloud.delete_volume(created.volume_id)
    assert cloud.find_volume_by_name("pvc-a") is None


def test_unknown_volume_is_not_found_everywhere(cloud: Ec2Cloud) -> None:
    with pytest.raises(errors.NotFound, match=r"InvalidVolume\.NotFound"):
        cloud.get_volume(UNKNOWN_VOLUME)
    with pytest.raises(errors.NotFound, match=UNKNOWN_VOLUME):
        cloud.delete_volume(UNKNOWN_VOLUME)
    with pytest.raises(errors.NotFound):
        cloud.create_snapshot(UNKNOWN_VOLUME, {}, "")
    with pytest.raises(errors.NotFound):
        cloud.create_tags(UNKNOWN_VOLUME, {"a": "b"})
    with pytest.raises(errors.NotFound):
        cloud.get_volume_modification(UNKNOWN_VOLUME)


def test_translated_errors_keep_the_botocore_cause(cloud: Ec2Cloud) -> None:
    with pytest.raises(errors.NotFound) as caught:
        cloud.get_volume("vol-0000000000000dead")
    assert type(caught.value.__cause__).__name__ == "ClientError"
    assert str(caught.value).startswith(
        "DescribeVolumes volume vol-0000000000000dead: EC2 InvalidVolume.NotFound:"
    )


def test_unknown_instance_is_not_found(cloud: Ec2Cloud) -> None:
    with pytest.raises(errors.NotFound, match=r"InvalidInstanceID\.NotFound"):
        cloud.get_instance(UNKNOWN_INSTANCE)


def test_instance_lists_its_block_devices(cloud: Ec2Cloud, ec2: EC2Client) -> None:
    instance_id = run_instance(ec2, "us-east-1b")
    volume = cloud.create_volume(spec(), "us-east-1b", "tok")
    cloud.attach_volume(volume.volume_id, instance_id, "/dev/xvdba")

    instance = cloud.get_instance(instance_id)

    assert instance.zone == "us-east-1b"
    assert instance.state == "running"
    assert instance.block_devices["/dev/xvdba"] == volume.volume_id
    assert "/dev/sda1" in instance.block_devices  # the root device
    attached = cloud.get_volume(volume.volume_id)
    assert [(a.instance_id, a.device) for a in attached.attachments] == [(instance_id, "/dev/xvdba")]


def test_delete_attached_volume_is_failed_precondition(cloud: Ec2Cloud, ec2: EC2Client) -> None:
    instance_id = run_instance(ec2)
    volume = cloud.create_volume(spec(), "us-east-1a", "tok")
    cloud.attach_volume(volume.volume_id, instance_id, "/dev/xvdba")
    with pytest.raises(errors.FailedPrecondition, match="VolumeInUse"):
        cloud.delete_volume(volume.volume_id)


def test_attach_and_detach_round_trip(cloud: Ec2Cloud, ec2: EC2Client, recorder: Recorder) -> None:
    instance_id = run_instance(ec2)
    volume = cloud.create_volume(spec(), "us-east-1a", "tok")
    cloud.attach_volume(volume.volume_id, instance_id, "/dev/xvdbb")
    cloud.detach_volume(volume.volume_id, instance_id)

    assert recorder.last("AttachVolume") == {
        "VolumeId": volume.volume_id,
        "InstanceId": instance_id,
        "Device": "/dev/xvdbb",
    }
    assert recorder.last("DetachVolume") == {"VolumeId": volume.volume_id, "InstanceId": instance_id}
    assert cloud.get_volume(volume.volume_id).state is VolumeState.AVAILABLE


def test_describe_volumes_skips_unknown_ids(cloud: Ec2Cloud) -> None:
    one = cloud.create_volume(spec("a"), "us-east-1a", "ta")
    two = cloud.create_volume(spec("b"), "us-east-1a", "tb")
    found = cloud.describe_volumes([one.volume_id, UNKNOWN_VOLUME, "bogus", two.volume_id, one.volume_id])
    assert set(found) == {one.volume_id, two.volume_id}


def test_describe_instances_skips_unknown_ids(cloud: Ec2Cloud, ec2: EC2Client) -> None:
    instance_id = run_instance(ec2, "us-east-1c")
    found = cloud.describe_instances([instance_id, UNKNOWN_INSTANCE])
    assert list(found) == [instance_id]
    assert found[instance_id].zone == "us-east-1c"


# Pagination.


def _make_volumes(cloud: Ec2Cloud, count: int, tags: dict[str, str] = OWNER) -> set[str]:
    return {
        cloud.create_volume(spec(f"pvc-{i}", tags=tags), "us-east-1a", f"t{i}").volume_id
        for i in range(count)
    }


def _walk(cloud: Ec2Cloud, max_results: int) -> tuple[list[str], int]:
    ids: list[str] = []
    token = ""
    pages = 0
    while True:
        page = cloud.list_volumes(OWNER, max_results, token)
        pages += 1
        assert 0 < len(page.items) <= max_results
        ids.extend(v.volume_id for v in page.items)
        token = page.next_token
        if not token:
            return ids, pages


@pytest.mark.parametrize("max_results", [1, 2, 4, 5, 7])
def test_list_volumes_pages_through_everything_once(
    cloud: Ec2Cloud, recorder: Recorder, max_results: int
) -> None:
    mine = _make_volumes(cloud, 12)
    _make_volumes(cloud, 3, tags={"other": "driver"})

    ids, pages = _walk(cloud, max_results)

    assert sorted(ids) == sorted(mine)
    assert pages == -(-12 // max_results)
    for sent in recorder.of("DescribeVolumes"):
        assert 5 <= sent["MaxResults"] <= 500  # EC2's bounds, whatever the caller asked
        assert sent["Filters"] == [{"Name": "tag:kubernetes.io/cluster/test", "Values": ["owned"]}]


def test_list_volumes_without_limit_returns_all(cloud: Ec2Cloud) -> None:
    mine = _make_volumes(cloud, 7)
    page = cloud.list_volumes(OWNER, 0, "")
    assert {v.volume_id for v in page.items} == mine
    assert page.next_token == ""


def test_list_volumes_clamps_a_huge_limit(cloud: Ec2Cloud, recorder: Recorder) -> None:
    mine = _make_volumes(cloud, 3)
    page = cloud.list_volumes(OWNER, 10_000, "")
    assert {v.volume_id for v in page.items} == mine
    assert recorder.last("DescribeVolumes")["MaxResults"] == 500


@pytest.mark.parametrize("token", ["garbage", "x:abc", ":abc", "-1:abc"])
def test_list_volumes_refuses_a_token_it_did_not_issue(cloud: Ec2Cloud, token: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="starting token"):
        cloud.list_volumes(OWNER, 5, token)


# Snapshots.


def test_snapshot_round_trip_with_tags(cloud: Ec2Cloud, recorder: Recorder) -> None:
    volume = cloud.create_volume(spec(size_gib=3), "us-east-1a", "tok")
    tags = {**OWNER, TAG_SNAPSHOT_NAME: "snap-a"}

    snapshot = cloud.create_snapshot(volume.volume_id, tags, "made by zonal")

    sent = recorder.last("CreateSnapshot")
    assert sent["Description"] == "made by zonal"
    assert sent["TagSpecifications"][0]["ResourceType"] == "snapshot"
    assert {t["Key"]: t["Value"] for t in sent["TagSpecifications"][0]["Tags"]} == tags
    assert (snapshot.source_volume_id, snapshot.size_gib) == (volume.volume_id, 3)
    assert snapshot.created_at > 0
    assert cloud.get_snapshot(snapshot.snapshot_id).tags[TAG_SNAPSHOT_NAME] == "snap-a"
    found = cloud.find_snapshot_by_name("snap-a")
    assert found is not None
    assert found.snapshot_id == snapshot.snapshot_id
    assert cloud.find_snapshot_by_name("snap-missing") is None
    cloud.delete_snapshot(snapshot.snapshot_id)
    with pytest.raises(errors.NotFound, match=r"InvalidSnapshot\.NotFound"):
        cloud.get_snapshot(snapshot.snapshot_id)


def test_snapshot_listing_never_returns_public_snapshots(ec2_with_public_images: EC2Client) -> None:
    ec2 = ec2_with_public_images
    cloud = Ec2Cloud(ec2, REGION)
    recorder = Recorder()
    ec2.meta.events.register("before-parameter-build.ec2.*", recorder)
    # The premise: moto holds 1,000+ snapshots of other accounts, and OwnerIds=self alone lets them through.
    assert len(ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]) >= 1000
    volume = cloud.create_volume(spec(), "us-east-1a", "tok")
    other = cloud.create_volume(spec("pvc-2"), "us-east-1a", "tok2")
    ours = {cloud.create_snapshot(volume.volume_id, OWNER, "").snapshot_id for _ in range(3)}
    cloud.create_snapshot(other.volume_id, OWNER, "")

    page = cloud.list_snapshots(OWNER, "", 0, "")
    of_volume = cloud.list_snapshots(OWNER, volume.volume_id, 2, "")

    assert len(page.items) == 4
    assert {s.snapshot_id for s in of_volume.items} <= ours
    assert len(of_volume.items) == 2
    assert of_volume.next_token
    rest = cloud.list_snapshots(OWNER, volume.volume_id, 2, of_volume.next_token)
    assert {s.snapshot_id for s in of_volume.items + rest.items} == ours
    for sent in recorder.of("DescribeSnapshots")[1:]:
        assert sent["OwnerIds"] == ["self"]
        assert {"Name": "tag:kubernetes.io/cluster/test", "Values": ["owned"]} in sent["Filters"]
    assert {"Name": "volume-id", "Values": [volume.volume_id]} in recorder.last("DescribeSnapshots")[
        "Filters"
    ]


def test_unknown_snapshot_is_not_found(cloud: Ec2Cloud) -> None:
    with pytest.raises(errors.NotFound):
        cloud.get_snapshot(UNKNOWN_SNAPSHOT)
    with pytest.raises(errors.NotFound):
        cloud.delete_snapshot(UNKNOWN_SNAPSHOT)


# Modification and tags.


def test_modify_volume_sends_only_what_changes(cloud: Ec2Cloud, recorder: Recorder) -> None:
    volume = cloud.create_volume(spec(size_gib=1), "us-east-1a", "tok")
    assert cloud.get_volume_modification(volume.volume_id) is None

    modification = cloud.modify_volume(volume.volume_id, size_gib=4)

    assert recorder.last("ModifyVolume") == {"VolumeId": volume.volume_id, "Size": 4}
    assert (modification.volume_id, modification.target_size_gib) == (volume.volume_id, 4)
    latest = cloud.get_volume_modification(volume.volume_id)
    assert latest is not None
    assert latest.target_size_gib == 4
    assert latest.state in {"modifying", "optimizing", "completed"}


def test_modify_volume_with_nothing_to_change_is_invalid(cloud: Ec2Cloud) -> None:
    with pytest.raises(errors.InvalidArgument, match="nothing to change"):
        cloud.modify_volume("vol-0000000000000dead")


def test_tags_are_created_and_deleted(cloud: Ec2Cloud, recorder: Recorder) -> None:
    volume = cloud.create_volume(spec(), "us-east-1a", "tok")
    cloud.create_tags(volume.volume_id, {"b": "2", "a": "1"})
    assert recorder.last("CreateTags")["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    cloud.delete_tags(volume.volume_id, ["a"])
    tags = cloud.get_volume(volume.volume_id).tags
    assert tags["b"] == "2"
    assert "a" not in tags
    cloud.create_tags(volume.volume_id, {})
    cloud.delete_tags(volume.volume_id, [])
    assert len(recorder.of("CreateTags")) == 1
    assert len(recorder.of("DeleteTags")) == 1
