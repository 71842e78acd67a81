"""Zone choice for CreateVolume: which availability zone satisfies a CSI TopologyRequirement.

Pure functions over model values: no I/O and no logging. :func:`choose_zone` returns the zone *and*
why (which preferred/requisite entry won, which requested zones were skipped), so the controller can
log the skips and the ``explain`` tool can print the whole decision.

Rules (CSI ``TopologyRequirement``): walk ``preferred`` in order, then the remaining ``requisite``
entries in order; the first segment naming a zone of the region wins. A zone is named by any of
:data:`~provisioner.model.ZONE_KEYS` or by a zone id (:data:`~provisioner.model.ZONE_ID_KEY`); other
keys are ignored. A segment whose zone keys disagree can never be satisfied and is skipped.

With no zone in the requirement at all: the configured default zone if there is one (it must be a
usable zone of the region, else RESOURCE_EXHAUSTED — the request is fine, the placement is not), else a
deterministic spread: ``sha256(name) mod`` the number of usable zones, sorted by name. The same name
always lands in the same zone, different names spread evenly. WaitForFirstConsumer remains the
recommended binding mode; the spread only serves Immediate binding without allowedTopologies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.errors import ResourceExhausted
from provisioner.model import ZONE_ID_KEY, ZONE_KEYS, Segment, TopologyRequirement, Zone

# Why a ZoneChoice was made.
SOURCE_PREFERRED = "preferred"
SOURCE_REQUISITE = "requisite"
SOURCE_DEFAULT = "default-zone"
SOURCE_SPREAD = "spread"


@dataclass(frozen=True)
class SkippedSegment:
    """A requested segment that could not be used, and why."""

    source: str  # preferred | requisite
    index: int
    requested: str  # the zone name or zone id as requested ("a|b" for conflicting keys)
    reason: str


@dataclass(frozen=True)
class ZoneChoice:
    zone: str
    source: str  # preferred | requisite | default-zone | spread
    index: int | None = None  # position in preferred/requisite when source is one of those
    skipped: tuple[SkippedSegment, ...] = ()

    def describe(self) -> str:
        """One line for logs and ``explain``."""
        where = f"{self.source}[{self.index}]" if self.index is not None else self.source
        text = f"zone {self.zone} from {where}"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{s.requested} ({s.reason})" for s in self.skipped)
        return text


def usable_zones(zones: Sequence[Zone]) -> list[Zone]:
    """The region's zones that accept volumes, sorted by name."""
    return sorted((z for z in zones if z.state == "available"), key=lambda z: z.name)


def segment_has_zone(segment: Segment) -> bool:
    """Whether the segment names a zone at all (by name or id)."""
    return any(k in segment for k in ZONE_KEYS) or ZONE_ID_KEY in segment


def segment_matches_zone(segment: Segment, zone: Zone) -> bool:
    """Whether ``zone`` satisfies every zone key of ``segment`` (a segment without any matches every zone)."""
    for key in ZONE_KEYS:
        if key in segment and segment[key] != zone.name:
            return False
    return not (ZONE_ID_KEY in segment and segment[ZONE_ID_KEY] != zone.zone_id)


def zone_in_requirement(zone: Zone, requirement: TopologyRequirement) -> bool:
    """Whether a volume in ``zone`` is accessible per the requirement (used for an existing volume).

    True when the requirement names no zone at all, or when some requisite/preferred segment matches."""
    segments = [s for s in (*requirement.requisite, *requirement.preferred) if segment_has_zone(s)]
    return not segments or any(segment_matches_zone(s, zone) for s in segments)


def requested_zones(requirement: TopologyRequirement) -> list[str]:
    """The zone names and ids the requirement mentions, in walk order, without duplicates."""
    out: list[str] = []
    for _, segment in _walk_order(requirement):
        for key in (*ZONE_KEYS, ZONE_ID_KEY):
            value = segment.get(key)
            if value and value not in out:
                out.append(value)
    return out


def choose_zone(
    requirement: TopologyRequirement, zones: Sequence[Zone], name: str, default_zone: str = ""
) -> ZoneChoice:
    """Pick the zone for a new volume called ``name``. Raises ResourceExhausted when none fits."""
    usable = usable_zones(zones)
    by_name = {z.name: z for z in usable}
    by_id = {z.zone_id: z for z in usable if z.zone_id}
    known = {z.name for z in zones} | {z.zone_id for z in zones if z.zone_id}
    skipped: list[SkippedSegment] = []
    any_zone = False
    for (source, index), segment in _walk_order(requirement):
        if not segment_has_zone(segment):
            continue  # e.g. only kubernetes.io/os: no say about the zone
        any_zone = True
        zone, requested, reason = _resolve(segment, by_name, by_id, known)
        if zone is not None:
            return ZoneChoice(zone.name, source, index, tuple(skipped))
        skipped.append(SkippedSegment(source, index, requested, reason))

    region_zones = ", ".join(z.name for z in usable) or "none"
    if any_zone:
        # CSI: unable to provision in accessible_topology → RESOURCE_EXHAUSTED.
        requested = ", ".join(requested_zones(requirement))
        raise ResourceExhausted(
            f"no requested zone can hold the volume: requested [{requested}]; "
            f"the region's usable zones are [{region_zones}]"
        )
    if default_zone:
        if default_zone not in by_name:
            raise ResourceExhausted(
                f"the configured default zone {default_zone} is not a usable zone of the region "
                f"[{region_zones}]"
            )
        return ZoneChoice(default_zone, SOURCE_DEFAULT, None, tuple(skipped))
    if not usable:
        raise ResourceExhausted("the region reports no usable availability zone")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    chosen = usable[int.from_bytes(digest, "big") % len(usable)]
    return ZoneChoice(chosen.name, SOURCE_SPREAD, None, tuple(skipped))


def _walk_order(requirement: TopologyRequirement) -> list[tuple[tuple[str, int], Segment]]:
    """Preferred in order, then the requisite entries not already listed as preferred."""
    order: list[tuple[tuple[str, int], Segment]] = [
        ((SOURCE_PREFERRED, i), s) for i, s in enumerate(requirement.preferred)
    ]
    preferred = [dict(s) for s in requirement.preferred]
    for i, segment in enumerate(requirement.requisite):
        if dict(segment) not in preferred:
            order.append(((SOURCE_REQUISITE, i), segment))
    return order


def _resolve(
    segment: Segment, by_name: dict[str, Zone], by_id: dict[str, Zone], known: set[str]
) -> tuple[Zone | None, str, str]:
    """The usable zone a segment names, or (None, what was requested, why it is skipped)."""
    names = {segment[k] for k in ZONE_KEYS if k in segment}
    zone_id = segment.get(ZONE_ID_KEY)
    requested = "|".join(sorted(names | ({zone_id} if zone_id else set())))
    if len(names) > 1:
        return None, requested, "conflicting zone keys"
    candidates: list[Zone] = []
    if names:
        (zone_name,) = names
        if zone_name not in by_name:
            return None, requested, _unknown(zone_name, known)
        candidates.append(by_name[zone_name])
    if zone_id is not None:
        if zone_id not in by_id:
            return None, requested, _unknown(zone_id, known)
        if candidates and candidates[0].zone_id != zone_id:
            return None, requested, "zone name and zone id disagree"
        candidates.append(by_id[zone_id])
    return candidates[0], requested, ""


def _unknown(value: str, known: set[str]) -> str:
    return "zone not available" if value in known else "unknown zone"
