"""StorageClass parameter validation, capacity rounding and limits, IOPS computation."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from provisioner import params as P
from provisioner.errors import InvalidArgument, OutOfRange
from provisioner.model import GIB, AccessMode, AccessType, CapacityRange, VolumeCapability
from tests.controller.helpers import BLOCK_RWO, MOUNT_RWO


def test_defaults() -> None:
    parsed = P.parse_parameters({})
    assert parsed == P.CreateParameters()
    assert parsed.volume_type == "gp3" and not parsed.encrypted


def test_keys_are_case_insensitive() -> None:
    parsed = P.parse_parameters(
        {"TYPE": "IO2", "IopsPerGb": "10", "ENCRYPTED": "True", "allowautoIOPSPerGBIncrease": "true"}
    )
    assert (parsed.volume_type, parsed.iops_per_gb, parsed.encrypted, parsed.allow_iops_increase) == (
        "io2",
        10,
        True,
        True,
    )


def test_kms_key_implies_encrypted() -> None:
    parsed = P.parse_parameters({"kmsKeyId": "1234abcd"})
    assert parsed.encrypted and parsed.kms_key_id == "1234abcd"


def test_tags_from_tag_specifications_and_claim_metadata() -> None:
    parsed = P.parse_parameters(
        {
            "tagSpecification_1": "owner=team-a",
            "TagSpecification_2": "expr=a=b",
            "tagSpecification_3": "empty=",
            "csi.storage.k8s.io/pvc/name": "data",
            "csi.storage.k8s.io/pvc/namespace": "db",
            "csi.storage.k8s.io/pv/name": "pvc-123",
            "csi.storage.k8s.io/fstype": "xfs",
        }
    )
    assert parsed.tags == {
        "owner": "team-a",
        "expr": "a=b",
        "empty": "",
        P.TAG_PVC_NAME: "data",
        P.TAG_PVC_NAMESPACE: "db",
        P.TAG_PV_NAME: "pvc-123",
    }


def test_format_options_go_to_volume_context() -> None:
    parsed = P.parse_parameters(
        {
            "blockSize": "4096",
            "inodeSize": "512",
            "bytesPerInode": "16384",
            "numberOfInodes": "1000",
            "ext4BigAlloc": "TRUE",
            "ext4ClusterSize": "65536",
        }
    )
    assert parsed.volume_context == {
        "blocksize": "4096",
        "inodesize": "512",
        "bytesperinode": "16384",
        "numberofinodes": "1000",
        "ext4bigalloc": "true",
        "ext4clustersize": "65536",
    }
    P.validate_format_options(parsed.volume_context, [MOUNT_RWO, BLOCK_RWO])


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"colour": "blue"}, "colour"),
        ({"type": "gp9"}, "type"),
        ({"iops": "many"}, "iops"),
        ({"iops": "0"}, "iops"),
        ({"iopsPerGB": "-3"}, "iopsPerGB"),
        ({"encrypted": "yes"}, "encrypted"),
        ({"allowAutoIOPSPerGBIncrease": "1"}, "allowAutoIOPSPerGBIncrease"),
        ({"type": "gp2", "iops": "3000"}, "iops"),
        ({"type": "st1", "iopsPerGB": "3"}, "iopsPerGB"),
        ({"type": "io1", "throughput": "200"}, "throughput"),
        ({"throughput": "100"}, "throughput"),
        ({"throughput": "2001"}, "throughput"),
        ({"tagSpecification_1": "novalue"}, "tagSpecification_1"),
        ({"tagSpecification_1": "=v"}, "tagSpecification_1"),
        ({"tagSpecification_2": "CSIVolumeName=x"}, "tagSpecification_2"),
        ({"tagSpecification_2": "kubernetes.io/cluster/x=owned"}, "tagSpecification_2"),
        ({"tagSpecification_2": "aws:foo=bar"}, "tagSpecification_2"),
        ({"blockSize": "4k"}, "blockSize"),
        ({"ext4ClusterSize": "16384"}, "ext4ClusterSize"),
        ({"Type": "gp3", "type": "gp2"}, "type"),
    ],
)
def test_bad_parameters_name_the_key(parameters: Mapping[str, str], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        P.parse_parameters(parameters)


def test_iops_and_iops_per_gb_exclude_each_other() -> None:
    with pytest.raises(InvalidArgument, match="exclude each other"):
        P.parse_parameters({"type": "io1", "iops": "1000", "iopsPerGB": "10"})


def test_format_options_must_suit_the_fs_type() -> None:
    xfs = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, "xfs")
    P.validate_format_options({"blocksize": "4096", "inodesize": "512"}, [xfs])
    with pytest.raises(InvalidArgument, match=r"'bytesPerInode' cannot be used with fs type 'xfs'"):
        P.validate_format_options({"bytesperinode": "16384"}, [xfs])
    btrfs = VolumeCapability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, "btrfs")
    with pytest.raises(InvalidArgument, match="blockSize"):
        P.validate_format_options({"blocksize": "4096"}, [btrfs])


def test_merge_mutable_wins_case_insensitively() -> None:
    merged = P.merge_mutable({"type": "gp2", "encrypted": "true"}, {"Type": "gp3", "iops": "4000"})
    assert merged == {"encrypted": "true", "Type": "gp3", "iops": "4000"}
    assert P.parse_parameters(merged).volume_type == "gp3"


@pytest.mark.parametrize(
    ("required", "limit", "volume_type", "size"),
    [
        (0, 0, "gp3", 100),  # no range: the documented default
        (0, 10 * GIB, "gp3", 10),  # no required size, a smaller limit: the largest whole GiB allowed
        (1, 0, "gp3", 1),
        (GIB, 0, "gp3", 1),
        (GIB + 1, 0, "gp3", 2),  # rounded up to whole GiB
        (5 * GIB, 5 * GIB, "gp3", 5),
        (GIB + 1, 3 * GIB, "gp2", 2),
        (0, 0, "st1", 125),  # default raised to the type minimum
        (4 * GIB, 0, "io1", 4),
        (65_536 * GIB, 0, "io2", 65_536),
    ],
)
def test_capacity(required: int, limit: int, volume_type: str, size: int) -> None:
    assert P.capacity_gib(CapacityRange(required, limit), volume_type) == size


@pytest.mark.parametrize(
    ("required", "limit", "volume_type"),
    [
        (GIB + 1, GIB + 100, "gp3"),  # limit below the rounded size
        (5 * GIB, 4 * GIB, "gp3"),
        (0, 100 * GIB, "st1"),  # minimum 125 GiB exceeds the limit
        (GIB, 0, "io1"),  # below the type minimum
        (10 * GIB, 0, "sc1"),
        (16_385 * GIB, 0, "gp2"),  # above the type maximum
        (65_537 * GIB, 0, "gp3"),
        (1_025 * GIB, 0, "standard"),
        (16_385 * GIB, 0, "io1"),
        (0, GIB // 2, "gp3"),  # a limit smaller than one GiB
    ],
)
def test_capacity_out_of_range(required: int, limit: int, volume_type: str) -> None:
    with pytest.raises(OutOfRange):
        P.capacity_gib(CapacityRange(required, limit), volume_type)


def test_negative_capacity_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        P.capacity_gib(CapacityRange(-1, 0), "gp3")


@pytest.mark.parametrize(
    ("parameters", "size", "iops"),
    [
        ({}, 10, None),  # EC2's default
        ({"type": "gp2"}, 10, None),
        ({"type": "io1", "iopsPerGB": "10"}, 20, 200),
        (
            {"type": "io1", "iopsPerGB": "2", "allowAutoIOPSPerGBIncrease": "true"},
            10,
            100,
        ),  # raised to minimum
        ({"type": "io1", "iopsPerGB": "100"}, 10, 500),  # capped at 50 IOPS/GiB
        ({"type": "io1", "iopsPerGB": "50"}, 10_000, 64_000),  # capped at the type maximum
        ({"type": "io2", "iopsPerGB": "1000"}, 1_000, 256_000),
        ({"type": "io2", "iops": "5000"}, 10, 5000),
        ({"iops": "16000"}, 10, 5000),  # gp3: 500 IOPS/GiB
        ({"iops": "3000"}, 4, 3000),  # the ratio cap would fall below the minimum: not applied
        ({"iops": "1000", "allowAutoIOPSPerGBIncrease": "true"}, 100, 3000),
        ({"iops": "90000"}, 1000, 80_000),
    ],
)
def test_total_iops(parameters: Mapping[str, str], size: int, iops: int | None) -> None:
    assert P.total_iops(P.parse_parameters(parameters), size) == iops


@pytest.mark.parametrize(
    ("parameters", "named"),
    [({"type": "io1", "iopsPerGB": "2"}, "iopsPerGB"), ({"iops": "1000"}, "iops")],
)
def test_too_few_iops_without_auto_increase(parameters: Mapping[str, str], named: str) -> None:
    with pytest.raises(InvalidArgument, match=f"'{named}'.*allowAutoIOPSPerGBIncrease"):
        P.total_iops(P.parse_parameters(parameters), 10)
