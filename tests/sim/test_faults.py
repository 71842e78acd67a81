"""Seeded faults and latency, and the counters that record them."""

from __future__ import annotations

import contextlib

import pytest
from botocore.exceptions import ClientError

from provisioner.embedded.ec2 import ActionCounts, Delays, Faults, SimConfig, Simulator
from tests.fakes.clock import FakeClock
from tests.sim.conftest import NO_RETRY, ZONE_A, code_of, http_status_of


def _outcomes(seed: int, calls: int = 30) -> list[str]:
    config = SimConfig(faults=Faults(throttle_rate=0.2, server_error_rate=0.2), throttling=False, seed=seed)
    ec2 = Simulator(config, clock=FakeClock()).client(config=NO_RETRY)
    outcomes = []
    for _ in range(calls):
        try:
            ec2.describe_volumes(MaxResults=5)
            outcomes.append("ok")
        except ClientError as e:
            outcomes.append(f"{code_of(e)}/{http_status_of(e)}")
    return outcomes


def test_same_seed_same_faults() -> None:
    first, again, other = _outcomes(seed=3), _outcomes(seed=3), _outcomes(seed=4)

    assert first == again
    assert first != other
    assert set(first) == {"ok", "RequestLimitExceeded/503", "InternalError/500"}


def test_faults_are_counted_per_action() -> None:
    config = SimConfig(faults=Faults(server_error_rate=1.0), throttling=False)
    sim = Simulator(config, clock=FakeClock())
    ec2 = sim.client(config=NO_RETRY)

    with pytest.raises(ClientError):
        ec2.describe_volumes(MaxResults=5)

    counts = sim.counters.snapshot()["DescribeVolumes"]
    assert (counts.calls, counts.throttled, counts.errors) == (1, 0, 1)
    assert counts.codes == {"InternalError": 1}


def test_counters_split_calls_throttles_and_errors(clock: FakeClock) -> None:
    sim = Simulator(SimConfig(delays=Delays.instant()), clock=clock)
    ec2 = sim.client(config=NO_RETRY)
    ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)
    with pytest.raises(ClientError):
        ec2.create_volume(AvailabilityZone="nowhere-1a", Size=1)
    for _ in range(51):
        with contextlib.suppress(ClientError):
            ec2.describe_instances()

    counts = sim.counters.snapshot()
    assert counts["CreateVolume"] == ActionCounts(2, 0, 1, counts["CreateVolume"].codes)
    assert counts["CreateVolume"].codes == {"InvalidZone.NotFound": 1}
    assert (counts["DescribeInstances"].calls, counts["DescribeInstances"].throttled) == (51, 1)
    assert sim.counters.as_json()["CreateVolume"] == {
        "calls": 2,
        "throttled": 0,
        "errors": 1,
        "codes": {"InvalidZone.NotFound": 1},
    }
    sim.counters.reset()
    assert sim.counters.snapshot() == {}


def test_latency_per_action_sleeps_on_the_clock(clock: FakeClock) -> None:
    config = SimConfig(delays=Delays.instant(), latency={"CreateVolume": 0.25}, default_latency=0.01)
    ec2 = Simulator(config, clock=clock).client(config=NO_RETRY)

    ec2.create_volume(AvailabilityZone=ZONE_A, Size=1)
    ec2.describe_volumes(MaxResults=5)

    assert clock.sleeps == [0.25, 0.01]


def test_latency_jitter_is_seeded() -> None:
    def sleeps(seed: int) -> list[float]:
        clock = FakeClock()
        config = SimConfig(default_latency=1.0, latency_jitter=0.5, seed=seed)
        ec2 = Simulator(config, clock=clock).client(config=NO_RETRY)
        for _ in range(5):
            ec2.describe_volumes(MaxResults=5)
        return clock.sleeps

    first = sleeps(1)

    assert first == sleeps(1)
    assert first != sleeps(2)
    assert all(1.0 <= s <= 1.5 for s in first)


def test_throttled_answers_are_immediate(clock: FakeClock) -> None:
    config = SimConfig(faults=Faults(throttle_rate=1.0), default_latency=0.5)
    ec2 = Simulator(config, clock=clock).client(config=NO_RETRY)

    with pytest.raises(ClientError):
        ec2.describe_volumes(MaxResults=5)

    assert clock.sleeps == []


def test_rates_outside_zero_one_are_refused() -> None:
    with pytest.raises(ValueError, match="throttle_rate"):
        SimConfig(faults=Faults(throttle_rate=1.5))
    with pytest.raises(ValueError, match="scale"):
        SimConfig(scale=0)
