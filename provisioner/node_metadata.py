"""Where this node is and how many volumes it can take: pure functions over metadata sources.

Two decisions live here so they can be tested without a network: which metadata wins
(:func:`resolve_metadata`) and the attachment limit reported as ``max_volumes_per_node``
(:func:`max_volumes`). No I/O: the sources are ports, called in the order given.

The attachment rule (facts from EC2's "Instance volume limits" documentation, as also encoded by
kubernetes-sigs/aws-ebs-csi-driver; the table below is our own, deliberately small):

1. ``--volume-attach-limit`` wins when given.
2. Older (Xen) families have 39 dedicated EBS slots.
3. Some Nitro families (7th-generation Intel/AMD: m7i, c7a, r7iz…) have a dedicated EBS limit by
   size (32 up to 12xlarge … 128 at 48xlarge) that ENIs do not consume.
4. Every other Nitro type shares 28 attachments between EBS volumes, network interfaces and NVMe
   instance stores: 28 minus the attached ENIs (1 when unknown). A few types cap EBS lower
   (bare metal 31, ``mac1.metal`` 16, ``d3.8xlarge`` 3…): the smaller of the two applies.
5. Unknown or missing instance types get rule 4, the smallest general budget, as the conservative
   default.
6. The block devices attached at start (root included; 1 when unknown) are subtracted, because they
   hold slots the driver cannot use — or ``--reserved-volume-attachments`` instead, when given (as
   aws-ebs-csi-driver: the count at boot may include CSI volumes). The result is never below 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from provisioner.errors import FailedPrecondition, ZonalError
from provisioner.ports.node import Metadata, NodeMetadata

NON_NITRO_SLOTS = 39
NITRO_SHARED_SLOTS = 28

# Families built before Nitro (Xen): dedicated EBS slots.
_NON_NITRO_FAMILIES = frozenset(
    {"t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "x1", "x1e", "i2", "i3", "d2"}
    | {"g2", "g3", "g3s", "p2", "p3", "h1", "f1", "cc2", "cr1", "hs1"}
)

# Nitro families with a dedicated EBS limit that does not share slots with ENIs.
_DEDICATED_FAMILIES = frozenset({"m7i", "m7a", "c7i", "c7a", "r7i", "r7a", "r7iz", "u7i"})
_DEDICATED_BY_SIZE = {"16xlarge": 48, "24xlarge": 64, "32xlarge": 88, "48xlarge": 128}
_DEDICATED_SMALL = 32  # medium … 12xlarge
_DEDICATED_METAL = {"metal-16xl": 31, "metal-24xl": 31, "metal-32xl": 79, "metal-48xl": 79}

# Types whose EBS limit is lower than the shared budget.
_EBS_CAPS = {"mac1.metal": 16, "d3.8xlarge": 3, "d3en.12xlarge": 3, "g5.48xlarge": 9, "inf1.24xlarge": 11}
_BARE_METAL_CAP = 31
_TYPE_RE = re.compile(r"^([a-z0-9-]+)\.([a-z0-9-]+)$")


def _dedicated_limit(family: str, size: str) -> int | None:
    if family not in _DEDICATED_FAMILIES:
        return None
    if size in _DEDICATED_METAL:
        return _DEDICATED_METAL[size]
    return _DEDICATED_BY_SIZE.get(size, _DEDICATED_SMALL)


def max_volumes(
    metadata: NodeMetadata, explicit_limit: int | None = None, reserved: int | None = None
) -> int:
    """``max_volumes_per_node`` for NodeGetInfo, following the rule in the module docstring."""
    if explicit_limit is not None:
        return explicit_limit
    attached = metadata.block_device_count if metadata.block_device_count is not None else 1
    if reserved is not None:
        attached = reserved
    match = _TYPE_RE.match(metadata.instance_type.strip().lower())
    family, size = match.groups() if match else ("", "")
    if family in _NON_NITRO_FAMILIES and size != "metal":  # i3.metal is Nitro, i3.large is not
        budget = NON_NITRO_SLOTS
    elif (dedicated := _dedicated_limit(family, size)) is not None:
        budget = dedicated
    else:
        enis = metadata.eni_count if metadata.eni_count is not None else 1
        budget = NITRO_SHARED_SLOTS - enis
        cap = _EBS_CAPS.get(f"{family}.{size}")
        if cap is None and size == "metal":
            cap = _BARE_METAL_CAP
        if cap is not None:
            budget = min(budget, cap)
    return max(1, budget - attached)


def _merge(base: NodeMetadata, more: NodeMetadata) -> NodeMetadata:
    """Fill the fields ``base`` lacks from ``more``."""
    return NodeMetadata(
        instance_id=base.instance_id or more.instance_id,
        zone=base.zone or more.zone,
        instance_type=base.instance_type or more.instance_type,
        region=base.region or more.region,
        block_device_count=(
            base.block_device_count if base.block_device_count is not None else more.block_device_count
        ),
        eni_count=base.eni_count if base.eni_count is not None else more.eni_count,
        source=",".join(s for s in (base.source, more.source) if s),
    )


def _complete(m: NodeMetadata) -> bool:
    return bool(m.instance_id and m.zone)


def resolve_metadata(sources: Sequence[Metadata], overrides: NodeMetadata) -> NodeMetadata:
    """Combine explicit overrides with the sources, tried in order.

    Overrides (``--node-id``, ``--zone``, ``--instance-type``) win field by field. Sources are asked
    only while the instance id or the zone is still unknown, so a node started with both flags never
    waits on IMDS; each source fills only the fields still empty. Raises FailedPrecondition naming
    every source tried and why it failed when no instance id and zone result.
    """
    result = replace(overrides, source="flags" if (overrides.instance_id or overrides.zone) else "")
    tried: list[str] = []
    for source in sources:
        if _complete(result):
            break
        try:
            found = source.fetch()
        except ZonalError as e:
            tried.append(f"{source.name} ({e})")
            continue
        found = replace(found, source=found.source or source.name)
        missing = [f for f in ("instance_id", "zone") if not getattr(found, f)]
        tried.append(f"{source.name} (no {', '.join(missing)})" if missing else source.name)
        result = _merge(result, found)
    if not _complete(result):
        missing = [flag for flag, v in (("--node-id", result.instance_id), ("--zone", result.zone)) if not v]
        sources_text = "; ".join(tried) if tried else "none configured"
        raise FailedPrecondition(
            f"cannot tell which instance and zone this node is: metadata sources tried: {sources_text}; "
            f"pass {' and '.join(missing)} explicitly"
        )
    return result
