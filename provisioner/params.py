"""StorageClass parameters → what to create: validation of CreateVolume's ``parameters``.

Keys are matched case-insensitively and named as aws-ebs-csi-driver names them, so its
StorageClasses work unchanged. Every rejection names the offending key (INVALID_ARGUMENT) or the
capacity rule (OUT_OF_RANGE). This module is pure: no I/O, no logging, no cloud calls; the controller
core decides the zone and the tags that depend on the driver's configuration.

Documented choices:

* No capacity range (or a zero ``required_bytes``) → :data:`DEFAULT_SIZE_GIB` (100 GiB), shrunk to the
  whole GiB below ``limit_bytes`` when a smaller limit is given, and raised to the type's minimum
  (st1/sc1: 125 GiB) when that is larger.
* A requested size below the type's minimum is OUT_OF_RANGE rather than silently enlarged (the ``st1``
  minimum is 125 GiB: growing a 10 GiB claim twelvefold unasked would be a surprise on the bill).
* ``iops`` / ``iopsPerGB`` follow aws-ebs-csi-driver: the total is capped at the type's maximum and at
  the type's IOPS-per-GiB ratio; below the type's minimum it is raised only with
  ``allowAutoIOPSPerGBIncrease=true``, otherwise INVALID_ARGUMENT.
* ``csi.storage.k8s.io/fstype`` is accepted (older StorageClasses carry it) and ignored: the fs type
  comes from the volume capability. The deprecated ``blockExpress`` and bare ``fsType`` are accepted as
  no-ops and reported in :attr:`CreateParameters.deprecated` (the core logs them).
* ``tagSpecification_N`` values are templates (:mod:`provisioner.tagtemplate`) over ``.PVCName``,
  ``.PVCNamespace`` and ``.PVName`` (the provisioner's ``--extra-create-metadata`` keys).
* VolumeAttributesClass keys given at creation (``mutable_parameters``) override ``type``, ``iops`` and
  ``throughput`` (the deprecated ``volumeType`` too, unless ``type`` is there); their
  ``tagSpecification_N`` tags are added over the StorageClass's by tag key, not by parameter name.
* ``volumeInitializationRate`` (100–300 MiB/s, EC2's range) is sent only for volumes restored from a
  snapshot: one StorageClass serves blank and restored claims alike, and EC2 refuses it without one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provisioner import tagtemplate
from provisioner.errors import InvalidArgument, OutOfRange, shown
from provisioner.model import (
    GIB,
    TAG_CLUSTER_PREFIX,
    TAG_DRIVER,
    TAG_SNAPSHOT_NAME,
    TAG_VOLUME_NAME,
    TAG_ZONAL_DRIVER,
    AccessType,
    CapacityRange,
    VolumeCapability,
)

DEFAULT_TYPE = "gp3"
DEFAULT_SIZE_GIB = 100
DEFAULT_FS_TYPE = "ext4"

# Parameter keys, lower case (matching is case-insensitive).
KEY_TYPE = "type"
KEY_IOPS = "iops"
KEY_IOPS_PER_GB = "iopspergb"
KEY_ALLOW_IOPS_INCREASE = "allowautoiopspergbincrease"
KEY_THROUGHPUT = "throughput"
KEY_ENCRYPTED = "encrypted"
KEY_KMS_KEY_ID = "kmskeyid"
KEY_TAG_SPEC_PREFIX = "tagspecification_"
KEY_FS_TYPE = "csi.storage.k8s.io/fstype"
KEY_PVC_NAME = "csi.storage.k8s.io/pvc/name"
KEY_PVC_NAMESPACE = "csi.storage.k8s.io/pvc/namespace"
KEY_PV_NAME = "csi.storage.k8s.io/pv/name"
KEY_ALLOW_IOPS_ON_MODIFY = "allowautoiopsincreaseonmodify"
KEY_INIT_RATE = "volumeinitializationrate"
KEY_BLOCK_ATTACH = "blockattachuntilinitialized"
KEY_VOLUME_TYPE_DEPRECATED = "volumetype"  # VolumeAttributesClass's old name for "type"
KEY_TAG_DELETION_PREFIX = "tagdeletion_"
_DEPRECATED_NO_OPS = {"blockexpress": "blockExpress", "fstype": "fsType"}
INIT_RATE_RANGE = (100, 300)  # MiB/s, EC2's VolumeInitializationRate

# volume_context key telling ControllerPublish to wait until a restored volume is initialized.
CONTEXT_BLOCK_ATTACH = KEY_BLOCK_ATTACH

# Template fields of tag values: field → the parameter carrying its value.
VOLUME_FIELDS = {"PVCName": KEY_PVC_NAME, "PVCNamespace": KEY_PVC_NAMESPACE, "PVName": KEY_PV_NAME}
SNAPSHOT_FIELDS = {
    "VolumeSnapshotName": "csi.storage.k8s.io/volumesnapshot/name",
    "VolumeSnapshotNamespace": "csi.storage.k8s.io/volumesnapshot/namespace",
    "VolumeSnapshotContentName": "csi.storage.k8s.io/volumesnapshotcontent/name",
}

# Tags the PVC/PV keys become (aws-ebs-csi-driver's names, so tooling that reads them keeps working).
TAG_PVC_NAME = "kubernetes.io/created-for/pvc/name"
TAG_PVC_NAMESPACE = "kubernetes.io/created-for/pvc/namespace"
TAG_PV_NAME = "kubernetes.io/created-for/pv/name"
_METADATA_TAGS = {KEY_PVC_NAME: TAG_PVC_NAME, KEY_PVC_NAMESPACE: TAG_PVC_NAMESPACE, KEY_PV_NAME: TAG_PV_NAME}

# Filesystem format options: parameter key → volume_context key read by the node at format time.
CONTEXT_BLOCK_SIZE = "blocksize"
CONTEXT_INODE_SIZE = "inodesize"
CONTEXT_BYTES_PER_INODE = "bytesperinode"
CONTEXT_NUMBER_OF_INODES = "numberofinodes"
CONTEXT_EXT4_BIGALLOC = "ext4bigalloc"
CONTEXT_EXT4_CLUSTER_SIZE = "ext4clustersize"
CONTEXT_EXT4_ENCRYPTION = "ext4encryptionsupport"
FORMAT_OPTION_KEYS = (
    CONTEXT_BLOCK_SIZE,
    CONTEXT_INODE_SIZE,
    CONTEXT_BYTES_PER_INODE,
    CONTEXT_NUMBER_OF_INODES,
    CONTEXT_EXT4_BIGALLOC,
    CONTEXT_EXT4_CLUSTER_SIZE,
    CONTEXT_EXT4_ENCRYPTION,
)
_PARAM_NAMES = {
    CONTEXT_BLOCK_SIZE: "blockSize",
    CONTEXT_INODE_SIZE: "inodeSize",
    CONTEXT_BYTES_PER_INODE: "bytesPerInode",
    CONTEXT_NUMBER_OF_INODES: "numberOfInodes",
    CONTEXT_EXT4_BIGALLOC: "ext4BigAlloc",
    CONTEXT_EXT4_CLUSTER_SIZE: "ext4ClusterSize",
    CONTEXT_EXT4_ENCRYPTION: "ext4EncryptionSupport",
}
_BOOL_FORMAT_OPTIONS = frozenset({CONTEXT_EXT4_BIGALLOC, CONTEXT_EXT4_ENCRYPTION})
_EXT_OPTIONS = frozenset(
    {CONTEXT_BLOCK_SIZE, CONTEXT_INODE_SIZE, CONTEXT_BYTES_PER_INODE, CONTEXT_NUMBER_OF_INODES}
)
# Which format options each filesystem's mkfs understands (mirrors aws-ebs-csi-driver's table).
FS_FORMAT_OPTIONS: Mapping[str, frozenset[str]] = {
    "ext2": _EXT_OPTIONS,
    "ext3": _EXT_OPTIONS,
    "ext4": _EXT_OPTIONS | {CONTEXT_EXT4_BIGALLOC, CONTEXT_EXT4_CLUSTER_SIZE, CONTEXT_EXT4_ENCRYPTION},
    "xfs": frozenset({CONTEXT_BLOCK_SIZE, CONTEXT_INODE_SIZE}),
}

# Numeric parameters: ASCII digits only, at most EC2's 32-bit integer.
_DIGITS = re.compile(r"[0-9]{1,12}")
MAX_INT = 2**31 - 1

_RESERVED_TAG_KEYS = frozenset({TAG_VOLUME_NAME, TAG_SNAPSHOT_NAME, TAG_DRIVER, TAG_ZONAL_DRIVER})


@dataclass(frozen=True)
class TypeLimits:
    """What EC2 allows for one volume type. IOPS/throughput fields are None where not provisionable."""

    min_gib: int
    max_gib: int
    min_iops: int | None = None
    max_iops: int | None = None
    max_iops_per_gib: int | None = None
    min_throughput: int | None = None
    max_throughput: int | None = None


VOLUME_TYPES: Mapping[str, TypeLimits] = {
    "gp2": TypeLimits(1, 16_384),
    "gp3": TypeLimits(1, 65_536, 3_000, 80_000, 500, 125, 2_000),
    "io1": TypeLimits(4, 16_384, 100, 64_000, 50),
    "io2": TypeLimits(4, 65_536, 100, 256_000, 1_000),
    "st1": TypeLimits(125, 16_384),
    "sc1": TypeLimits(125, 16_384),
    "standard": TypeLimits(1, 1_024),
}


@dataclass(frozen=True)
class CreateParameters:
    """The validated, size-independent meaning of a StorageClass's parameters."""

    volume_type: str = DEFAULT_TYPE
    iops: int | None = None
    iops_per_gb: int | None = None
    allow_iops_increase: bool = False
    throughput: int | None = None
    encrypted: bool = False
    kms_key_id: str = ""
    # tagSpecification_N and the PVC/PV names, as tags to write on the volume.
    tags: Mapping[str, str] = field(default_factory=dict)
    # Filesystem format options for the node (keys from FORMAT_OPTION_KEYS), blockAttachUntilInitialized.
    volume_context: Mapping[str, str] = field(default_factory=dict)
    initialization_rate: int | None = None  # MiB/s, for volumes restored from a snapshot
    auto_iops_on_modify: bool = False  # allowAutoIOPSIncreaseOnModify: raise IOPS with size on expansion
    deprecated: tuple[str, ...] = ()  # deprecated keys given (accepted as no-ops), for one log line


