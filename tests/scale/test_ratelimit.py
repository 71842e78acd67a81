"""Per-action adaptive rate limiting and deadline-bounded retries, on an injected clock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from provisioner.aws.callmetrics import install_metrics
from provisioner.aws.ratelimit import (
    AdaptiveBucket,
    LimiterSettings,
    RateLimiter,
    RateSpec,
    RetryPolicy,
    install,
)
from provisioner.embedded.ec2 import Delays, Faults, SimConfig, Simulator
from provisioner.errors import Unavailable
from provisioner.ports.clock import Deadline, SystemClock, deadline_scope
from tests.fakes.clock import FakeClock
from tests.scale.conftest import STANDARD, ZONE_A, calls

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

ATTACH = "AttachVolume"
CREATE = "CreateVolume"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_fresh_bucket_allows_ec2s_burst_then_its_refill_rate(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    for _ in range(99):  # EC2's burst of 100, one token kept in hand
        limiter.acquire(CREATE)
    assert clock.sleeps == []

    for _ in range(3):
        limiter.acquire(CREATE)

    assert clock.sleeps == pytest.approx([0.2, 0.2, 0.2])  # CreateVolume refills 5 a second


def test_scale_multiplies_the_documented_rates(clock: FakeClock) -> None:
    limiter = RateLimiter(LimiterSettings(scale=10), clock=clock)
    for _ in range(50):
        limiter.acquire(ATTACH)  # other mutating calls: 50 burst (49 used), 5/s

    assert clock.sleeps == pytest.approx([0.02])


def test_reads_are_not_limited(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    for _ in range(500):
        limiter.acquire("DescribeVolumes")
    assert limiter.bucket("DescribeVolumes") is None
    assert clock.sleeps == []


def test_throttling_one_action_does_not_slow_another(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    limiter.acquire(ATTACH)

    limiter.throttled(CREATE)
    limiter.acquire(ATTACH)

    create, attach = limiter.bucket(CREATE), limiter.bucket(ATTACH)
    assert create is not None and attach is not None
    assert create.rate == pytest.approx(3.5)  # 5/s × 0.7
    assert attach.rate == pytest.approx(5.0)
    assert clock.sleeps == []  # AttachVolume still had its burst


def test_throttling_empties_the_bucket_and_cuts_the_rate_once_per_interval(clock: FakeClock) -> None:
    bucket = AdaptiveBucket(RateSpec(100, 5), clock, LimiterSettings(decrease_interval=1.0))

    for _ in range(10):  # a burst of throttled answers to calls that were in flight together
        bucket.throttled()
    assert bucket.rate == pytest.approx(3.5)
    assert (bucket.tokens(), bucket.decreases, bucket.throttles) == (0, 1, 10)

    clock.advance(1.0)
    bucket.throttled()

    assert bucket.decreases == 2
    assert bucket.rate == pytest.approx(3.5 * 0.7 + 0.5 * 0.7)  # 1 s of recovery (+0.5/s) then × 0.7


def test_the_rate_recovers_linearly_to_the_documented_one_and_no_further(clock: FakeClock) -> None:
    bucket = AdaptiveBucket(RateSpec(100, 5), clock, LimiterSettings(recover_seconds=10.0))
    bucket.throttled()

    clock.advance(2.0)
    bucket.tokens()
    assert bucket.rate == pytest.approx(3.5 + 1.0)

    clock.advance(60.0)
    bucket.tokens()
    assert bucket.rate == pytest.approx(5.0)


def test_the_rate_never_drops_below_its_floor(clock: FakeClock) -> None:
    bucket = AdaptiveBucket(RateSpec(100, 5), clock, LimiterSettings(decrease_interval=0.0))
    for _ in range(100):
        bucket.throttled()
    assert bucket.rate == pytest.approx(0.25)  # 5 % of 5/s


def test_a_token_that_would_come_after_the_deadline_is_refused_and_not_taken(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    for _ in range(99):
        limiter.acquire(CREATE)

    with (
        deadline_scope(Deadline(clock, 0.1)),
        pytest.raises(Unavailable, match="no slot before the deadline"),
    ):
        limiter.acquire(CREATE)  # the next token is 0.2 s away

    assert clock.sleeps == []
    with deadline_scope(Deadline(clock, 0.3)):
        limiter.acquire(CREATE)
    assert clock.sleeps == pytest.approx([0.2])


@dataclass
class ThrottlingClock(FakeClock):
    """A fake clock where, as the first sleep begins, EC2 throttles someone (the bucket is told)."""

    bucket: AdaptiveBucket | None = None
    fired: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def sleep(self, seconds: float) -> None:
        if self.bucket is not None and not self.fired:
            self.fired.append(seconds)
            self.bucket.throttled()
        super().sleep(seconds)


def test_a_waiter_whose_turn_a_decrease_postponed_waits_on_at_the_new_rate() -> None:
    clock = ThrottlingClock()
    bucket = AdaptiveBucket(RateSpec(1, 5), clock, LimiterSettings())
    clock.bucket = bucket
    assert bucket.acquire(10.0)

    assert bucket.acquire(10.0)

    # Due in 0.2 s at 5/s; a throttle cut the rate to 3.5/s, so after 0.2 s only 0.7 token came:
    # the remaining 0.3 token comes at the rate recovered meanwhile (3.5 + 5 × 0.2 / 10 = 3.6/s).
    assert clock.sleeps == pytest.approx([0.2, 0.3 / 3.6])


def _limited_client(
    sim: Simulator, clock: FakeClock, settings: LimiterSettings | None = None
) -> tuple[EC2Client, RateLimiter]:
    client = sim.client(config=STANDARD)
    limiter = RateLimiter(settings, clock=clock)
    install(client, limiter, RetryPolicy(limiter, base_backoff=0.001, max_backoff=0.01, clock=clock))
    return client, limiter


def test_the_limiter_keeps_a_lone_client_inside_ec2s_bucket(clock: FakeClock) -> None:
    sim = Simulator(SimConfig(delays=Delays.instant()), clock=clock)
    client, _ = _limited_client(sim, clock)
    ec2 = sim.client(config=STANDARD)
    instance = sim.create_instance(ZONE_A)
    for _ in range(110):
        ec2_volume = client.create_volume(AvailabilityZone=ZONE_A, Size=1)
    waited_for_creates = sum(clock.sleeps)

    client.attach_volume(VolumeId=ec2_volume["VolumeId"], InstanceId=instance, Device="/dev/sdf")

    assert sim.counters.snapshot()[CREATE].throttled == 0
    assert calls(sim, CREATE) == 110
    assert waited_for_creates == pytest.approx(11 * 0.2)  # 99 at once, then 5/s
    assert sum(clock.sleeps) == pytest.approx(waited_for_creates)  # AttachVolume waited for nothing
    assert ec2.describe_volumes(VolumeIds=[ec2_volume["VolumeId"]])["Volumes"][0]["State"] == "in-use"


def test_throttled_answers_lower_only_that_actions_rate_and_are_retried(clock: FakeClock) -> None:
    sim = Simulator(
        SimConfig(delays=Delays.instant(), throttling=False, faults=Faults(throttle_rate=0.3), seed=7),
        clock=clock,
    )
    client, limiter = _limited_client(sim, clock)

    for _ in range(20):
        client.create_volume(AvailabilityZone=ZONE_A, Size=1)

    create, attach = limiter.bucket(CREATE), limiter.bucket(ATTACH)
    assert create is not None and attach is not None
    assert create.throttles == sim.counters.snapshot()[CREATE].throttled > 0
    assert create.rate < 5.0
    assert attach.rate == 5.0 and attach.throttles == 0


def test_retries_stop_before_the_rpc_deadline() -> None:
    sim = Simulator(SimConfig(delays=Delays.instant(), faults=Faults(server_error_rate=1.0)))
    client = sim.client(config=STANDARD)
    policy = RetryPolicy(None, max_attempts=5, base_backoff=0.01, max_backoff=0.01, rng=random.Random(1))
    install(client, None, policy)

    with pytest.raises(ClientError):
        client.create_volume(AvailabilityZone=ZONE_A, Size=1)
    assert calls(sim, CREATE) == 5  # no deadline: every attempt

    sim.counters.reset()
    with deadline_scope(Deadline(SystemClock(), 0.001)), pytest.raises(ClientError):
        client.create_volume(AvailabilityZone=ZONE_A, Size=1)
    assert calls(sim, CREATE) == 1  # a backoff would pass the deadline: no retry


@dataclass
class Recorded:
    records: list[tuple[str, str, bool]] = field(default_factory=list)

    def observe_ec2(self, request: str, seconds: float, error: str = "", throttled: bool = False) -> None:
        assert seconds >= 0
        self.records.append((request, error, throttled))


def test_every_api_call_is_reported_once_with_its_error_and_throttles() -> None:
    sim = Simulator(
        SimConfig(delays=Delays.instant(), throttling=False, faults=Faults(throttle_rate=0.5), seed=3)
    )
    client = sim.client(config=STANDARD)
    install(client, None, RetryPolicy(None, max_attempts=2, base_backoff=0.001, max_backoff=0.001))
    observed = Recorded()
    install_metrics(client, observed)

    outcomes = []
    for _ in range(8):
        try:
            client.describe_volumes()
            outcomes.append("")
        except ClientError:
            outcomes.append("RequestLimitExceeded")

    assert [r[0] for r in observed.records] == ["DescribeVolumes"] * 8
    assert [r[1] for r in observed.records] == outcomes
    throttled = sim.counters.snapshot()["DescribeVolumes"].throttled
    assert 0 < sum(r[2] for r in observed.records) <= throttled
