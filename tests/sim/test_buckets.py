"""EC2's token buckets on an injected clock, and the 503 RequestLimitExceeded boto3 sees."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.embedded.ec2.buckets import (
    CREATE_TAGS,
    NON_MUTATING,
    OTHER_MUTATING,
    RESOURCE_MUTATING,
    UNFILTERED_DESCRIBE,
    Buckets,
    BucketSpec,
    TokenBucket,
    bucket_for,
)
from tests.fakes.clock import FakeClock
from tests.sim.conftest import NO_RETRY, ZONE_A, code_of, http_status_of

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

FILTERED = {"VolumeId.1": "vol-1"}


@pytest.mark.parametrize(
    ("action", "params", "expected"),
    [
        ("CreateVolume", FILTERED, RESOURCE_MUTATING),
        ("DeleteVolume", FILTERED, RESOURCE_MUTATING),
        ("CreateSnapshot", FILTERED, RESOURCE_MUTATING),
        ("DeleteSnapshot", FILTERED, RESOURCE_MUTATING),
        ("CreateTags", FILTERED, CREATE_TAGS),
        ("AttachVolume", FILTERED, OTHER_MUTATING),
        ("ModifyVolume", FILTERED, OTHER_MUTATING),
        ("DescribeVolumes", FILTERED, NON_MUTATING),
        ("DescribeVolumes", {"MaxResults": "500"}, NON_MUTATING),
        ("DescribeVolumes", {"Action": "DescribeVolumes", "Version": "2016-11-15"}, UNFILTERED_DESCRIBE),
        ("DescribeInstances", {}, UNFILTERED_DESCRIBE),
        ("DescribeSnapshots", {}, UNFILTERED_DESCRIBE),
        ("DescribeAvailabilityZones", {}, NON_MUTATING),
    ],
)
def test_documented_bucket_per_action(action: str, params: dict[str, str], expected: BucketSpec) -> None:
    assert bucket_for(action, params)[1] == expected


def test_bucket_bursts_then_refills_at_its_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(100, 5, clock)

    assert sum(bucket.take() for _ in range(150)) == 100
    clock.advance(1.0)
    assert sum(bucket.take() for _ in range(10)) == 5
    clock.advance(100.0)
    assert bucket.tokens() == 100  # never more than its size


def test_scale_multiplies_the_refill_rate(clock: FakeClock) -> None:
    buckets = Buckets(clock, scale=10)
    while buckets.take("r", "CreateVolume", FILTERED):
        pass

    clock.advance(0.1)

    assert sum(buckets.take("r", "CreateVolume", FILTERED) for _ in range(10)) == 5
    assert buckets.spec("CreateVolume") == BucketSpec(100, 50)


def test_each_action_and_region_has_its_own_bucket(clock: FakeClock) -> None:
    buckets = Buckets(clock)
    while buckets.take("us-east-1", "CreateVolume", FILTERED):
        pass

    assert buckets.take("us-east-1", "AttachVolume", FILTERED)
    assert buckets.take("us-west-2", "CreateVolume", FILTERED)
    assert not buckets.take("us-east-1", "CreateVolume", FILTERED)


def test_disabled_buckets_never_throttle(clock: FakeClock) -> None:
    buckets = Buckets(clock, enabled=False)

    assert all(buckets.take("r", "AttachVolume", FILTERED) for _ in range(200))


def test_create_volume_burst_then_503_request_limit_exceeded(clock: FakeClock) -> None:
    sim = Simulator(SimConfig(delays=Delays.instant()), clock=clock)
    ec2 = sim.client(config=NO_RETRY)
    for _ in range(100):
        ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)

    with pytest.raises(ClientError) as raised:
        ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)

    assert code_of(raised.value) == "RequestLimitExceeded"
    assert http_status_of(raised.value) == 503
    assert len(ec2.describe_volumes(MaxResults=500)["Volumes"]) == 100  # the throttled call did nothing
    clock.advance(0.2)  # 5 per second: one token
    ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)
    assert len(ec2.describe_volumes(MaxResults=500)["Volumes"]) == 101
    counts = sim.counters.snapshot()["CreateVolume"]
    assert (counts.calls, counts.throttled, counts.errors) == (102, 1, 0)


def test_unfiltered_describe_has_the_smaller_bucket(ec2: EC2Client, clock: FakeClock) -> None:
    for _ in range(50):
        ec2.describe_volumes()

    with pytest.raises(ClientError) as raised:
        ec2.describe_volumes()

    assert code_of(raised.value) == "RequestLimitExceeded"
    ec2.describe_volumes(Filters=[{"Name": "status", "Values": ["available"]}])  # another bucket
    clock.advance(0.1)  # 10 per second: one token
    ec2.describe_volumes()
