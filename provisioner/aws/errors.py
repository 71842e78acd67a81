"""EC2 failures → domain errors, in one table, at the adapter boundary.

Every boto3 call in :mod:`provisioner.aws` runs inside :func:`translated`, so no ``ClientError`` or
``BotoCoreError`` ever leaves this package. The domain error always carries EC2's code and message
and is raised ``from`` the botocore exception, so the traceback keeps the original.

How a failure is classified, most specific first:

    ClientError
    ├── exact EC2 code in _CODES          e.g. InvalidVolume.NotFound → NotFound,
    │                                          RequestLimitExceeded → Unavailable
    ├── suffix rules (_SUFFIXES)          *.NotFound / *.Malformed → NotFound,
    │                                     *LimitExceeded → ResourceExhausted
    ├── HTTP status ≥ 500                 → Unavailable
    └── anything else                     → Internal
    BotoCoreError
    ├── connection / timeout / HTTP       → Unavailable
    ├── missing or broken credentials     → PermissionDenied
    ├── ParamValidationError              → InvalidArgument (we built a request boto3 refuses)
    └── anything else                     → Internal
    ResponseParserError                   → Unavailable (EC2's answer could not be read; botocore
                                            says a retry may succeed)

``DryRunOperation`` is not an error: it is EC2's "this would have succeeded" answer to a DryRun call;
:func:`is_dry_run_success` recognises it. This module must not decide policy (retry, wait, look up a
volume by name after ``VolumeLimitExceeded``): that belongs to the controller core.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

from provisioner.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ModificationRateLimited,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    ZonalError,
)

DRY_RUN_OK = "DryRunOperation"

ErrorClass = type[ZonalError]

# Exact EC2 error codes (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
_CODES: Mapping[str, ErrorClass] = {
    # Unknown or malformed ids: CSI treats both as "does not exist".
    "InvalidVolume.NotFound": NotFound,
    "InvalidVolumeID.Malformed": NotFound,
    "InvalidInstanceID.NotFound": NotFound,
    "InvalidInstanceID.Malformed": NotFound,
    "InvalidSnapshot.NotFound": NotFound,
    "InvalidSnapshotID.Malformed": NotFound,
    "InvalidAttachment.NotFound": NotFound,
    "InvalidVolumeModification.NotFound": NotFound,
    "InvalidID": NotFound,  # CreateTags/DeleteTags with a malformed resource id
    # Same ClientToken, different parameters: the name is taken by an incompatible volume.
    "IdempotentParameterMismatch": AlreadyExists,
    # The object exists but its state forbids the call.
    "VolumeInUse": FailedPrecondition,
    "IncorrectState": FailedPrecondition,
    "IncorrectInstanceState": FailedPrecondition,
    "InvalidVolume.ZoneMismatch": FailedPrecondition,
    "InvalidSnapshot.InUse": FailedPrecondition,
    # A modification is still running, or the volume was modified too recently (6 h cooldown).
    "IncorrectModificationState": ModificationRateLimited,
    "VolumeModificationRateExceeded": ModificationRateLimited,
    # Quotas and capacity.
    "AttachmentLimitExceeded": ResourceExhausted,
    "VolumeLimitExceeded": ResourceExhausted,
    "SnapshotLimitExceeded": ResourceExhausted,
    "ConcurrentSnapshotLimitExceeded": ResourceExhausted,
    "MaxIOPSLimitExceeded": ResourceExhausted,
    "InsufficientVolumeCapacity": ResourceExhausted,
    "ResourceLimitExceeded": ResourceExhausted,
    # Bad input (including zones EC2 does not know and pagination tokens it refuses).
    "InvalidParameterValue": InvalidArgument,
    "InvalidParameterCombination": InvalidArgument,
    "InvalidParameter": InvalidArgument,
    "InvalidParameterDependency": InvalidArgument,
    "MissingParameter": InvalidArgument,
    "UnknownParameter": InvalidArgument,
    "InvalidFilter": InvalidArgument,
    "InvalidPaginationToken": InvalidArgument,
    "InvalidNextToken": InvalidArgument,
    "InvalidZone.NotFound": InvalidArgument,
    "InvalidAvailabilityZone": InvalidArgument,
    "InvalidTagKey.Malformed": InvalidArgument,
    # Too many tags is the request's fault, not a quota to wait for (the suffix rule would say so).
    "TagLimitExceeded": InvalidArgument,
    # Credentials and authorisation.
    "UnauthorizedOperation": PermissionDenied,
    "AuthFailure": PermissionDenied,
    "OptInRequired": PermissionDenied,
    "Blocked": PermissionDenied,
    "InvalidClientTokenId": PermissionDenied,
    "SignatureDoesNotMatch": PermissionDenied,
    "ExpiredToken": PermissionDenied,
    # Throttled or failing after botocore's own retries: the same call may succeed later.
    "RequestLimitExceeded": Unavailable,
    "RequestResourceCountExceeded": Unavailable,
    "Throttling": Unavailable,
    "ThrottlingException": Unavailable,
    "ServiceUnavailable": Unavailable,
    "Unavailable": Unavailable,
    "InternalError": Unavailable,
    "InternalFailure": Unavailable,
}

# Families of codes, checked after the exact table (so RequestLimitExceeded stays Unavailable).
_SUFFIXES: tuple[tuple[str, ErrorClass], ...] = (
    (".NotFound", NotFound),
    (".Malformed", NotFound),
    ("LimitExceeded", ResourceExhausted),
)


def error_code(e: ClientError) -> str:
    """EC2's error code of a ``ClientError`` ("" when the response has none)."""
    return str(e.response.get("Error", {}).get("Code", ""))


