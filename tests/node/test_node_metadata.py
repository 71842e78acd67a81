"""Metadata source order and overrides, and the attach-limit arithmetic."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from provisioner.errors import FailedPrecondition, Unavailable, ZonalError
from provisioner.node_metadata import max_volumes, resolve_metadata
from provisioner.ports.node import NodeMetadata


@dataclass
class StubSource:
    """A metadata source that returns a fixed answer (or raises) and counts its calls."""

    name: str
    answer: NodeMetadata | ZonalError
    calls: list[int] = field(default_factory=list)

    def fetch(self) -> NodeMetadata:
        self.calls.append(1)
        if isinstance(self.answer, ZonalError):
            raise self.answer
        return self.answer


IMDS = NodeMetadata(
    instance_id="i-imds", zone="us-east-1a", instance_type="m5.large", block_device_count=2, eni_count=2
)
KUBE = NodeMetadata(instance_id="i-kube", zone="us-east-1b", instance_type="c5.xlarge")


def test_first_source_that_knows_wins_and_later_ones_are_not_asked() -> None:
    imds, kube = StubSource("imds", IMDS), StubSource("kubernetes", KUBE)
    got = resolve_metadata([imds, kube], NodeMetadata())
    assert (got.instance_id, got.zone, got.block_device_count, got.source) == (
        "i-imds",
        "us-east-1a",
        2,
        "imds",
    )
    assert kube.calls == []


def test_a_failing_source_falls_through_to_the_next() -> None:
    imds = StubSource("imds", Unavailable("timed out"))
    got = resolve_metadata([imds, StubSource("kubernetes", KUBE)], NodeMetadata())
    assert (got.instance_id, got.zone, got.instance_type) == ("i-kube", "us-east-1b", "c5.xlarge")


def test_the_order_is_configurable() -> None:
    got = resolve_metadata([StubSource("kubernetes", KUBE), StubSource("imds", IMDS)], NodeMetadata())
    assert got.instance_id == "i-kube"


def test_partial_answers_are_combined_in_order() -> None:
    zone_only = StubSource("kubernetes", NodeMetadata(zone="us-east-1c", instance_type="t3.small"))
    got = resolve_metadata([zone_only, StubSource("imds", IMDS)], NodeMetadata())
    assert (got.instance_id, got.zone, got.instance_type) == ("i-imds", "us-east-1c", "t3.small")
    assert got.source == "kubernetes,imds"


def test_overrides_win_field_by_field() -> None:
    got = resolve_metadata(
        [StubSource("imds", IMDS)], NodeMetadata(zone="us-east-1f", instance_type="m4.large")
    )
    assert (got.instance_id, got.zone, got.instance_type) == ("i-imds", "us-east-1f", "m4.large")


def test_id_and_zone_overrides_skip_the_sources() -> None:
    imds = StubSource("imds", IMDS)
    got = resolve_metadata([imds], NodeMetadata(instance_id="i-flag", zone="us-west-2a"))
    assert (got.instance_id, got.zone, got.source) == ("i-flag", "us-west-2a", "flags")
    assert imds.calls == []


def test_refuses_with_every_source_tried_named() -> None:
    sources = [
        StubSource("imds", Unavailable("connection refused")),
        StubSource("kubernetes", NodeMetadata(instance_type="m5.large")),
    ]
    with pytest.raises(FailedPrecondition) as e:
        resolve_metadata(sources, NodeMetadata())
    msg = str(e.value)
    assert "imds (connection refused)" in msg and "kubernetes (no instance_id, zone)" in msg
    assert "--node-id and --zone" in msg


def test_refuses_with_no_sources() -> None:
    with pytest.raises(FailedPrecondition, match=r"none configured.*--zone"):
        resolve_metadata([], NodeMetadata(instance_id="i-1"))


@pytest.mark.parametrize(
    ("instance_type", "devices", "enis", "expected"),
    [
        ("m5.large", 1, 1, 26),  # Nitro: 28 shared − 1 ENI − root
        ("m5.large", 3, 2, 23),  # 28 − 2 ENIs − 3 devices
        ("m5.large", None, None, 26),  # unknowns count as 1 ENI and the root volume
        ("t2.micro", 1, 3, 38),  # Xen: 39 dedicated, ENIs do not count
        ("m4.xlarge", 2, 1, 37),
        ("i3.large", 1, 1, 38),  # i3 is Xen…
        ("i3.metal", 1, 1, 26),  # …but i3.metal is Nitro, bare metal caps at 31 > 27
        ("m7i.large", 1, 4, 31),  # dedicated 32, ENIs do not count
        ("c7a.48xlarge", 1, 1, 127),
        ("r7iz.16xlarge", 2, 1, 46),
        ("m7i.metal-48xl", 1, 1, 78),
        ("mac1.metal", 1, 1, 15),  # EBS cap 16 below the shared 27
        ("d3.8xlarge", 1, 1, 2),
        ("", 1, 1, 26),  # unknown: the conservative Nitro rule
        ("weird", 1, 1, 26),
        ("m5.large", 40, 1, 1),  # never below 1
    ],
)
def test_attach_limit(instance_type: str, devices: int | None, enis: int | None, expected: int) -> None:
    md = NodeMetadata(instance_type=instance_type, block_device_count=devices, eni_count=enis)
    assert max_volumes(md) == expected


def test_explicit_attach_limit_is_taken_as_is() -> None:
    assert max_volumes(NodeMetadata(instance_type="t2.micro", block_device_count=5), explicit_limit=3) == 3
