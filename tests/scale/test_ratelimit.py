"""Per-action adaptive rate limiting and deadline-bounded retries, on an injected clock."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from provisioner.aws.adaptive import AdaptiveBucket, LimiterSettings
from provisioner.aws.callmetrics import install_metrics
from provisioner.aws.ratelimit import RateLimiter, RetryPolicy, install
from provisioner.aws.rates import RateSpec
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


def test_a_fresh_bucket_sends_ec2s_burst_at_ten_times_the_rate_then_the_refill_rate(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    for _ in range(99):  # EC2's burst of 100, one token kept in hand, 50 a second
        limiter.acquire(CREATE)
    assert clock.sleeps == pytest.approx([0.02] * 98)

    paced = 99
    while True:  # then what CreateVolume's 5 a second refilled meanwhile, at the same pace
        clock.sleeps.clear()
        limiter.acquire(CREATE)
        if sum(clock.sleeps) > 0.021:
            break
        paced += 1

    assert paced >= 99 + 9  # the 2 s of the burst refilled 10 tokens
    assert 0.021 < sum(clock.sleeps) <= 0.2 + 1e-6  # then a wait for the refill, at most 1/(5/s)


def test_scale_is_where_size_and_rate_start(clock: FakeClock) -> None:
    limiter = RateLimiter(LimiterSettings(scale=10), clock=clock)
    limiter.acquire(ATTACH)  # other mutating calls: 50 burst, 5/s → 500 and 50/s

    bucket = limiter.bucket(ATTACH)
    assert bucket is not None
    assert (bucket.capacity, bucket.rate) == (499, 50)


def test_reads_are_not_limited(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    for _ in range(500):
        limiter.acquire("DescribeVolumes")
    assert limiter.bucket("DescribeVolumes") is None
    assert clock.sleeps == []


def test_throttling_one_action_does_not_slow_another(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    limiter.acquire(ATTACH)
    limiter.acquire(CREATE)

    for _ in range(20):
        limiter.acquire(CREATE)
    limiter.throttled(CREATE)
    limiter.throttled(CREATE)  # a guess waits for a second throttle
    limiter.acquire(ATTACH)

    create, attach = limiter.bucket(CREATE), limiter.bucket(ATTACH)
    assert create is not None and attach is not None
    assert create.rate < 5.0 and create.decreases == 1
    assert attach.rate == 5.0 and attach.throttles == 0
    assert attach.tokens() >= 47  # AttachVolume still has its burst


def test_a_cut_empties_the_bucket_and_answers_for_every_throttle_of_calls_sent_before_it(
    clock: FakeClock,
) -> None:
    bucket = AdaptiveBucket(RateSpec(100, 5), clock, LimiterSettings())
    for _ in range(20):
        assert bucket.acquire(10.0)

    bucket.throttled(0)
    assert bucket.decreases == 0  # one throttle may be chance: a guess waits for a second
    for _ in range(10):  # a burst of throttled answers to calls that were in flight together
        bucket.throttled(0)

    assert (bucket.decreases, bucket.throttles) == (1, 11)
    assert bucket.tokens() == 0
    # Not measured yet (no earlier cut): guessed from the full start, the account's burst taken to be
    # 20 s of its refill like the documented one: 18 admitted over 0.38 s + 20 s, less the margin.
    assert bucket.rate == pytest.approx(18 / 20.38 * 0.98)

    bucket.throttled(1)  # sent after the cut, right after it: too few calls since to measure
    assert bucket.decreases == 1
    bucket.throttled(1)  # confirmed
    assert bucket.decreases == 2
    assert bucket.rate == pytest.approx(18 / 20.38 * 0.98 * 0.7 * 0.98)


def test_without_a_send_epoch_throttles_within_the_interval_belong_to_the_last_cut(clock: FakeClock) -> None:
    bucket = AdaptiveBucket(RateSpec(100, 5), clock, LimiterSettings(decrease_interval=1.0))
    for _ in range(3):
        bucket.throttled()
    assert bucket.decreases == 1  # the first waited for the second; the third was within the interval

    clock.advance(1.0)
    bucket.throttled()
    bucket.throttled()
    assert bucket.decreases == 2


def test_the_rate_never_drops_below_its_floor(clock: FakeClock) -> None:
    bucket = AdaptiveBucket(RateSpec(100, 5), clock, LimiterSettings(decrease_interval=0.0))
    for _ in range(100):
        bucket.throttled()
    assert bucket.rate == pytest.approx(0.5)  # 10 % of 5/s


def test_a_token_that_would_come_after_the_deadline_is_refused_and_not_taken(clock: FakeClock) -> None:
    limiter = RateLimiter(LimiterSettings(burst_pace=1e9), clock=clock)  # no pacing of the burst here
    for _ in range(99):
        limiter.acquire(CREATE)

    with (
        deadline_scope(Deadline(clock, 0.1)),
        pytest.raises(Unavailable, match="no slot before the deadline"),
    ):
        limiter.acquire(CREATE)  # the next token is 0.2 s away

    assert sum(clock.sleeps) < 1e-6
    with deadline_scope(Deadline(clock, 0.3)):
        limiter.acquire(CREATE)
    assert sum(clock.sleeps) == pytest.approx(0.2)


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
            self.bucket.throttled()  # a guess waits for a second throttle
        super().sleep(seconds)


def test_a_waiter_whose_turn_a_cut_postponed_waits_on_at_the_new_rate() -> None:
    clock = ThrottlingClock()
    bucket = AdaptiveBucket(RateSpec(100, 5), clock, LimiterSettings(burst_pace=1e9))
    for _ in range(99):  # the burst, at once
        assert bucket.acquire(10.0)
    clock.sleeps.clear()
    clock.bucket = bucket

    assert bucket.acquire(10.0)

    # Due in 0.2 s at 5/s; as the wait began, two throttles cut the rate to a guess (97 admitted since
    # the start, over 20 s of refill for the account's burst, less the margin): after 0.2 s fewer than
    # one token came, the rest comes at the new rate.
    rate = 97 / 20 * 0.98
    assert clock.sleeps == pytest.approx([0.2, (1 - 0.2 * rate) / rate], abs=1e-6)


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


def test_a_throttle_of_a_call_sent_before_the_last_cut_is_not_a_new_signal(clock: FakeClock) -> None:
    limiter = RateLimiter(clock=clock)
    bucket = limiter.bucket(CREATE)
    assert bucket is not None
    sent, answered = threading.Event(), threading.Event()

    def early_sender() -> None:  # botocore: the thread that sent an attempt hears its answer
        limiter.acquire(CREATE)
        sent.set()
        answered.wait()
        limiter.throttled(CREATE)

    thread = threading.Thread(target=early_sender)
    thread.start()
    sent.wait()
    for _ in range(20):
        limiter.acquire(CREATE)
    limiter.throttled(CREATE)
    limiter.throttled(CREATE)
    assert bucket.decreases == 1

    answered.set()  # the early call's throttle arrives after the cut it belongs to
    thread.join()
    assert (bucket.throttles, bucket.decreases) == (3, 1)

    limiter.acquire(CREATE)
    limiter.throttled(CREATE)  # sent after the cut: a new signal (confirmed by a second)
    limiter.throttled(CREATE)
    assert bucket.decreases == 2