def merge_mutable(parameters: Mapping[str, str], mutable_parameters: Mapping[str, str]) -> dict[str, str]:
    """``parameters`` with ``mutable_parameters`` laid over them; on a (case-insensitive) clash the
    mutable value wins (CSI 1.11+: mutable_parameters are the VolumeAttributesClass's, which override)."""
    merged = dict(parameters)
    by_lower = {k.lower(): k for k in merged}
    for key, value in mutable_parameters.items():
        old = by_lower.get(key.lower())
        if old is not None:
            del merged[old]
        merged[key] = value
        by_lower[key.lower()] = key
    return merged


def parse_parameters(
    parameters: Mapping[str, str], mutable_parameters: Mapping[str, str] | None = None
) -> CreateParameters:
    """Validate CreateVolume ``parameters`` (and the VolumeAttributesClass's ``mutable_parameters``,
    which win). Raises InvalidArgument naming the first bad key."""
    deprecated: list[str] = []
    parameters, vac_specs = _overlay_mutable(parameters, mutable_parameters or {}, deprecated)
    seen: dict[str, str] = {}
    for key in parameters:
        lower = key.lower()
        if lower in seen:
            raise InvalidArgument(f"parameter {shown(key)} is given twice (also as {shown(seen[lower])})")
        seen[lower] = key

    volume_type = DEFAULT_TYPE
    iops: int | None = None
    iops_per_gb: int | None = None
    allow_increase = False
    throughput: int | None = None
    encrypted = False
    kms_key_id = ""
    tags: dict[str, str] = {}
    context: dict[str, str] = {}
    specs: list[tuple[str, str]] = []
    init_rate: int | None = None
    auto_iops_on_modify = False

    for key, value in parameters.items():
        lower = key.lower()
        if lower == KEY_TYPE:
            volume_type = value.strip().lower()
            if volume_type not in VOLUME_TYPES:
                raise InvalidArgument(
                    f"parameter {shown(key)}: unknown volume type {shown(value)}; "
                    f"expected one of {sorted(VOLUME_TYPES)}"
                )
        elif lower == KEY_IOPS:
            iops = positive_int(key, value)
        elif lower == KEY_IOPS_PER_GB:
            iops_per_gb = positive_int(key, value)
        elif lower == KEY_ALLOW_IOPS_INCREASE:
            allow_increase = _bool(key, value)
        elif lower == KEY_THROUGHPUT:
            throughput = positive_int(key, value)
        elif lower == KEY_ENCRYPTED:
            encrypted = _bool(key, value)
        elif lower == KEY_KMS_KEY_ID:
            kms_key_id = value.strip()
        elif lower.startswith(KEY_TAG_SPEC_PREFIX) and len(lower) > len(KEY_TAG_SPEC_PREFIX):
            specs.append((key, value))  # a template: rendered once every field is known
        elif lower == KEY_ALLOW_IOPS_ON_MODIFY:
            auto_iops_on_modify = _bool(key, value)
        elif lower == KEY_INIT_RATE:
            init_rate = positive_int(key, value)
            if not INIT_RATE_RANGE[0] <= init_rate <= INIT_RATE_RANGE[1]:
                raise InvalidArgument(
                    f"parameter {shown(key)}: {init_rate} MiB/s is outside EC2's "
                    f"{INIT_RATE_RANGE[0]}-{INIT_RATE_RANGE[1]} MiB/s"
                )
        elif lower == KEY_BLOCK_ATTACH:
            if _bool(key, value):
                context[CONTEXT_BLOCK_ATTACH] = "true"
        elif lower in _DEPRECATED_NO_OPS:
            deprecated.append(_DEPRECATED_NO_OPS[lower])
        elif lower in _METADATA_TAGS:
            if value:
                tags[_METADATA_TAGS[lower]] = value
        elif lower == KEY_FS_TYPE:
            pass  # the capability's fs_type decides; accepted for old StorageClasses
        elif lower in _PARAM_NAMES:
            if lower in _BOOL_FORMAT_OPTIONS:
                context[lower] = "true" if _bool(key, value) else "false"
            else:
                context[lower] = str(positive_int(key, value))
        else:
            raise InvalidArgument(f"unknown parameter {shown(key)}")

    if kms_key_id:
        encrypted = True  # a KMS key implies encryption, as in aws-ebs-csi-driver
    limits = VOLUME_TYPES[volume_type]
    if iops is not None and iops_per_gb is not None:
        raise InvalidArgument(
            f"parameters {shown(seen[KEY_IOPS])} and {shown(seen[KEY_IOPS_PER_GB])} exclude each other"
        )
    for given, name in ((iops, KEY_IOPS), (iops_per_gb, KEY_IOPS_PER_GB)):
        if given is not None and limits.max_iops is None:
            raise InvalidArgument(
                f"parameter {shown(seen[name])}: volume type {volume_type} has no provisioned IOPS"
            )
    if throughput is not None:
        if limits.max_throughput is None or limits.min_throughput is None:
            raise InvalidArgument(f"parameter {shown(seen[KEY_THROUGHPUT])}: only gp3 takes a throughput")
        if not limits.min_throughput <= throughput <= limits.max_throughput:
            raise InvalidArgument(
                f"parameter {shown(seen[KEY_THROUGHPUT])}: {throughput} MiB/s is outside "
                f"{limits.min_throughput}-{limits.max_throughput} MiB/s for {volume_type}"
            )
    if CONTEXT_EXT4_CLUSTER_SIZE in context and context.get(CONTEXT_EXT4_BIGALLOC) != "true":
        raise InvalidArgument(f"parameter {shown(seen[CONTEXT_EXT4_CLUSTER_SIZE])} needs ext4BigAlloc=true")
    fields = template_fields(parameters, VOLUME_FIELDS)
    for key, value in [*specs, *vac_specs]:  # the VolumeAttributesClass's tags win by tag key
        tag_key, tag_value = render_tag_spec(key, value, fields)
        tags[tag_key] = tag_value
    return CreateParameters(
        volume_type=volume_type,
        iops=iops,
        iops_per_gb=iops_per_gb,
        allow_iops_increase=allow_increase,
        throughput=throughput,
        encrypted=encrypted,
        kms_key_id=kms_key_id,
        tags=tags,
        volume_context=context,
        initialization_rate=init_rate,
        auto_iops_on_modify=auto_iops_on_modify,
        deprecated=tuple(deprecated),
    )


