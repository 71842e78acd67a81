"""Ec2Cloud against EC2 answers moto cannot give: botocore's Stubber replays the real error codes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3.session
import pytest
from botocore.stub import Stubber

from provisioner import errors
from provisioner.aws.client import build_ec2_client
from provisioner.aws.ec2 import Ec2Cloud
from provisioner.config import CloudConfig
from provisioner.model import VolumeSpec
from tests.aws.conftest import REGION

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

VOL = "vol-0123456789abcdef0"
INSTANCE = "i-0123456789abcdef0"


@pytest.fixture
def client(boto_session: boto3.session.Session) -> EC2Client:
    return build_ec2_client(CloudConfig(region=REGION, max_attempts=1), boto_session)


@pytest.fixture
def stub(client: EC2Client) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def cloud(client: EC2Client) -> Ec2Cloud:
    return Ec2Cloud(client, REGION)


def fail(
    stub: Stubber, method: str, code: str, message: str = "", status: int = 400, **expected: Any
) -> None:
    stub.add_client_error(
        method,
        service_error_code=code,
        service_message=message or f"{code} happened",
        http_status_code=status,
        expected_params=expected or None,
    )


def test_idempotent_parameter_mismatch_is_already_exists(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(stub, "create_volume", "IdempotentParameterMismatch")
    with pytest.raises(errors.AlreadyExists, match="IdempotentParameterMismatch"):
        cloud.create_volume(VolumeSpec(name="pvc-1", size_gib=1), "us-east-1a", "tok")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("VolumeLimitExceeded", errors.ResourceExhausted),
        ("InsufficientVolumeCapacity", errors.ResourceExhausted),
        ("MaxIOPSLimitExceeded", errors.ResourceExhausted),
        ("InvalidZone.NotFound", errors.InvalidArgument),
        ("InvalidParameterCombination", errors.InvalidArgument),
        ("InvalidSnapshot.NotFound", errors.NotFound),
        ("UnauthorizedOperation", errors.PermissionDenied),
    ],
)
def test_create_volume_errors(
    cloud: Ec2Cloud, stub: Stubber, code: str, expected: type[errors.ZonalError]
) -> None:
    fail(stub, "create_volume", code)
    with pytest.raises(expected, match=code):
        cloud.create_volume(VolumeSpec(name="pvc-1", size_gib=1, snapshot_id="snap-1"), "us-east-1a", "tok")


@pytest.mark.parametrize(
    ("code", "status"), [("RequestLimitExceeded", 503), ("InternalError", 500), ("Unavailable", 503)]
)
def test_throttling_and_server_errors_are_unavailable(
    cloud: Ec2Cloud, stub: Stubber, code: str, status: int
) -> None:
    fail(stub, "describe_volumes", code, status=status)
    with pytest.raises(errors.Unavailable, match=code):
        cloud.get_volume(VOL)


def test_malformed_ids_are_not_found_without_a_call(cloud: Ec2Cloud, stub: Stubber) -> None:
    # Nothing is queued on the stubber: any call would fail the test with an unexpected request.
    for bogus in ("bogus", "vol-\x01", "vol-" + "a" * 10_000, "snap-1", "i-"):
        with pytest.raises(errors.NotFound):
            cloud.get_volume(bogus)
        with pytest.raises(errors.NotFound):
            cloud.delete_volume(bogus)
        with pytest.raises(errors.NotFound):
            cloud.get_instance(bogus)
        with pytest.raises(errors.NotFound):
            cloud.get_snapshot(bogus)
        with pytest.raises(errors.NotFound):
            cloud.delete_snapshot(bogus)
        with pytest.raises(errors.NotFound):
            cloud.create_snapshot(bogus, {}, "")
        with pytest.raises(errors.NotFound):
            cloud.attach_volume(bogus, INSTANCE, "/dev/xvdba")
        with pytest.raises(errors.NotFound):
            cloud.modify_volume(bogus, size_gib=2)
        with pytest.raises(errors.NotFound):
            cloud.create_tags(bogus, {"a": "b"})
        assert cloud.list_snapshots({}, bogus, 10, "").items == ()
        assert cloud.describe_volumes([bogus]) == {}
    stub.assert_no_pending_responses()


def test_malformed_answers_from_ec2_are_not_found(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(stub, "describe_volumes", "InvalidVolumeID.Malformed", VolumeIds=[VOL])
    with pytest.raises(errors.NotFound):
        cloud.get_volume(VOL)


def test_attachment_limit_is_resource_exhausted(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(
        stub,
        "attach_volume",
        "AttachmentLimitExceeded",
        VolumeId=VOL,
        InstanceId=INSTANCE,
        Device="/dev/xvdba",
    )
    with pytest.raises(errors.ResourceExhausted, match="AttachmentLimitExceeded"):
        cloud.attach_volume(VOL, INSTANCE, "/dev/xvdba")


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            "InvalidParameterValue",
            "Invalid value '/dev/xvdba' for unixDevice. Attachment point /dev/xvdba is already in use",
            errors.FailedPrecondition,
        ),
        (
            "InvalidParameterValue",
            "Value (/dev/bogus) for parameter device is invalid.",
            errors.InvalidArgument,
        ),
        (
            "InvalidVolume.ZoneMismatch",
            "The volume is not in the same availability zone",
            errors.FailedPrecondition,
        ),
        ("VolumeInUse", f"{VOL} is already attached to an instance", errors.FailedPrecondition),
        ("IncorrectState", f"Volume '{VOL}' is in the 'creating' state.", errors.FailedPrecondition),
    ],
)
def test_attach_errors(
    cloud: Ec2Cloud, stub: Stubber, code: str, message: str, expected: type[errors.ZonalError]
) -> None:
    fail(stub, "attach_volume", code, message)
    with pytest.raises(expected, match=code) as caught:
        cloud.attach_volume(VOL, INSTANCE, "/dev/xvdba")
    assert type(caught.value) is expected


def test_detach_of_a_volume_that_is_not_attached_is_not_found(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(stub, "detach_volume", "IncorrectState", f"Volume '{VOL}' is in the 'available' state.")
    fail(stub, "detach_volume", "InvalidAttachment.NotFound", "not attached to that instance")
    for _ in range(2):
        with pytest.raises(errors.NotFound):
            cloud.detach_volume(VOL, INSTANCE)


@pytest.mark.parametrize("code", ["VolumeModificationRateExceeded", "IncorrectModificationState"])
def test_modification_limits(cloud: Ec2Cloud, stub: Stubber, code: str) -> None:
    fail(stub, "modify_volume", code, VolumeId=VOL, Size=20)
    with pytest.raises(errors.ModificationRateLimited, match=code):
        cloud.modify_volume(VOL, size_gib=20)


def test_never_modified_volume_has_no_modification(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(stub, "describe_volumes_modifications", "InvalidVolumeModification.NotFound", VolumeIds=[VOL])
    assert cloud.get_volume_modification(VOL) is None


def test_modify_sends_type_iops_and_throughput(cloud: Ec2Cloud, stub: Stubber) -> None:
    stub.add_response(
        "modify_volume",
        {
            "VolumeModification": {
                "VolumeId": VOL,
                "ModificationState": "modifying",
                "TargetSize": 10,
                "TargetVolumeType": "gp3",
                "TargetIops": 4000,
                "TargetThroughput": 300,
            }
        },
        {"VolumeId": VOL, "VolumeType": "gp3", "Iops": 4000, "Throughput": 300},
    )
    modification = cloud.modify_volume(VOL, volume_type="gp3", iops=4000, throughput=300)
    assert (modification.state, modification.target_type) == ("modifying", "gp3")
    assert (modification.target_iops, modification.target_throughput) == (4000, 300)


def test_a_token_ec2_refuses_is_invalid_argument(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(stub, "describe_volumes", "InvalidParameterValue", "Invalid value 'zz' for nextToken")
    with pytest.raises(errors.InvalidArgument, match="nextToken"):
        cloud.list_volumes({"k": "v"}, 10, "0:zz")


def test_volume_limit_on_snapshot(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(stub, "create_snapshot", "SnapshotLimitExceeded")
    fail(stub, "delete_snapshot", "InvalidSnapshot.InUse")
    with pytest.raises(errors.ResourceExhausted):
        cloud.create_snapshot(VOL, {}, "")
    with pytest.raises(errors.FailedPrecondition):
        cloud.delete_snapshot("snap-0123456789abcdef0")


def test_check_access_reports_the_reason(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(
        stub,
        "describe_availability_zones",
        "UnauthorizedOperation",
        "You are not authorized",
        403,
        DryRun=True,
    )
    with pytest.raises(errors.FailedPrecondition, match="UnauthorizedOperation: You are not authorized"):
        cloud.check_access()


def test_check_access_accepts_an_endpoint_that_ignores_dry_run(cloud: Ec2Cloud, stub: Stubber) -> None:
    stub.add_response("describe_availability_zones", {"AvailabilityZones": []}, {"DryRun": True})
    cloud.check_access()


def test_zones_are_not_cached_after_a_failure(cloud: Ec2Cloud, stub: Stubber) -> None:
    fail(stub, "describe_availability_zones", "RequestLimitExceeded", status=503)
    stub.add_response(
        "describe_availability_zones",
        {"AvailabilityZones": [{"ZoneName": "us-east-1a", "ZoneId": "use1-az6", "State": "available"}]},
    )
    with pytest.raises(errors.Unavailable):
        cloud.availability_zones()
    assert [z.name for z in cloud.availability_zones()] == ["us-east-1a"]


# Failures before EC2 answers: nothing listens on the endpoint.


@pytest.fixture
def unreachable(boto_session: boto3.session.Session) -> Ec2Cloud:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connections are refused
    config = CloudConfig(
        region=REGION, endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout=1
    )
    return Ec2Cloud(build_ec2_client(config, boto_session), REGION)


def test_connection_failure_is_unavailable(unreachable: Ec2Cloud) -> None:
    with pytest.raises(errors.Unavailable, match="EndpointConnectionError"):
        unreachable.get_volume(VOL)
    with pytest.raises(errors.Unavailable, match="AttachVolume"):
        unreachable.attach_volume(VOL, INSTANCE, "/dev/xvdba")


def test_check_access_on_an_unreachable_endpoint_is_failed_precondition(unreachable: Ec2Cloud) -> None:
    with pytest.raises(errors.FailedPrecondition, match="not reachable"):
        unreachable.check_access()