def error_message(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Message") or "")


def is_dry_run_success(e: ClientError) -> bool:
    """True when EC2 answered a DryRun call with "the request would have succeeded"."""
    return error_code(e) == DRY_RUN_OK


def classify(code: str, http_status: int = 400) -> ErrorClass:
    """The domain error class for an EC2 error code (the table above, most specific first)."""
    exact = _CODES.get(code)
    if exact is not None:
        return exact
    for suffix, cls in _SUFFIXES:
        if code.endswith(suffix):
            return cls
    if http_status >= 500:
        return Unavailable
    return Internal


def translate_client_error(
    e: ClientError, what: str = "", overrides: Mapping[str, ErrorClass] | None = None
) -> ZonalError:
    """A domain error for ``e``; ``overrides`` lets one call reinterpret a code (e.g. detach)."""
    code = error_code(e)
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400) or 400)
    cls = (overrides or {}).get(code) or classify(code, status)
    return cls(_message(e.operation_name, what, f"EC2 {code or 'error'}: {error_message(e) or 'no message'}"))


def translate_botocore_error(e: BotoCoreError, what: str = "", operation: str = "") -> ZonalError:
    """A domain error for a failure that happened before EC2 answered (network, credentials, input)."""
    cls: ErrorClass
    if isinstance(e, BotoConnectionError | HTTPClientError):
        cls = Unavailable
    elif isinstance(e, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        cls = PermissionDenied
    elif isinstance(e, ParamValidationError):
        cls = InvalidArgument
    else:
        cls = Internal
    return cls(_message(operation, what, f"{type(e).__name__}: {e}"))


@contextmanager
def translated(
    what: str = "", overrides: Mapping[str, ErrorClass] | None = None, operation: str = ""
) -> Iterator[None]:
    """Run boto3 calls inside this block; their failures leave it as domain errors.

    ``what`` names the object ("volume vol-123") for the message; ``operation`` names the call for
    failures that carry no operation of their own (network errors).
    """
    try:
        yield
    except ClientError as e:
        raise translate_client_error(e, what, overrides) from e
    except BotoCoreError as e:
        raise translate_botocore_error(e, what, operation) from e
    except ResponseParserError as e:
        # Not a BotoCoreError: without this it would leave the adapter as a bug (INTERNAL).
        head = " ".join(part for part in (operation, what) if part)
        detail = str(e).split("\n", 1)[0]
        raise Unavailable(f"{head or 'EC2'}: EC2's answer could not be parsed ({detail})") from e


def _message(operation: str, what: str, detail: str) -> str:
    head = " ".join(part for part in (operation, what) if part)
    return f"{head}: {detail}" if head else detail
