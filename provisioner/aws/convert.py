"""boto3 response dicts → :mod:`provisioner.model` values, and model values → request fragments.

Pure functions, no I/O, no error translation: :mod:`provisioner.aws.ec2` calls EC2 and hands the
dicts here. Missing keys get the model's defaults, because moto and older EC2 API versions leave
out fields (``Throughput``, ``MultiAttachEnabled``) that real EC2 sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from provisioner.model import (
    TAG_VOLUME_NAME,
    Attachment,
    Instance,
    Snapshot,
    Volume,
    VolumeSpec,
    VolumeState,
    Zone,
)
from provisioner.ports.cloud import VolumeModification

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagSpecificationTypeDef, TagTypeDef

Raw = Mapping[str, Any]


def tags_to_dict(tags: Iterable[Raw] | None) -> dict[str, str]:
    """EC2's ``[{"Key": k, "Value": v}]`` → ``{k: v}``."""
    return {str(t["Key"]): str(t.get("Value", "")) for t in tags or ()}


def tags_to_ec2(tags: Mapping[str, str]) -> list[TagTypeDef]:
    """``{k: v}`` → EC2's ``[{"Key": k, "Value": v}]``, sorted for a stable request."""
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_specifications(
    resource_type: Literal["volume", "snapshot"], tags: Mapping[str, str]
) -> list[TagSpecificationTypeDef]:
    """``TagSpecifications`` so the tags are written atomically with the resource."""
    if not tags:
        return []
    return [{"ResourceType": resource_type, "Tags": tags_to_ec2(tags)}]


def tag_filters(tags: Mapping[str, str]) -> list[FilterTypeDef]:
    """One ``tag:<key>`` filter per tag: EC2 ANDs filters, so a resource must carry all of them."""
    return [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(tags.items())]


def epoch(value: object) -> float:
    """A boto3 timestamp (``datetime``) as epoch seconds; 0.0 when absent."""
    return value.timestamp() if isinstance(value, datetime) else 0.0


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value) != "" else None


def to_volume(raw: Raw) -> Volume:
    return Volume(
        volume_id=str(raw["VolumeId"]),
        size_gib=int(raw.get("Size", 0)),
        zone=str(raw.get("AvailabilityZone", "")),
        state=VolumeState(str(raw.get("State", "creating"))),
        volume_type=str(raw.get("VolumeType", "")),
        iops=_optional_int(raw.get("Iops")),
        throughput=_optional_int(raw.get("Throughput")),
        encrypted=bool(raw.get("Encrypted", False)),
        kms_key_id=str(raw.get("KmsKeyId", "")),
        multi_attach=bool(raw.get("MultiAttachEnabled", False)),
        snapshot_id=str(raw.get("SnapshotId", "")),
        tags=tags_to_dict(raw.get("Tags")),
        attachments=tuple(to_attachment(a) for a in raw.get("Attachments") or ()),
    )


def to_attachment(raw: Raw) -> Attachment:
    return Attachment(
        volume_id=str(raw.get("VolumeId", "")),
        instance_id=str(raw.get("InstanceId", "")),
        device=str(raw.get("Device", "")),
        state=str(raw.get("State", "")),
    )


def to_instance(raw: Raw) -> Instance:
    devices: dict[str, str] = {}
    for mapping in raw.get("BlockDeviceMappings") or ():
        ebs = mapping.get("Ebs") or {}
        if "DeviceName" in mapping:
            devices[str(mapping["DeviceName"])] = str(ebs.get("VolumeId", ""))
    return Instance(
        instance_id=str(raw["InstanceId"]),
        zone=str((raw.get("Placement") or {}).get("AvailabilityZone", "")),
        instance_type=str(raw.get("InstanceType", "")),
        state=str((raw.get("State") or {}).get("Name", "")),
        block_devices=devices,
    )


def to_snapshot(raw: Raw) -> Snapshot:
    return Snapshot(
        snapshot_id=str(raw["SnapshotId"]),
        source_volume_id=str(raw.get("VolumeId", "")),
        size_gib=int(raw.get("VolumeSize", 0)),
        state=str(raw.get("State", "pending")),
        created_at=epoch(raw.get("StartTime")),
        tags=tags_to_dict(raw.get("Tags")),
        progress=_percent(raw.get("Progress"), str(raw.get("State", "")) == "completed"),
    )


def _percent(value: object, completed: bool) -> int:
    """EC2's ``Progress`` ("45%") as an int in 0..100; absent: 100 when completed, else 0."""
    text = str(value or "").strip().rstrip("%")
    if not text.isdigit():
        return 100 if completed else 0
    return max(0, min(100, int(text)))


def to_modification(raw: Raw) -> VolumeModification:
    return VolumeModification(
        volume_id=str(raw["VolumeId"]),
        state=str(raw.get("ModificationState", "")),
        target_size_gib=int(raw.get("TargetSize", 0)),
        target_type=str(raw.get("TargetVolumeType", "")),
        target_iops=_optional_int(raw.get("TargetIops")),
        target_throughput=_optional_int(raw.get("TargetThroughput")),
        start_time=epoch(raw.get("StartTime")),
    )


def to_zones(raw: Sequence[Raw]) -> tuple[Zone, ...]:
    return tuple(
        Zone(name=str(z["ZoneName"]), zone_id=str(z.get("ZoneId", "")), state=str(z.get("State", "")))
        for z in raw
    )


def volume_request(spec: VolumeSpec, client_token: str, **where: str) -> dict[str, Any]:
    """The parameters CreateVolume and CopyVolumes share. ``CSIVolumeName`` is always among the tags;
    optional attributes are sent only when set, so EC2's defaults (and encryption by default) apply."""
    tags = {**spec.tags, TAG_VOLUME_NAME: spec.name}
    request: dict[str, Any] = {
        **where,
        "Size": spec.size_gib,
        "VolumeType": spec.volume_type,
        "ClientToken": client_token,
        "TagSpecifications": tag_specifications("volume", tags),
    }
    if spec.encrypted or spec.kms_key_id:
        request["Encrypted"] = True
    if spec.kms_key_id:
        request["KmsKeyId"] = spec.kms_key_id
    if spec.iops is not None:
        request["Iops"] = spec.iops
    if spec.throughput is not None:
        request["Throughput"] = spec.throughput
    if spec.multi_attach:
        request["MultiAttachEnabled"] = True
    return request
