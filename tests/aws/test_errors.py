"""The EC2 error table: every code the brief names, the suffix families, and botocore's own failures."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    UnknownServiceError,
)

from provisioner import errors
from provisioner.aws.errors import (
    classify,
    is_dry_run_success,
    translate_botocore_error,
    translate_client_error,
    translated,
)


def client_error(
    code: str, message: str = "it went wrong", status: int = 400, op: str = "CreateVolume"
) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        op,
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("InvalidVolume.NotFound", errors.NotFound),
        ("InvalidVolumeID.Malformed", errors.NotFound),
        ("InvalidInstanceID.NotFound", errors.NotFound),
        ("InvalidInstanceID.Malformed", errors.NotFound),
        ("InvalidSnapshot.NotFound", errors.NotFound),
        ("InvalidSnapshotID.Malformed", errors.NotFound),
        ("InvalidAttachment.NotFound", errors.NotFound),
        ("IdempotentParameterMismatch", errors.AlreadyExists),
        ("VolumeInUse", errors.FailedPrecondition),
        ("IncorrectState", errors.FailedPrecondition),
        ("InvalidVolume.ZoneMismatch", errors.FailedPrecondition),
        ("InvalidSnapshot.InUse", errors.FailedPrecondition),
        ("IncorrectModificationState", errors.ModificationRateLimited),
        ("VolumeModificationRateExceeded", errors.ModificationRateLimited),
        ("AttachmentLimitExceeded", errors.ResourceExhausted),
        ("VolumeLimitExceeded", errors.ResourceExhausted),
        ("SnapshotLimitExceeded", errors.ResourceExhausted),
        ("InsufficientVolumeCapacity", errors.ResourceExhausted),
        ("MaxIOPSLimitExceeded", errors.ResourceExhausted),
        ("InvalidParameterValue", errors.InvalidArgument),
        ("InvalidParameterCombination", errors.InvalidArgument),
        ("InvalidZone.NotFound", errors.InvalidArgument),  # exact entry wins over the .NotFound family
        ("InvalidAvailabilityZone", errors.InvalidArgument),
        ("InvalidTagKey.Malformed", errors.InvalidArgument),  # exact entry wins over the .Malformed family
        ("UnauthorizedOperation", errors.PermissionDenied),
        ("AuthFailure", errors.PermissionDenied),
        ("RequestLimitExceeded", errors.Unavailable),  # exact entry wins over the LimitExceeded family
        ("Throttling", errors.Unavailable),
        ("ServiceUnavailable", errors.Unavailable),
        ("InternalError", errors.Unavailable),
        ("InvalidKeyPair.NotFound", errors.NotFound),  # family rules
        ("InvalidAMIID.Malformed", errors.NotFound),
        ("SomethingLimitExceeded", errors.ResourceExhausted),
        ("SomethingNew", errors.Internal),
    ],
)
def test_codes_map_to_domain_errors(code: str, expected: type[errors.ZonalError]) -> None:
    assert classify(code) is expected
    assert type(translate_client_error(client_error(code))) is expected


def test_unknown_5xx_is_unavailable() -> None:
    assert classify("SomethingNew", 503) is errors.Unavailable
    assert isinstance(translate_client_error(client_error("Weird", status=500)), errors.Unavailable)


def test_message_carries_operation_object_code_and_ec2_message() -> None:
    translated_error = translate_client_error(
        client_error("VolumeInUse", "vol-1 is attached"), "volume vol-1"
    )
    assert str(translated_error) == "CreateVolume volume vol-1: EC2 VolumeInUse: vol-1 is attached"


def test_overrides_reinterpret_one_code_for_one_call() -> None:
    e = client_error("IncorrectState", op="DetachVolume")
    assert isinstance(
        translate_client_error(e, overrides={"IncorrectState": errors.NotFound}), errors.NotFound
    )
    assert isinstance(translate_client_error(e), errors.FailedPrecondition)


def test_dry_run_operation_is_success() -> None:
    assert is_dry_run_success(client_error("DryRunOperation", status=412))
    assert not is_dry_run_success(client_error("UnauthorizedOperation", status=403))


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (EndpointConnectionError(endpoint_url="https://ec2.example"), errors.Unavailable),
        (ConnectTimeoutError(endpoint_url="https://ec2.example"), errors.Unavailable),
        (ReadTimeoutError(endpoint_url="https://ec2.example"), errors.Unavailable),
        (NoCredentialsError(), errors.PermissionDenied),
        (ParamValidationError(report="Size must be an integer"), errors.InvalidArgument),
        (UnknownServiceError(service_name="ec3", known_service_names="ec2"), errors.Internal),
    ],
)
def test_botocore_failures_map_to_domain_errors(
    failure: Exception, expected: type[errors.ZonalError]
) -> None:
    assert isinstance(failure, Exception)
    translated_error = translate_botocore_error(failure, "volume vol-1", "DeleteVolume")  # type: ignore[arg-type]
    assert type(translated_error) is expected
    assert str(translated_error).startswith(f"DeleteVolume volume vol-1: {type(failure).__name__}: ")


def test_translated_raises_from_the_original() -> None:
    original = client_error("InvalidVolume.NotFound", op="DeleteVolume")
    with pytest.raises(errors.NotFound) as caught, translated("volume vol-1"):
        raise original
    assert caught.value.__cause__ is original


def test_translated_lets_domain_errors_and_bugs_through() -> None:
    with pytest.raises(errors.InvalidArgument), translated():
        raise errors.InvalidArgument("ours")
    with pytest.raises(KeyError), translated():
        raise KeyError("a bug stays a bug")
