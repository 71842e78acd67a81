"""Judging a volume that already carries a CreateVolume's name: compatible, or ALREADY_EXISTS.

CSI: CreateVolume with the name of an existing volume answers that volume when it is compatible with
the request (size within the range, same type, performance, encryption, multi-attach, source, and a
zone the requirement allows) and ALREADY_EXISTS otherwise. Used when EC2 answers a reused client token
and when the name is looked up. Pure functions: no cloud calls (the caller passes the region's zones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.config import DriverConfig
from provisioner.controller.ownership import TAG_SOURCE_VOLUME, is_owned, volume_label
from provisioner.controller.sources import SourcePlan
from provisioner.errors import AlreadyExists
from provisioner.model import GIB, CapacityRange, TopologyRequirement, Volume, VolumeSpec, Zone
from provisioner.topology.zones import requested_zones, zone_in_requirement


@dataclass(frozen=True)
class NameRequest:
    """What a CreateVolume asked for, as an existing volume of its name is judged against it."""

    spec: VolumeSpec
    capacity: CapacityRange
    requirement: TopologyRequirement
    plan: SourcePlan


def check_existing(
    existing: Volume, request: NameRequest, driver: DriverConfig, zones: Sequence[Zone]
) -> None:
    """CSI: a volume with this name that is incompatible with the request → ALREADY_EXISTS."""
    spec, capacity, plan = request.spec, request.capacity, request.plan
    label = volume_label(existing)
    if not is_owned(existing, driver):
        raise AlreadyExists(f"volume {label} carries this name but was not created by {driver.driver_name}")
    problems = []
    if existing.size_gib < spec.size_gib or (
        capacity.limit_bytes and existing.size_gib * GIB > capacity.limit_bytes
    ):
        problems.append(f"size {existing.size_gib} GiB (requested {spec.size_gib} GiB)")
    if existing.volume_type != spec.volume_type:
        problems.append(f"type {existing.volume_type} (requested {spec.volume_type})")
    if spec.iops is not None and existing.iops != spec.iops:
        problems.append(f"iops {existing.iops} (requested {spec.iops})")
    if spec.throughput is not None and existing.throughput != spec.throughput:
        problems.append(f"throughput {existing.throughput} (requested {spec.throughput})")
    # Not asking for encryption is no objection to it: accounts may encrypt every volume by default.
    if spec.encrypted and not existing.encrypted:
        problems.append("not encrypted (requested encrypted)")
    # EC2 reports the key's ARN; a key id or ARN given in the StorageClass ends it.
    if spec.kms_key_id and not existing.kms_key_id.endswith(spec.kms_key_id):
        problems.append(f"KMS key {existing.kms_key_id or 'default'} (requested {spec.kms_key_id})")
    if existing.multi_attach != spec.multi_attach:
        problems.append(f"multi-attach={existing.multi_attach} (requested {spec.multi_attach})")
    # CSI: the source is part of compatibility. A clone's own SnapshotId may name an intermediate
    # snapshot, so clones are compared by the source-volume tag.
    if plan.clone_of or existing.tags.get(TAG_SOURCE_VOLUME):
        if existing.tags.get(TAG_SOURCE_VOLUME, "") != plan.clone_of:
            problems.append(f"source volume {existing.tags.get(TAG_SOURCE_VOLUME) or 'none'}")
    elif existing.snapshot_id != spec.snapshot_id:
        problems.append(f"source snapshot {existing.snapshot_id or 'none'}")
    if problems:
        raise AlreadyExists(f"volume {label} already exists with incompatible " + ", ".join(problems))
    check_zone(existing, request.requirement, zones)


def check_zone(existing: Volume, requirement: TopologyRequirement, zones: Sequence[Zone]) -> None:
    """CSI: an existing volume not accessible where the request requires → ALREADY_EXISTS."""
    if requirement.empty:
        return
    zone = next((z for z in zones if z.name == existing.zone), None)
    if not zone_in_requirement(zone or Zone(existing.zone, ""), requirement):
        raise AlreadyExists(
            f"volume {volume_label(existing)} already exists in zone {existing.zone}, outside the "
            f"requested topology [{', '.join(requested_zones(requirement))}]"
        )
