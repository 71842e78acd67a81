"""Issue 2's end to end: ``zonal all`` as a process against moto's threaded EC2 server, driven by
``zonal csi`` processes: create in a requested zone → publish → unpublish → delete, and a publish to a
node in another zone refused with FAILED_PRECONDITION."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import botocore.exceptions
import pytest
from moto.server import ThreadedMotoServer

from provisioner.model import ZONE_KEY
from tests.e2e.procs import Server, csi, csi_json, running

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
ANY_AMI = "ami-12c6146b"  # moto accepts any image id when it does not load its public images


@dataclass
class World:
    ec2: EC2Client
    zonal: Server
    node_b: str  # an instance in us-east-1b, the node the zonal process serves
    node_a: str  # an instance in us-east-1a


def _instance(ec2: EC2Client, zone: str) -> str:
    resp = ec2.run_instances(
        ImageId=ANY_AMI, MinCount=1, MaxCount=1, InstanceType="m5.large", Placement={"AvailabilityZone": zone}
    )
    return resp["Instances"][0]["InstanceId"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("moto-e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # ten times faster, and no public images needed
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        try:
            host, port = moto.get_host_and_port()
            url = f"http://{host}:{port}"
            ec2: EC2Client = boto3.client(
                "ec2",
                region_name=REGION,
                endpoint_url=url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            node_b, node_a = _instance(ec2, "us-east-1b"), _instance(ec2, "us-east-1a")
            env = {
                "AWS_ENDPOINT_URL_EC2": url,  # boto3's own variable: zonal reads no endpoint of its own
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": REGION,
            }
            args = ["all", "--node-id", node_b, "--zone", "us-east-1b", "--instance-type", "m5.large"]
            with running(args, folder / "csi.sock", folder / "zonal.log", env=env) as zonal:
                yield World(ec2, zonal, node_b, node_a)
        finally:
            moto.stop()


def _volume(ec2: EC2Client, volume_id: str) -> dict[str, object]:
    vols = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    assert len(vols) == 1
    return dict(vols[0])


def test_create_in_the_preferred_zone_publish_unpublish_delete(world: World) -> None:
    z = world.zonal
    created = csi_json(
        z, "create-volume", "--name", "pvc-e2e-1", "--size", "2Gi", "--preferred", f"{ZONE_KEY}=us-east-1b"
    )
    vol = created["volume_id"]
    assert created["accessible_topology"] == [{ZONE_KEY: "us-east-1b"}]
    assert created["capacity_bytes"] == 2 << 30
    ebs = _volume(world.ec2, vol)
    assert (ebs["AvailabilityZone"], ebs["Size"]) == ("us-east-1b", 2)

    published = csi_json(z, "publish", vol, "--node-id", world.node_b)
    assert published["publish_context"]["devicePath"].startswith("/dev/xvd")
    attachments = _volume(world.ec2, vol)["Attachments"]
    assert isinstance(attachments, list)
    assert [(a["InstanceId"], a["State"]) for a in attachments] == [(world.node_b, "attached")]

    got = csi_json(z, "get-volume", vol)
    assert got["published_node_ids"] == [world.node_b]

    csi_json(z, "unpublish", vol, "--node-id", world.node_b)
    ebs = _volume(world.ec2, vol)
    assert (ebs["State"], ebs["Attachments"]) == ("available", [])

    assert csi_json(z, "delete-volume", vol) == {"volume_id": vol, "deleted": True}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        world.ec2.describe_volumes(VolumeIds=[vol])
    assert e.value.response["Error"]["Code"] == "InvalidVolume.NotFound"


def test_publish_to_a_node_in_another_zone_is_failed_precondition(world: World) -> None:
    z = world.zonal
    vol = csi_json(z, "create-volume", "--name", "pvc-e2e-2", "--size", "1Gi", "--zone", "us-east-1b")[
        "volume_id"
    ]
    done = csi(z, "publish", vol, "--node-id", world.node_a)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("zonal csi: FAILED_PRECONDITION: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _volume(world.ec2, vol)["Attachments"] == []
    csi_json(z, "delete-volume", vol)


def test_node_info_and_an_unknown_volume(world: World) -> None:
    info = csi(world.zonal, "node-info")
    assert info.returncode == 0, info.stderr
    assert f"node_id: {world.node_b}" in info.stdout.splitlines()
    missing = csi(world.zonal, "get-volume", "vol-0123456789abcdef0")
    assert missing.returncode == 1 and missing.stderr.startswith("zonal csi: NOT_FOUND: ")
