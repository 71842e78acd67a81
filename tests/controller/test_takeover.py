"""Ownership and the takeover from aws-ebs-csi-driver, over real gRPC against the EC2 simulator.

aws-ebs-csi-driver tags what it creates with ``CSIVolumeName`` (snapshots: ``CSIVolumeSnapshotName``)
and ``ebs.csi.aws.com/cluster=true`` (plus ``kubernetes.io/cluster/<id>=owned`` with a cluster id).
zonal running as ``ebs.csi.aws.com`` owns those; under its own name it does not. Volumes made outside
Kubernetes (static PVs, no tags) can be attached, expanded and snapshotted, never deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner.config import EBS_DRIVER_NAME, DriverConfig
from provisioner.controller.tokens import client_token
from provisioner.csi._proto import csi_pb2
from provisioner.model import (
    GIB,
    TAG_CLUSTER_PREFIX,
    TAG_DRIVER,
    TAG_SNAPSHOT_NAME,
    TAG_VOLUME_NAME,
    TAG_ZONAL_DRIVER,
)
from tests.controller.simgrpc import World, sim_world

RWO = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
    access_mode=csi_pb2.VolumeCapability.AccessMode(
        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    ),
)
AWS_VOLUME = {TAG_VOLUME_NAME: "pvc-made-by-aws-ebs-csi-driver", TAG_DRIVER: "true"}
AWS_SNAPSHOT = {TAG_SNAPSHOT_NAME: "snapshot-made-by-aws-ebs-csi-driver", TAG_DRIVER: "true"}


@pytest.fixture
def as_ebs(tmp_path: Path) -> Iterator[World]:
    with sim_world(tmp_path, DriverConfig(driver_name=EBS_DRIVER_NAME)) as world:
        yield world


def code_of(error: BaseException) -> grpc.StatusCode:
    assert isinstance(error, grpc.RpcError)
    code = error.code()
    assert isinstance(code, grpc.StatusCode)
    return code


def listed(world: World) -> set[str]:
    return {
        e.volume.volume_id for e in world.stubs.controller.ListVolumes(csi_pb2.ListVolumesRequest()).entries
    }


def test_takeover_deletes_what_aws_ebs_csi_driver_made(as_ebs: World) -> None:
    ctl = as_ebs.stubs.controller
    volume_id = as_ebs.make_volume(AWS_VOLUME)
    snapshot_id = as_ebs.make_snapshot(volume_id, AWS_SNAPSHOT)
    assert volume_id in listed(as_ebs)
    snapshots = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(), timeout=30).entries
    assert snapshot_id in {s.snapshot.snapshot_id for s in snapshots}
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id), timeout=30)
    assert snapshot_id not in as_ebs.snapshots()
    ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=30)
    assert volume_id not in as_ebs.volumes()
    assert volume_id not in listed(as_ebs)


def test_takeover_answers_an_inflight_claim_with_the_volume_aws_ebs_csi_driver_made(as_ebs: World) -> None:
    # aws-ebs-csi-driver's ClientToken is sha256 of the name, like zonal's: a claim the old driver
    # started is finished by zonal with the same volume, not a second one.
    name = "pvc-started-before-the-takeover"
    volume_id = as_ebs.make_volume(
        {TAG_VOLUME_NAME: name, TAG_DRIVER: "true"}, size=1, ClientToken=client_token(name)
    )
    request = csi_pb2.CreateVolumeRequest(
        name=name, volume_capabilities=[RWO], capacity_range=csi_pb2.CapacityRange(required_bytes=GIB)
    )
    request.accessibility_requirements.requisite.add().segments["topology.kubernetes.io/zone"] = "us-east-1a"
    created = as_ebs.stubs.controller.CreateVolume(request, timeout=30).volume
    assert created.volume_id == volume_id
    assert len([v for v, raw in as_ebs.volumes().items() if _tags(raw).get(TAG_VOLUME_NAME) == name]) == 1


def test_under_its_own_name_zonal_refuses_aws_ebs_csi_driver_volumes(tmp_path: Path) -> None:
    with sim_world(tmp_path) as world:
        volume_id = world.make_volume(AWS_VOLUME)
        snapshot_id = world.make_snapshot(volume_id, AWS_SNAPSHOT)
        ctl = world.stubs.controller
        with pytest.raises(grpc.RpcError) as info:
            ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=30)
        assert code_of(info.value) == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as info:
            ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id), timeout=30)
        assert code_of(info.value) == grpc.StatusCode.FAILED_PRECONDITION
        assert volume_id in world.volumes() and snapshot_id in world.snapshots()
        assert volume_id not in listed(world)


@pytest.mark.parametrize(
    "tags",
    [
        {TAG_VOLUME_NAME: "pvc-x"},  # no ebs.csi.aws.com/cluster
        {TAG_DRIVER: "true"},  # no name: not something a CSI driver made
        {TAG_VOLUME_NAME: "pvc-x", TAG_DRIVER: "false"},
        {TAG_VOLUME_NAME: "pvc-x", TAG_DRIVER: "true", TAG_ZONAL_DRIVER: "zonal.csi.dev"},  # another zonal's
        {},  # a static PV made outside Kubernetes
    ],
)
def test_takeover_still_refuses_what_no_ebs_driver_made(as_ebs: World, tags: dict[str, str]) -> None:
    volume_id = as_ebs.make_volume(tags)
    with pytest.raises(grpc.RpcError) as info:
        as_ebs.stubs.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=30)
    assert code_of(info.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert "refusing to delete" in str(info.value)
    assert volume_id in as_ebs.volumes()
    assert volume_id not in listed(as_ebs)


def test_with_a_cluster_id_only_that_clusters_volumes_are_taken_over(tmp_path: Path) -> None:
    driver = DriverConfig(driver_name=EBS_DRIVER_NAME, cluster_id="prod")
    with sim_world(tmp_path, driver) as world:
        before = set(world.volumes())  # the instances' root volumes
        ours = world.make_volume({**AWS_VOLUME, TAG_CLUSTER_PREFIX + "prod": "owned"})
        theirs = world.make_volume({**AWS_VOLUME, TAG_CLUSTER_PREFIX + "test": "owned"})
        untagged = world.make_volume(AWS_VOLUME)
        assert listed(world) == {ours}
        world.stubs.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=ours), timeout=30)
        for other in (theirs, untagged):
            with pytest.raises(grpc.RpcError) as info:
                world.stubs.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=other), timeout=30)
            assert code_of(info.value) == grpc.StatusCode.FAILED_PRECONDITION
        assert set(world.volumes()) - before == {theirs, untagged}


def test_a_static_pv_attaches_expands_and_snapshots_but_is_never_deleted(as_ebs: World) -> None:
    ctl = as_ebs.stubs.controller
    volume_id = as_ebs.make_volume({}, size=4)
    ctl.ControllerPublishVolume(
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume_id, node_id=as_ebs.node, volume_capability=RWO
        ),
        timeout=30,
    )
    assert as_ebs.volumes()[volume_id]["State"] == "in-use"
    expanded = ctl.ControllerExpandVolume(
        csi_pb2.ControllerExpandVolumeRequest(
            volume_id=volume_id, capacity_range=csi_pb2.CapacityRange(required_bytes=8 * GIB)
        ),
        timeout=30,
    )
    assert expanded.capacity_bytes == 8 * GIB and as_ebs.volumes()[volume_id]["Size"] == 8
    snapshot = ctl.CreateSnapshot(
        csi_pb2.CreateSnapshotRequest(name="snap-of-static", source_volume_id=volume_id), timeout=30
    ).snapshot
    assert snapshot.source_volume_id == volume_id
    ctl.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=as_ebs.node), timeout=30
    )
    with pytest.raises(grpc.RpcError) as info:
        ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id), timeout=30)
    assert code_of(info.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert volume_id in as_ebs.volumes()
    # The snapshot zonal made of it is zonal's own: deleting it is fine.
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot.snapshot_id), timeout=30)


def _tags(raw: dict[str, object]) -> dict[str, str]:
    items = raw.get("Tags") or []
    assert isinstance(items, list)
    return {str(t["Key"]): str(t["Value"]) for t in items}