def _overlay_mutable(
    parameters: Mapping[str, str], mutable: Mapping[str, str], deprecated: list[str]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``parameters`` with the VolumeAttributesClass's ``type``/``iops``/``throughput`` laid over them
    (CSI 1.11: mutable_parameters win) and its tag specifications apart. Unknown mutable keys are
    INVALID_ARGUMENT; ``tagDeletion_N`` has nothing to delete on a new volume and is skipped."""
    overlay: dict[str, str] = {}
    specs: list[tuple[str, str]] = []
    lowered = {k.lower() for k in mutable}
    for key, value in mutable.items():
        lower = key.lower()
        if lower == KEY_VOLUME_TYPE_DEPRECATED:
            deprecated.append("volumeType")
            if KEY_TYPE in lowered:
                continue  # the preferred key wins, as in aws-ebs-csi-driver
            key, lower = KEY_TYPE, KEY_TYPE
        if lower in (KEY_TYPE, KEY_IOPS, KEY_THROUGHPUT) or lower in _METADATA_TAGS:
            overlay[key] = value
        elif lower.startswith(KEY_TAG_SPEC_PREFIX) and len(lower) > len(KEY_TAG_SPEC_PREFIX):
            specs.append((key, value))
        elif not (lower.startswith(KEY_TAG_DELETION_PREFIX) and len(lower) > len(KEY_TAG_DELETION_PREFIX)):
            # CSI: an unsupported mutable parameter → INVALID_ARGUMENT.
            raise InvalidArgument(f"unknown mutable parameter {shown(key)}")
    return merge_mutable(parameters, overlay), specs


def template_fields(parameters: Mapping[str, str], fields: Mapping[str, str]) -> dict[str, str]:
    """The values of a kind's template fields (``VOLUME_FIELDS``/``SNAPSHOT_FIELDS``) found in
    ``parameters`` (case-insensitive); a field the sidecar did not send is empty."""
    by_lower = {k.lower(): v for k, v in parameters.items()}
    return {name: by_lower.get(source, "") for name, source in fields.items()}


def render_tag_spec(key: str, value: str, fields: Mapping[str, str]) -> tuple[str, str]:
    """A ``tagSpecification_N`` value ``key=template`` → (tag key, rendered value), checked like a
    plain one. A template that does not parse, names an unknown field or fails → InvalidArgument
    naming the parameter ``key``."""
    tag_key, sep, raw = value.partition("=")
    if not sep:
        return _tag_spec(key, value)  # raises: not key=value
    try:
        rendered = tagtemplate.render(raw, fields, max_output=256)
    except tagtemplate.TemplateError as e:
        raise InvalidArgument(f"parameter {shown(key)}: tag value {shown(raw)}: {e}") from None
    return _tag_spec(key, f"{tag_key}={rendered}")


def validate_format_options(context: Mapping[str, str], capabilities: Sequence[VolumeCapability]) -> None:
    """Every format option must be understood by the fs type of every mount capability (default ext4).

    Raises InvalidArgument naming the option and the fs type."""
    for capability in capabilities:
        if capability.access_type is not AccessType.MOUNT:
            continue
        fs_type = (capability.fs_type or DEFAULT_FS_TYPE).lower()
        supported = FS_FORMAT_OPTIONS.get(fs_type, frozenset())
        for key in context:
            if key in _PARAM_NAMES and key not in supported:
                raise InvalidArgument(
                    f"parameter {shown(_PARAM_NAMES[key])} cannot be used with fs type {shown(fs_type)}"
                )


def capacity_gib(capacity: CapacityRange, volume_type: str) -> int:
    """The size to create, in whole GiB (CSI: at least required_bytes, at most limit_bytes).

    Raises InvalidArgument for negative values, OutOfRange when no whole GiB within the range fits the
    type's size limits."""
    required, limit = capacity.required_bytes, capacity.limit_bytes
    if required < 0 or limit < 0:
        raise InvalidArgument("capacity_range: required_bytes and limit_bytes must not be negative")
    limits = VOLUME_TYPES[volume_type]
    if required == 0:
        size = DEFAULT_SIZE_GIB if limit == 0 else min(DEFAULT_SIZE_GIB, limit // GIB)
        if size < limits.min_gib:
            size = limits.min_gib  # e.g. st1 with no range: its minimum (a limit is checked below)
    else:
        size = -(-required // GIB)  # round up to whole GiB
    # CSI: unsupported capacity_range → OUT_OF_RANGE.
    if limit and size * GIB > limit:
        raise OutOfRange(
            f"capacity_range: {size} GiB (required {required} bytes rounded up to whole GiB, or the "
            f"type minimum) exceeds limit_bytes {limit}"
        )
    if not limits.min_gib <= size <= limits.max_gib:
        raise OutOfRange(
            f"capacity_range: {size} GiB is outside {limits.min_gib}-{limits.max_gib} GiB for {volume_type}"
        )
    return size


def total_iops(params: CreateParameters, size_gib: int) -> int | None:
    """The IOPS to request for a volume of ``size_gib``, or None to take EC2's default.

    Like aws-ebs-csi-driver's capIOPS: iopsPerGB × size (or the explicit iops), capped at the type's
    maximum and at its per-GiB ratio (unless that ratio would fall below the minimum), raised to the
    minimum only when allowAutoIOPSPerGBIncrease is set. Raises InvalidArgument otherwise."""
    limits = VOLUME_TYPES[params.volume_type]
    if limits.max_iops is None or limits.min_iops is None or limits.max_iops_per_gib is None:
        return None
    if params.iops is not None:
        requested, key = params.iops, "iops"
    elif params.iops_per_gb is not None:
        requested, key = params.iops_per_gb * size_gib, "iopsPerGB"
    else:
        return None
    iops = requested
    if iops < limits.min_iops:
        if not params.allow_iops_increase:
            raise InvalidArgument(
                f"parameter {key!r}: {requested} IOPS for {size_gib} GiB is below the "
                f"{params.volume_type} minimum of {limits.min_iops}; set allowAutoIOPSPerGBIncrease=true "
                "to raise it automatically"
            )
        iops = limits.min_iops
    iops = min(iops, limits.max_iops)
    by_capacity = limits.max_iops_per_gib * size_gib
    if iops > by_capacity >= limits.min_iops:
        iops = by_capacity
    return iops


def parse_tag_spec(key: str, value: str) -> tuple[str, str]:
    """A ``tagSpecification_N`` value ``key=value`` → (tag key, tag value); reserved keys refused.

    Raises InvalidArgument naming the parameter ``key``."""
    return _tag_spec(key, value)


def check_tag_key(key: str, tag_key: str) -> None:
    """Refuse a tag key the driver manages itself (ownership, names, ``aws:``). Raises InvalidArgument."""
    _tag_spec(key, f"{tag_key}=")


def positive_int(key: str, value: str) -> int:
    """A parameter's value as a whole number from 1 to 2**31 - 1 (EC2's integers are 32-bit), written
    in ASCII digits (not "1_000", "1e3" or other scripts' digits); InvalidArgument naming the key."""
    text = value.strip()
    if not _DIGITS.fullmatch(text):
        raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} is not a whole number")
    number = int(text)
    if number <= 0:
        raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} must be greater than zero")
    if number > MAX_INT:
        raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} is larger than {MAX_INT}")
    return number


def _bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} is not 'true' or 'false'")


def _tag_spec(key: str, value: str) -> tuple[str, str]:
    tag_key, sep, tag_value = value.partition("=")
    tag_key = tag_key.strip()
    if not sep or not tag_key:
        raise InvalidArgument(f"parameter {shown(key)}: {shown(value)} is not of the form key=value")
    if len(tag_key) > 128 or len(tag_value) > 256:
        raise InvalidArgument(
            f"parameter {shown(key)}: tag keys are at most 128 characters, values at most 256"
        )
    if (
        tag_key in _RESERVED_TAG_KEYS
        or tag_key.startswith(TAG_CLUSTER_PREFIX)
        or tag_key.lower().startswith("aws:")
        or tag_key in _METADATA_TAGS.values()
    ):
        raise InvalidArgument(f"parameter {shown(key)}: tag key {shown(tag_key)} is reserved")
    return tag_key, tag_value
