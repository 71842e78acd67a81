"""EC2's token buckets on an injected clock, and the 503 RequestLimitExceeded boto3 sees."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from provisioner.aws.rates import MUTATING, NON_MUTATING, UNFILTERED_NON_MUTATING, RateSpec
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.embedded.ec2.buckets import Buckets, bucket_for
from provisioner.tokenbucket import TokenBucket
from tests.fakes.clock import FakeClock
from tests.sim.conftest import NO_RETRY, ZONE_A, code_of, http_status_of

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

FILTERED = {"VolumeId.1": "vol-1"}
VOLUME_LIFECYCLE = RateSpec(100, 5)
CREATE_TAGS = RateSpec(100, 10)


@pytest.mark.parametrize(
    ("action", "params", "expected"),
    [
        ("CreateVolume", FILTERED, VOLUME_LIFECYCLE),
        ("DeleteVolume", FILTERED, VOLUME_LIFECYCLE),
        ("CreateSnapshot", FILTERED, VOLUME_LIFECYCLE),
        ("DeleteSnapshot", FILTERED, VOLUME_LIFECYCLE),
        ("CreateTags", FILTERED, CREATE_TAGS),
        ("AttachVolume", FILTERED, MUTATING),
        ("ModifyVolume", FILTERED, MUTATING),
        ("DescribeVolumes", FILTERED, NON_MUTATING),
        ("DescribeVolumes", {"MaxResults": "500"}, NON_MUTATING),
        ("DescribeVolumes", {"Action": "DescribeVolumes", "Version": "2016-11-15"}, UNFILTERED_NON_MUTATING),
        ("DescribeInstances", {}, UNFILTERED_NON_MUTATING),
        ("DescribeSnapshots", {}, UNFILTERED_NON_MUTATING),
        ("DescribeAvailabilityZones", {}, NON_MUTATING),
    ],
)
def test_documented_bucket_per_action(action: str, params: dict[str, str], expected: RateSpec) -> None:
    assert bucket_for(action, params)[1] == expected


def test_bucket_bursts_then_refills_at_its_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(100, 5, clock.monotonic())

    assert sum(bucket.try_take(clock.monotonic()) for _ in range(150)) == 100
    clock.advance(1.0)
    assert sum(bucket.try_take(clock.monotonic()) for _ in range(10)) == 5
    clock.advance(100.0)
    assert bucket.level(clock.monotonic()) == 100  # never more than its size


def test_scale_multiplies_the_refill_rate_and_burst_scale_the_size(clock: FakeClock) -> None:
    buckets = Buckets(clock, scale=10)
    while buckets.take("r", "CreateVolume", FILTERED):
        pass

    clock.advance(0.1)

    assert sum(buckets.take("r", "CreateVolume", FILTERED) for _ in range(10)) == 5
    assert buckets.spec("CreateVolume") == RateSpec(100, 50)
    raised = Buckets(clock, scale=2, burst_scale=2)
    assert sum(raised.take("r", "CreateVolume", FILTERED) for _ in range(300)) == 200
    assert raised.spec("DescribeVolumes", {}) == RateSpec(100, 20)  # the unfiltered bucket, doubled


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


def test_a_neighbour_spends_its_share_of_the_refill_first(clock: FakeClock) -> None:
    buckets = Buckets(clock, neighbours={"CreateVolume": 2.5})
    while buckets.take("r", "CreateVolume", FILTERED):
        pass

    clock.advance(2.0)  # 10 tokens refilled, 5 of them the neighbour's

    assert sum(buckets.take("r", "CreateVolume", FILTERED) for _ in range(10)) == 5
    assert buckets.take("r", "AttachVolume", FILTERED)  # other actions are not its business
    assert buckets.neighbour_spent("CreateVolume") == pytest.approx(5.0)


def test_a_neighbour_slower_than_the_refill_leaves_an_idle_bucket_full(clock: FakeClock) -> None:
    buckets = Buckets(clock, neighbours={"CreateVolume": 2.5})
    assert buckets.take("r", "CreateVolume", FILTERED)

    clock.advance(100.0)

    assert sum(buckets.take("r", "CreateVolume", FILTERED) for _ in range(150)) == 100


def test_a_neighbour_that_starts_and_stops(clock: FakeClock) -> None:
    buckets = Buckets(clock)
    while buckets.take("r", "CreateVolume", FILTERED):
        pass
    buckets.set_neighbour("CreateVolume", 5.0)  # all of the refill
    clock.advance(1.0)
    assert not buckets.take("r", "CreateVolume", FILTERED)

    buckets.set_neighbour("CreateVolume", 0.0)
    clock.advance(1.0)
    assert sum(buckets.take("r", "CreateVolume", FILTERED) for _ in range(10)) == 5


def test_the_command_line_sets_buckets_the_client_is_not_told_about() -> None:
    from provisioner.embedded.ec2.__main__ import build_parser, config_from

    args = build_parser().parse_args(
        ["--scale", "2", "--burst-scale", "2", "--neighbour", "CreateVolume=2.5"]
    )
    config = config_from(args)
    assert (config.scale, config.burst_scale, dict(config.neighbours)) == (2.0, 2.0, {"CreateVolume": 2.5})
    with pytest.raises(SystemExit, match="expected ACTION=RATE"):
        config_from(build_parser().parse_args(["--neighbour", "CreateVolume"]))
