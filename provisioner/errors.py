"""Domain errors: what went wrong, in the driver's own words.

Every adapter (EC2, mount, Kubernetes) translates its SDK's failures into these classes at its
boundary with ``raise ... from e``; cores raise them directly. Exactly one table
(:mod:`provisioner.csi.errors`) maps them to gRPC status codes by walking the class hierarchy, so
nothing outside ``provisioner.csi`` knows about gRPC. This module imports only the standard library.

    ZonalError
    ├── InvalidArgument          bad or missing input (INVALID_ARGUMENT)
    ├── NotFound                 volume, snapshot, instance or path does not exist (NOT_FOUND)
    ├── AlreadyExists            same name, incompatible object (ALREADY_EXISTS)
    ├── OperationInProgress      another call holds this volume or name (ABORTED)
    │   └── InvalidStartingToken      a list call's starting_token was not issued by us (ABORTED)
    ├── ResourceExhausted        no zone / attachment slot / quota left (RESOURCE_EXHAUSTED)
    │   └── ModificationRateLimited   EC2's per-volume modification limit (RESOURCE_EXHAUSTED)
    ├── OutOfRange               capacity outside what the volume type allows (OUT_OF_RANGE)
    ├── FailedPrecondition       state forbids the call: attached, other zone, unhealthy (FAILED_PRECONDITION)
    ├── Unavailable              the cloud is throttling or failing; retry later (UNAVAILABLE)
    ├── DeadlineExceeded         waited as long as the caller allowed (ABORTED for CSI retries)
    ├── Unimplemented            the plugin does not do this (UNIMPLEMENTED)
    ├── PermissionDenied         credentials lack the right (PERMISSION_DENIED)
    └── Internal                 a bug or an inconsistency we detected (INTERNAL)
"""

from __future__ import annotations

SHOWN_LIMIT = 100


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """``value`` quoted for an error message: ``repr`` (so NUL, control characters and quotes are
    escaped) cut to about ``limit`` characters with an ellipsis and the full length, so a client's
    10,000-character input never comes back whole (gRPC caps status metadata at a few KiB)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}… ({size} characters)"


def first_line(e: BaseException) -> str:
    """The first line of ``e``'s message, or its class name when it has none: a failure said in one line."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class ZonalError(Exception):
    """Base of every error the driver raises on purpose. ``str(e)`` is safe to show a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ZonalError):
    """The request is malformed or asks for something unsupported."""


class NotFound(ZonalError):
    """The named object does not exist."""


class AlreadyExists(ZonalError):
    """An object with this name exists but is incompatible with the request."""


class OperationInProgress(ZonalError):
    """Another operation on the same volume, snapshot or name is running."""


class InvalidStartingToken(OperationInProgress):
    """A ListVolumes/ListSnapshots ``starting_token`` the plugin did not issue.

    CSI answers this with ABORTED (the same code as an operation in progress), so it is a subclass
    of :class:`OperationInProgress` and needs no row of its own in the gRPC table.
    """


class ResourceExhausted(ZonalError):
    """No capacity left where the request allows it (zones, attachment slots, quotas)."""


class ModificationRateLimited(ResourceExhausted):
    """EC2 refuses another modification of this volume for now; the message says when to retry."""


class OutOfRange(ZonalError):
    """A requested capacity cannot be satisfied."""


class FailedPrecondition(ZonalError):
    """The object is in a state that forbids the operation."""


class Unavailable(ZonalError):
    """A dependency is throttling or failing; the same call may succeed later."""


class DeadlineExceeded(ZonalError):
    """The caller's deadline passed while waiting; the operation may still complete."""


class Unimplemented(ZonalError):
    """The plugin does not implement this."""


class PermissionDenied(ZonalError):
    """The credentials are not allowed to do this."""


class Internal(ZonalError):
    """Something that should not happen happened; the message is still safe to show."""
