"""VolumeSnapshotClass parameters → what CreateSnapshot does: tags, fast snapshot restores, an
Outpost, a lock. Keys are case-insensitive and named as aws-ebs-csi-driver names them (docs/snapshot.md,
docs/tagging.md); every rejection is InvalidArgument naming the key.

* ``tagSpecification_N``: ``key=template`` over ``.VolumeSnapshotName``, ``.VolumeSnapshotNamespace``,
  ``.VolumeSnapshotContentName`` (the snapshotter's ``--extra-create-metadata`` keys, which also
  become ``kubernetes.io/created-for/…`` tags).
* ``fastSnapshotRestoreAvailabilityZones``: a comma-separated list (spaces ignored); checked against
  the region's zones by the caller, which has them.
* ``outpostArn``: must parse as an ARN (``arn:partition:service:region:account:resource``).
* ``lockMode`` (governance | compliance) with exactly one of ``lockDuration`` (days, 1–36500) or
  ``lockExpirationDate`` (RFC 3339, in the future), and ``lockCoolOffPeriod`` (hours, 1–72, compliance
  only) — EC2's LockSnapshot rules, checked before any snapshot is made. The ``snapshotLock…``
  spellings of an earlier aws-ebs-csi-driver document are accepted as the same keys.

Pure: no cloud calls, no clock of its own (``now`` is passed in), no logging.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner import params as P
from provisioner.errors import InvalidArgument, shown
from provisioner.ports.cloud import SnapshotLock

# The snapshotter's extra metadata keys and the tags they become (aws-ebs-csi-driver's names).
KEY_SNAPSHOT_NAME = P.SNAPSHOT_FIELDS["VolumeSnapshotName"]
KEY_SNAPSHOT_NAMESPACE = P.SNAPSHOT_FIELDS["VolumeSnapshotNamespace"]
KEY_SNAPSHOT_CONTENT_NAME = P.SNAPSHOT_FIELDS["VolumeSnapshotContentName"]
TAG_SNAPSHOT_OBJECT_NAME = "kubernetes.io/created-for/volumesnapshot/name"
TAG_SNAPSHOT_OBJECT_NAMESPACE = "kubernetes.io/created-for/volumesnapshot/namespace"
TAG_SNAPSHOT_CONTENT_NAME = "kubernetes.io/created-for/volumesnapshotcontent/name"
METADATA_TAGS = {
    KEY_SNAPSHOT_NAME: TAG_SNAPSHOT_OBJECT_NAME,
    KEY_SNAPSHOT_NAMESPACE: TAG_SNAPSHOT_OBJECT_NAMESPACE,
    KEY_SNAPSHOT_CONTENT_NAME: TAG_SNAPSHOT_CONTENT_NAME,
}

KEY_FAST_RESTORE_ZONES = "fastsnapshotrestoreavailabilityzones"
KEY_OUTPOST_ARN = "outpostarn"
KEY_LOCK_MODE = "lockmode"
KEY_LOCK_DURATION = "lockduration"
KEY_LOCK_EXPIRATION = "lockexpirationdate"
KEY_LOCK_COOL_OFF = "lockcooloffperiod"
_LOCK_KEYS = (KEY_LOCK_MODE, KEY_LOCK_DURATION, KEY_LOCK_EXPIRATION, KEY_LOCK_COOL_OFF)
_ALIASES = {"snapshot" + k: k for k in _LOCK_KEYS}  # snapshotLockMode… → lockMode…
LOCK_MODES = ("governance", "compliance")
LOCK_DURATION_DAYS = (1, 36_500)
COOL_OFF_HOURS = (1, 72)
_ARN = re.compile(r"arn:[^:\s]+:[^:\s]+:[^:\s]*:[^:\s]*:\S+")


@dataclass(frozen=True)
class SnapshotClass:
    """The validated meaning of a VolumeSnapshotClass's parameters."""

    tags: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)  # template fields, for --extra-tags
    fast_restore_zones: tuple[str, ...] = ()
    fast_restore_key: str = ""  # the parameter as given, for messages
    outpost_arn: str = ""
    lock: SnapshotLock | None = None

    @property
    def post_steps(self) -> bool:
        """Whether CreateSnapshot has work after EC2's CreateSnapshot (fast restores, a lock)."""
        return bool(self.fast_restore_zones) or self.lock is not None


