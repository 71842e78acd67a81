"""Zone choice tables: preferred/requisite order, key families, zone ids, unknown and conflicting zones,
no requirements (default zone and hash spread)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pytest

from provisioner.errors import ResourceExhausted
from provisioner.model import (
    EBS_ZONE_KEY,
    LEGACY_ZONE_KEY,
    ZONE_ID_KEY,
    ZONE_KEY,
    TopologyRequirement,
    Zone,
)
from provisioner.topology.zones import (
    choose_zone,
    requested_zones,
    segment_matches_zone,
    zone_in_requirement,
)
from tests.fakes.cloud import DEFAULT_ZONES

A, B, C = (z.name for z in DEFAULT_ZONES)


def seg(zone: str, key: str = ZONE_KEY) -> dict[str, str]:
    return {key: zone}


def req(
    preferred: tuple[Mapping[str, str], ...] = (), requisite: tuple[Mapping[str, str], ...] = ()
) -> TopologyRequirement:
    return TopologyRequirement(requisite=requisite, preferred=preferred)


@pytest.mark.parametrize(
    ("requirement", "zone", "source", "index"),
    [
        (req(preferred=(seg(B), seg(A)), requisite=(seg(A), seg(B), seg(C))), B, "preferred", 0),
        (req(preferred=(seg("us-east-1z"), seg(C)), requisite=(seg(A), seg(C))), C, "preferred", 1),
        (req(requisite=(seg(C), seg(A))), C, "requisite", 0),
        # preferred exhausted → the rest of requisite, in order, skipping entries already tried
        (req(preferred=(seg("us-east-1z"),), requisite=(seg("us-east-1z"), seg(B))), B, "requisite", 1),
        (req(preferred=(seg(A, EBS_ZONE_KEY),)), A, "preferred", 0),
        (req(preferred=(seg(C, LEGACY_ZONE_KEY),)), C, "preferred", 0),
        (req(preferred=({ZONE_ID_KEY: "use1-az2"},)), B, "preferred", 0),
        (req(preferred=({ZONE_KEY: B, ZONE_ID_KEY: "use1-az2"},)), B, "preferred", 0),
        # other keys never break the choice
        (req(preferred=({ZONE_KEY: C, "kubernetes.io/os": "linux"},)), C, "preferred", 0),
        # conflicting zone keys: unsatisfiable → skipped
        (req(preferred=({ZONE_KEY: A, EBS_ZONE_KEY: B}, seg(C))), C, "preferred", 1),
        # a zone name and an id that disagree: skipped
        (req(preferred=({ZONE_KEY: A, ZONE_ID_KEY: "use1-az2"}, seg(B))), B, "preferred", 1),
        # unknown zone id: skipped
        (req(requisite=({ZONE_ID_KEY: "use1-az9"}, seg(A))), A, "requisite", 1),
        # same zone via two keys agreeing is fine
        (req(preferred=({ZONE_KEY: A, EBS_ZONE_KEY: A},)), A, "preferred", 0),
    ],
)
def test_walk_order_and_key_families(
    requirement: TopologyRequirement, zone: str, source: str, index: int
) -> None:
    choice = choose_zone(requirement, DEFAULT_ZONES, "pvc-x")
    assert (choice.zone, choice.source, choice.index) == (zone, source, index)


def test_skipped_zones_are_reported_with_reasons() -> None:
    requirement = req(
        preferred=(seg("us-east-1z"), {ZONE_KEY: A, EBS_ZONE_KEY: B}, {ZONE_ID_KEY: "use1-az9"}, seg(C)),
    )
    choice = choose_zone(requirement, DEFAULT_ZONES, "pvc-x")
    assert choice.zone == C
    assert [(s.requested, s.reason) for s in choice.skipped] == [
        ("us-east-1z", "unknown zone"),
        (f"{A}|{B}", "conflicting zone keys"),
        ("use1-az9", "unknown zone"),
    ]
    assert "us-east-1z (unknown zone)" in choice.describe()


def test_zone_not_available_is_skipped() -> None:
    region = (Zone(A, "use1-az1", state="impaired"), Zone(B, "use1-az2"))
    choice = choose_zone(req(preferred=(seg(A), seg(B))), region, "pvc-x")
    assert choice.zone == B
    assert choice.skipped[0].reason == "zone not available"


def test_no_candidate_left_names_requested_and_region_zones() -> None:
    with pytest.raises(ResourceExhausted) as info:
        choose_zone(req(requisite=(seg("eu-west-1a"), {ZONE_ID_KEY: "use1-az9"})), DEFAULT_ZONES, "pvc-x")
    message = str(info.value)
    assert "eu-west-1a" in message and "use1-az9" in message
    assert all(z in message for z in (A, B, C))


def test_no_requirements_spreads_by_name_hash() -> None:
    names = sorted((A, B, C))
    for name in ("pvc-1", "pvc-2", "pvc-3", "pvc-abc"):
        expected = names[int.from_bytes(hashlib.sha256(name.encode()).digest(), "big") % 3]
        choice = choose_zone(TopologyRequirement(), DEFAULT_ZONES, name)
        assert (choice.zone, choice.source) == (expected, "spread")
    # deterministic, and spread over every zone
    assert choose_zone(req(), DEFAULT_ZONES, "pvc-1") == choose_zone(req(), DEFAULT_ZONES, "pvc-1")
    assert {choose_zone(req(), DEFAULT_ZONES, f"pvc-{i}").zone for i in range(30)} == {A, B, C}


def test_segments_without_zone_keys_count_as_no_requirement() -> None:
    choice = choose_zone(req(requisite=({"kubernetes.io/os": "linux"},)), DEFAULT_ZONES, "n", default_zone=C)
    assert (choice.zone, choice.source) == (C, "default-zone")


def test_default_zone() -> None:
    assert choose_zone(req(), DEFAULT_ZONES, "n", default_zone=B).zone == B
    # requirements win over the default zone
    assert choose_zone(req(preferred=(seg(A),)), DEFAULT_ZONES, "n", default_zone=B).zone == A
    with pytest.raises(ResourceExhausted, match="default zone us-west-2a"):
        choose_zone(req(), DEFAULT_ZONES, "n", default_zone="us-west-2a")


def test_empty_region() -> None:
    with pytest.raises(ResourceExhausted):
        choose_zone(req(), (), "n")


@pytest.mark.parametrize(
    ("segment", "zone", "matches"),
    [
        ({ZONE_KEY: A}, DEFAULT_ZONES[0], True),
        ({ZONE_KEY: A}, DEFAULT_ZONES[1], False),
        ({LEGACY_ZONE_KEY: B}, DEFAULT_ZONES[1], True),
        ({ZONE_ID_KEY: "use1-az1"}, DEFAULT_ZONES[0], True),
        ({ZONE_ID_KEY: "use1-az1"}, DEFAULT_ZONES[1], False),
        ({ZONE_KEY: A, EBS_ZONE_KEY: B}, DEFAULT_ZONES[0], False),
        ({"kubernetes.io/os": "linux"}, DEFAULT_ZONES[2], True),
    ],
)
def test_segment_matches_zone(segment: Mapping[str, str], zone: Zone, matches: bool) -> None:
    assert segment_matches_zone(segment, zone) is matches


def test_zone_in_requirement() -> None:
    a, b, _ = DEFAULT_ZONES
    assert zone_in_requirement(a, req())
    assert zone_in_requirement(a, req(requisite=({"kubernetes.io/os": "linux"},)))
    assert zone_in_requirement(a, req(preferred=(seg(B),), requisite=(seg(A), seg(B))))
    assert not zone_in_requirement(a, req(preferred=(seg(B),), requisite=(seg(B),)))
    assert zone_in_requirement(b, req(requisite=({ZONE_ID_KEY: "use1-az2"},)))


def test_requested_zones_in_walk_order() -> None:
    requirement = req(preferred=(seg(B),), requisite=(seg(A), seg(B), {ZONE_ID_KEY: "use1-az4"}))
    assert requested_zones(requirement) == [B, A, "use1-az4"]
