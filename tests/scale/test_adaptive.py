"""The adaptive limiter finds an account's rate it is not told, on a fake clock, against the simulator's
own token buckets (the same arithmetic as the HTTP simulator, without boto3).

One caller always has another call to make (demand exceeds any rate): it waits for a token, sends, and
reports a throttle the way the retry handler does (with the cut count it was sent under). Everything is
deterministic: the fake clock moves only when the limiter sleeps.

Stated figures (checked below):

* convergence: from the documented start, to any account between 0.5× and 5× the documented bucket
  (and a 5× refill with the documented size), within 30 s of demand the limiter's rate stays within
  0.9–1.7× the account's rate; every later cut lands at 0.93–1.0× it, and at least 97 % of what the
  account refills is used;
* a neighbour spending half the bucket: yielded to within 10 s of it starting (in the band 15 s after);
  after it stops, the rate is back within 0.9× of the whole account within 75 s;
* no oscillation beyond that band: over 10 minutes on a steady account, at most one throttle a minute
  after the first minute;
* a throttle now and then that is not the bucket (1 call in 100, at random) costs under 3 % of the
  account's rate. (More chance throttles cost more: the limiter cannot tell them from a neighbour.)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from provisioner.aws.adaptive import AdaptiveBucket, LimiterSettings
from provisioner.aws.rates import RateSpec
from provisioner.embedded.ec2.buckets import Buckets
from tests.fakes.clock import FakeClock

ACTION = "CreateVolume"
DOCUMENTED = RateSpec(100, 5)  # CreateVolume's documented bucket
FILTERED = {"VolumeId.1": "vol-1"}


@dataclass
class Run:
    clock: FakeClock
    bucket: AdaptiveBucket
    account: Buckets
    admitted: int = 0
    throttled: int = 0
    rates: list[tuple[float, float]] = field(default_factory=list)  # (time, rate) after every call
    cuts: list[tuple[float, float]] = field(default_factory=list)  # (time, rate after the cut)
    throttle_times: list[float] = field(default_factory=list)
    refuse: Callable[[], bool] = lambda: False  # EC2 refusing a call for some reason besides the bucket

    def drive(
        self, until: float = float("inf"), calls: int = 0, at: Callable[[float], None] | None = None
    ) -> Run:
        """Send until the clock passes ``until`` (or ``calls`` calls were admitted)."""
        while self.clock.monotonic() < until and not (calls and self.admitted >= calls):
            assert self.bucket.acquire(1e9)
            epoch = self.bucket.decreases
            now = self.clock.monotonic()
            if at is not None:
                at(now)
            if self.account.take("us-east-1", ACTION, FILTERED) and not self.refuse():
                self.admitted += 1
            else:
                self.throttled += 1
                self.throttle_times.append(now)
                cuts = self.bucket.decreases
                self.bucket.throttled(epoch)
                if self.bucket.decreases > cuts:
                    self.cuts.append((now, self.bucket.rate))
            self.rates.append((now, self.bucket.rate))
        return self

    def rates_between(self, start: float, end: float = float("inf")) -> list[float]:
        return [r for t, r in self.rates if start <= t < end]


def _run(scale: float = 1.0, burst_scale: float = 1.0, neighbour: float = 0.0) -> Run:
    clock = FakeClock(start=0.0)
    account = Buckets(clock, scale=scale, burst_scale=burst_scale, neighbours={ACTION: neighbour})
    return Run(clock, AdaptiveBucket(DOCUMENTED, clock, LimiterSettings()), account)


def test_on_a_default_account_the_start_is_never_throttled_and_1000_calls_take_the_floor() -> None:
    run = _run()

    run.drive(until=2.0)
    assert run.throttled == 0  # the documented burst, then the documented rate
    run.drive(calls=1000)

    floor = (1000 - 100) / 5
    assert run.clock.monotonic() <= 1.01 * floor
    assert run.throttled <= 0.01 * (run.admitted + run.throttled)  # probing costs a call now and then


ACCOUNTS = {
    "half": (0.5, 0.5),
    "documented": (1.0, 1.0),
    "doubled": (2.0, 2.0),
    "five times": (5.0, 5.0),
    "five times the refill only": (5.0, 1.0),
}


@pytest.mark.parametrize(("scale", "burst_scale"), ACCOUNTS.values(), ids=list(ACCOUNTS))
def test_converges_to_an_account_rate_it_is_not_told(scale: float, burst_scale: float) -> None:
    run = _run(scale, burst_scale).drive(until=300.0)
    true = DOCUMENTED.rate * scale

    late = run.rates_between(30.0)
    assert 0.9 * true <= min(late) and max(late) <= 1.7 * true
    assert all(0.93 * true <= rate <= true for t, rate in run.cuts if t >= 30.0)
    assert run.admitted >= 0.97 * (DOCUMENTED.burst * burst_scale + true * 300.0)


def test_the_burst_follows_the_rate_found() -> None:
    run = _run(2.0, 2.0).drive(until=120.0)
    assert run.bucket.capacity == pytest.approx(200 * run.bucket.rate / 10 - 1, rel=0.01)  # one in hand

    run.clock.advance(60.0)  # idle: both buckets fill up
    before, throttled = run.admitted, run.throttled
    run.drive(until=run.clock.monotonic() + 2.0)

    assert run.throttled == throttled
    assert run.admitted - before >= 190  # the doubled account's burst of 200, bar the token in hand


def test_a_smaller_bucket_than_documented_throttles_a_few_calls_of_the_first_burst_not_half() -> None:
    run = _run(0.5, 0.5).drive(until=5.0)  # 50 tokens at 2.5/s against a start of 100 at 5/s

    assert 1 <= run.throttled <= 3  # the burst goes out at 10× the rate: the first refusal stops it
    assert run.cuts[0][1] == pytest.approx(2.5 * 0.98, rel=0.02)


def test_yields_to_a_neighbour_within_seconds_and_takes_the_bucket_back_after_it_stops() -> None:
    run = _run()

    def neighbour_at(now: float) -> None:
        if now >= 60.0 and not neighbour_started:
            run.account.set_neighbour(ACTION, 2.5)
            neighbour_started.append(now)
        if now >= 300.0 and len(neighbour_started) == 1:
            run.account.set_neighbour(ACTION, 0.0)
            neighbour_started.append(now)

    neighbour_started: list[float] = []
    run.drive(until=600.0, at=neighbour_at)

    yielded = next(t for t, rate in run.rates if t >= 60.0 and rate <= 1.1 * 2.5)
    assert yielded - 60.0 <= 10.0
    assert min(run.rates_between(75.0, 300.0)) >= 0.9 * 2.5  # the half left, and the band
    assert max(run.rates_between(75.0, 300.0)) <= 1.7 * 2.5
    assert len([t for t in run.throttle_times if 60.0 <= t < 300.0]) <= 12
    back = next(t for t, rate in run.rates if t >= 300.0 and rate >= 0.9 * 5.0)
    assert back - 300.0 <= 75.0
    assert min(run.rates_between(back + 30.0)) >= 0.9 * 5.0
    assert run.account.neighbour_spent(ACTION) == pytest.approx(2.5 * 240, rel=0.01)  # never starved


def test_no_oscillation_beyond_the_band_on_a_steady_account() -> None:
    run = _run().drive(until=600.0)

    late = [t for t in run.throttle_times if t >= 60.0]
    assert len(late) <= 9  # at most one a minute
    assert min(run.rates_between(60.0)) >= 0.9 * 5 and max(run.rates_between(60.0)) <= 1.7 * 5


def test_no_probing_without_demand() -> None:
    clock = FakeClock(start=0.0)
    bucket = AdaptiveBucket(DOCUMENTED, clock, LimiterSettings())
    for _ in range(600):  # one call a second, below the rate: nobody waits for a token
        assert bucket.acquire(1e9)
        clock.advance(1.0)

    assert bucket.rate == 5.0 and bucket.throttles == 0


def test_an_occasional_throttle_that_is_not_the_bucket_does_not_drag_the_rate_down() -> None:
    run = _run()
    chance = random.Random(1)
    run.refuse = lambda: chance.random() < 0.01  # 1 call in 100, at random

    run.drive(until=300.0)

    assert run.admitted >= 0.97 * (100 + 5.0 * 300.0)