def parse_snapshot_class(parameters: Mapping[str, str], now: float) -> SnapshotClass:
    """CreateSnapshot ``parameters`` → SnapshotClass; ``now`` (epoch seconds) judges an expiry date.
    CSI: invalid or unsupported field in the request → INVALID_ARGUMENT, naming the key."""
    seen: dict[str, str] = {}
    specs: list[tuple[str, str]] = []
    tags: dict[str, str] = {}
    zones: tuple[str, ...] = ()
    outpost = ""
    for key, value in parameters.items():
        lower = key.lower()
        lower = _ALIASES.get(lower, lower)
        if lower in seen:
            raise InvalidArgument(f"parameter {shown(key)} is given twice (also as {shown(seen[lower])})")
        seen[lower] = key
        if lower.startswith(P.KEY_TAG_SPEC_PREFIX) and len(lower) > len(P.KEY_TAG_SPEC_PREFIX):
            specs.append((key, value))
        elif lower in METADATA_TAGS:
            if value:
                tags[METADATA_TAGS[lower]] = value
        elif lower == KEY_FAST_RESTORE_ZONES:
            zones = tuple(value.replace(" ", "").split(","))
            if not all(zones):
                raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} has an empty zone")
        elif lower == KEY_OUTPOST_ARN:
            if not _ARN.fullmatch(value.strip()):
                raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} is not a valid ARN")
            outpost = value.strip()
        elif lower not in _LOCK_KEYS:
            raise InvalidArgument(f"unknown snapshot parameter {shown(key)}")
    fields = P.template_fields(parameters, P.SNAPSHOT_FIELDS)
    for key, value in specs:
        tag_key, tag_value = P.render_tag_spec(key, value, fields)
        tags[tag_key] = tag_value
    return SnapshotClass(
        tags=tags,
        fields=fields,
        fast_restore_zones=tuple(dict.fromkeys(zones)),
        fast_restore_key=seen.get(KEY_FAST_RESTORE_ZONES, ""),
        outpost_arn=outpost,
        lock=_lock(parameters, seen, now),
    )


def _lock(parameters: Mapping[str, str], seen: Mapping[str, str], now: float) -> SnapshotLock | None:
    given = {k: parameters[seen[k]] for k in _LOCK_KEYS if k in seen}
    if not given:
        return None
    if KEY_LOCK_MODE not in given:
        first = seen[next(iter(given))]
        raise InvalidArgument(f"parameter {shown(first)} needs lockMode (governance or compliance)")
    mode_key = seen[KEY_LOCK_MODE]
    mode = given[KEY_LOCK_MODE].strip().lower()
    if mode not in LOCK_MODES:
        raise InvalidArgument(
            f"parameter {shown(mode_key)}: {shown(given[KEY_LOCK_MODE])} is not one of "
            f"{', '.join(LOCK_MODES)}"
        )
    duration = expires = cool_off = None
    if KEY_LOCK_DURATION in given:
        duration = _ranged(seen[KEY_LOCK_DURATION], given[KEY_LOCK_DURATION], LOCK_DURATION_DAYS, "days")
    if KEY_LOCK_EXPIRATION in given:
        expires = _expiry(seen[KEY_LOCK_EXPIRATION], given[KEY_LOCK_EXPIRATION], now)
    if (duration is None) == (expires is None):
        raise InvalidArgument(
            f"parameter {shown(mode_key)}: give exactly one of lockDuration or lockExpirationDate"
        )
    if KEY_LOCK_COOL_OFF in given:
        cool_key = seen[KEY_LOCK_COOL_OFF]
        if mode != "compliance":
            raise InvalidArgument(f"parameter {shown(cool_key)}: a cool-off period needs lockMode compliance")
        cool_off = _ranged(cool_key, given[KEY_LOCK_COOL_OFF], COOL_OFF_HOURS, "hours")
    return SnapshotLock(mode, duration, expires, cool_off)


def _ranged(key: str, value: str, bounds: tuple[int, int], unit: str) -> int:
    number = P.positive_int(key, value)
    if not bounds[0] <= number <= bounds[1]:
        raise InvalidArgument(f"parameter {shown(key)}: {number} is outside {bounds[0]}-{bounds[1]} {unit}")
    return number


def _expiry(key: str, value: str, now: float) -> float:
    text = value.strip()
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"parameter {shown(key)}: {shown(value)} is not an RFC 3339 date (2030-12-31T23:59:59Z)"
        ) from None
    if when.tzinfo is None:
        raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} has no time zone (end it with Z)")
    if when.timestamp() <= now:
        raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} is not in the future")
    return when.timestamp()
