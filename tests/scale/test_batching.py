"""DescribeVolumes/DescribeInstances batching: concurrent lookups share one call, and one unknown or
bad id never fails the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

import pytest

from provisioner.aws.batcher import DEADLINE_MARGIN, Batcher, next_spacing
from provisioner.embedded.ec2 import Delays, SimConfig, Simulator
from provisioner.errors import InvalidArgument, NotFound, Unavailable, ZonalError
from provisioner.model import TAG_VOLUME_NAME, Instance, Volume
from provisioner.ports.clock import Deadline, SystemClock, deadline_scope
from tests.scale.conftest import ZONE_A, ZONE_B, batched_cloud, calls

T = TypeVar("T")


def concurrently(functions: Sequence[Callable[[], T]]) -> list[T | ZonalError]:
    """Run every function in its own thread, released together; results (or domain errors) in order."""
    barrier = threading.Barrier(len(functions))
    out: dict[int, T | ZonalError] = {}

    def run(i: int, fn: Callable[[], T]) -> None:
        barrier.wait()
        try:
            out[i] = fn()
        except ZonalError as e:
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(out) == len(functions), "a caller never returned"
    return [out[i] for i in range(len(functions))]


@pytest.fixture
def sim() -> Simulator:
    return Simulator(SimConfig(delays=Delays.instant(), throttling=False))


def _volumes(sim: Simulator, n: int, zone: str = ZONE_A) -> list[str]:
    ec2 = sim.client()
    return [ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"] for _ in range(n)]


def test_concurrent_waits_share_one_describe_volumes(sim: Simulator) -> None:
    ids = _volumes(sim, 20)
    cloud = batched_cloud(sim)
    sim.counters.reset()

    results = concurrently([partial(cloud.get_volume, v) for v in ids])

    assert [r.volume_id for r in results if isinstance(r, Volume)] == ids
    assert calls(sim, "DescribeVolumes") == 1


def test_an_unknown_id_fails_only_its_own_caller(sim: Simulator) -> None:
    ids = _volumes(sim, 3)
    cloud = batched_cloud(sim)
    sim.counters.reset()
    asked = [*ids, "vol-0123456789abcdef0", "not-a-volume-id"]

    results = concurrently([partial(cloud.get_volume, v) for v in asked])

    assert [r.volume_id for r in results[:3] if isinstance(r, Volume)] == ids
    assert [type(r) for r in results[3:]] == [NotFound, NotFound]
    assert calls(sim, "DescribeVolumes") == 1


def test_concurrent_instance_lookups_share_one_describe_instances(sim: Simulator) -> None:
    ids = [sim.create_instance(ZONE_A), sim.create_instance(ZONE_B), sim.create_instance(ZONE_A)]
    cloud = batched_cloud(sim)
    sim.counters.reset()

    results = concurrently([partial(cloud.get_instance, i) for i in [*ids, "i-0000000000000000f"]])

    assert [(r.instance_id, r.zone) for r in results[:3] if isinstance(r, Instance)] == [
        (ids[0], ZONE_A),
        (ids[1], ZONE_B),
        (ids[2], ZONE_A),
    ]
    assert isinstance(results[3], NotFound)
    assert calls(sim, "DescribeInstances") == 1


def test_lookups_by_name_share_one_call_and_match_names_exactly(sim: Simulator) -> None:
    ec2 = sim.client()
    for name in ("pvc-a", "pvc-b", "pvc-a*"):
        ec2.create_volume(
            AvailabilityZone=ZONE_A,
            Size=1,
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": TAG_VOLUME_NAME, "Value": name}]}],
        )
    cloud = batched_cloud(sim)
    sim.counters.reset()

    results = concurrently([partial(cloud.find_volume_by_name, n) for n in ("pvc-a", "pvc-b", "pvc-c")])

    names = [r.tags[TAG_VOLUME_NAME] if isinstance(r, Volume) else r for r in results]
    assert names == ["pvc-a", "pvc-b", None]
    assert calls(sim, "DescribeVolumes") == 1


class _Source:
    """A fake Describe: fails the whole batch when asked for a "bad" key, like EC2 refusing a value."""

    def __init__(self, batch_error: ZonalError | None = None) -> None:
        self.batch_error = batch_error
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self.lock = threading.Lock()

    def fetch(self, keys: list[str]) -> Mapping[str, str]:
        with self.lock:
            self.batches.append(sorted(keys))
        if self.batch_error is not None and any(k.startswith("bad") for k in keys):
            raise self.batch_error
        return {k: k.upper() for k in keys if not k.startswith("gone")}

    def single(self, key: str) -> str:
        with self.lock:
            self.singles.append(key)
        if key.startswith("bad"):
            raise InvalidArgument(f"{key} is malformed")
        return key.upper()


def _missing(key: str) -> str:
    raise NotFound(key)


def test_a_batch_refused_because_of_one_key_falls_back_to_one_call_per_key() -> None:
    source = _Source(InvalidArgument("the batch holds a malformed id"))
    batcher = Batcher(source.fetch, source.single, _missing, window=0.2)

    results = concurrently([partial(batcher.get, k) for k in ("a", "bad", "b")])

    assert results[0] == "A" and results[2] == "B"
    assert isinstance(results[1], InvalidArgument) and "bad is malformed" in str(results[1])
    assert source.batches == [["a", "b", "bad"]]
    assert sorted(source.singles) == ["a", "b", "bad"]


def test_an_unavailable_ec2_fails_the_batch_without_a_storm_of_single_calls() -> None:
    source = _Source(Unavailable("RequestLimitExceeded"))
    batcher = Batcher(source.fetch, source.single, _missing, window=0.2)

    results = concurrently([partial(batcher.get, k) for k in ("a", "bad", "b")])

    assert [type(r) for r in results] == [Unavailable, Unavailable, Unavailable]
    assert results[0] is not results[1]  # one exception per caller
    assert source.singles == []


def test_a_full_batch_goes_at_once_and_the_rest_form_the_next() -> None:
    source = _Source()
    # An hour's window: only batches that go as soon as they are full can answer (else the test hangs).
    batcher = Batcher(source.fetch, source.single, _missing, window=3600, max_batch=4)

    results = concurrently([partial(batcher.get, k) for k in "abcdefgh"])

    assert results == list("ABCDEFGH")
    assert [len(b) for b in source.batches] == [4, 4]


def test_calls_of_one_kind_keep_the_minimum_interval_under_load() -> None:
    source = _Source()
    batcher = Batcher(source.fetch, source.single, _missing, window=0.0, min_interval=0.3)

    started = time.monotonic()
    assert [batcher.get("a"), batcher.get("b")] == ["A", "B"]

    assert time.monotonic() - started >= 0.3
    assert batcher.calls == 2


def test_the_spacing_under_load_adapts_to_carry_the_target_batch() -> None:
    def settle(arrivals_per_second: float) -> float:
        spacing = 0.5
        for _ in range(30):  # each call carries what arrived since the previous one
            spacing = next_spacing(
                spacing, max(1, round(arrivals_per_second * spacing)), spacing, True, 20, 0.5, 8.0
            )
        return spacing

    assert settle(5.0) == pytest.approx(4.0, rel=0.1)  # documented CreateVolume: one call per 20 polls
    assert settle(2.5) == pytest.approx(8.0, rel=0.02)  # a half bucket: at most 8 s apart
    assert settle(100.0) == pytest.approx(0.5)  # a fast account: never closer than 0.5 s
    assert next_spacing(4.0, 3, 30.0, False, 20, 0.5, 8.0) == 0.5  # a lone call: back to the minimum


def _loaded(batcher: Batcher[str, str], spacing: float) -> None:
    """Make ``batcher`` act as under load with ``spacing`` learned: its previous call was just made."""
    batcher.get("warm")
    batcher.spacing = spacing


def test_a_batch_holding_the_target_goes_without_waiting_out_the_spacing() -> None:
    source = _Source()
    batcher = Batcher(
        source.fetch, source.single, _missing, window=0.0, min_interval=0.05, target_batch=3, max_interval=60
    )
    _loaded(batcher, 60.0)  # a spacing learned while few lookups arrived: the next call is a minute away

    started = time.monotonic()
    results = concurrently([partial(batcher.get, k) for k in "abc"])

    assert results == ["A", "B", "C"]
    assert time.monotonic() - started < 5.0  # not the minute
    assert source.batches[-1] == ["a", "b", "c"]


def test_no_caller_is_held_past_its_deadline() -> None:
    source = _Source()
    batcher = Batcher(
        source.fetch, source.single, _missing, window=0.0, min_interval=0.05, target_batch=30, max_interval=60
    )
    _loaded(batcher, 60.0)

    started = time.monotonic()
    with deadline_scope(Deadline(SystemClock(), DEADLINE_MARGIN + 0.3)):
        assert batcher.get("a") == "A"

    took = time.monotonic() - started
    assert 0.25 <= took < 5.0  # went when the deadline wanted it, not a minute later
    assert source.batches[-1] == ["a"]
