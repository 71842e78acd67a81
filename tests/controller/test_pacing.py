"""The waits' pacing on the fake clock: the fixed backoff is unchanged, a learned schedule finds a kind's
creating time and checks right there, never polls in a tight loop and never leaves an outlier, quick or
slow, waiting much longer than the fixed backoff would. No sleeps: every wait runs on FakeClock."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable

import pytest

from provisioner.config import ControllerConfig
from provisioner.controller import ControllerCore
from provisioner.controller.pacing import Backoff, LearnedPaces, Learning, Pace, creation_kind, schedule
from provisioner.controller.waiter import Waiter
from provisioner.errors import DeadlineExceeded, NotFound
from provisioner.model import Volume, VolumeSpec, VolumeState
from provisioner.ports.clock import Deadline
from tests.controller.conftest import DRIVER
from tests.controller.helpers import create
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

INITIAL, F, M = 1.0, 1.6, 8.0  # ControllerConfig's wait_initial_delay, wait_factor, wait_max_delay
Q, STEP, WARM_STEP = Learning().quantile, Learning().step, Learning().warmup_step
UP, DOWN = math.exp(STEP * Q), math.exp(-STEP * (1 - Q))  # a move after a miss, after a hit


def _paces(learning: Learning | None = None) -> LearnedPaces:
    return LearnedPaces(INITIAL, F, M, learning)


def seen(pace: Pace, ready: float, hold: float = 0.0, limit: float = 1000.0) -> tuple[float, int]:
    """Run one wait on the fake clock for a state reached ``ready`` seconds after it began, each check
    taking ``hold`` seconds (a batch's wait); (seconds until a check saw it, checks made)."""
    clock = FakeClock()
    started = clock.monotonic()
    checks = 0

    def check() -> bool | None:
        nonlocal checks
        checks += 1
        clock.advance(hold)
        return True if clock.monotonic() - started >= ready else None

    Waiter(clock, ControllerConfig()).wait(Deadline(clock, limit), check, lambda: "still waiting", pace)
    return clock.monotonic() - started, checks


def fixed() -> Backoff:
    return Backoff(INITIAL, F, M)


def test_the_fixed_backoff_is_unchanged() -> None:
    backoff = fixed()
    assert [backoff.pause(0.0) for _ in range(8)] == pytest.approx(
        [1.0, 1.6, 2.56, 4.096, 6.5536, 8.0, 8.0, 8.0]
    )
    at, polls = seen(fixed(), 2.0)
    assert at == pytest.approx(2.6) and polls == 2  # a 2 s volume is seen at 2.6 s, on the 2nd poll


def test_a_steady_kind_is_learned_and_checked_right_there() -> None:
    paces = _paces()
    for _ in range(15):  # from the start (1.0 s) to 2 s: a step ×1.15 per miss
        seen(paces.pace("gp3"), 2.0)
    point = paces.point("gp3")
    assert point is not None and 2.0 * 0.9 <= point <= 2.0 * 1.2
    late, polls = zip(*(seen(paces.pace("gp3"), 2.0) for _ in range(200)), strict=True)
    assert sum(late) / 200 - 2.0 < 0.2  # the fixed backoff: 0.6 s late
    assert sum(polls) / 200 <= 1.35  # the fixed backoff: 2 polls
    assert max(late) - 2.0 <= 0.5


def test_a_new_kind_is_found_in_a_few_waits_with_the_larger_first_steps() -> None:
    paces, plain = _paces(), _paces(Learning(warmup=0))
    needed = [math.ceil(math.log(2.0) / (step * Q)) for step in (WARM_STEP, STEP)]
    assert [_waits_to_reach(p, 2.0) for p in (paces, plain)] == needed  # [2, 5]


def _waits_to_reach(paces: LearnedPaces, ready: float) -> int:
    waits = 0
    while (paces.point("gp3") or 0.0) < ready:
        seen(paces.pace("gp3"), ready)
        waits += 1
    return waits


def test_the_point_learns_upwards_in_a_few_waits_and_downwards_in_some_more() -> None:
    paces = _paces()
    up = 0
    while (paces.point("io2") or 0) < 8.0 * 0.95:
        seen(paces.pace("io2"), 8.0)
        up += 1
    assert up <= math.log(8.0) / (STEP * Q) + 1  # 8 waits (the warm-up's larger steps help)
    down = 0
    while (paces.point("io2") or 0) > 2.0 * 1.2:
        seen(paces.pace("io2"), 2.0)
        down += 1
    assert down <= math.log(4.0 * 1.2) / (STEP * (1 - Q)) + 1  # 40 waits: a hit moves T less than a miss


def test_the_point_is_the_quantile_of_a_spread_kind() -> None:
    rng = random.Random(7)
    paces = _paces()
    draws: list[float] = []
    late: dict[str, list[float]] = {"learned": [], "fixed": []}
    polls: dict[str, list[int]] = {"learned": [], "fixed": []}
    points = []
    for i in range(3000):
        ready = 2.5 * math.exp(rng.gauss(0.0, 0.6))  # gp3-like: 90 % between 0.9 and 6.7 s
        draws.append(ready)
        for name, pace in (("learned", paces.pace("gp3")), ("fixed", fixed())):
            at, n = seen(pace, ready)
            if i >= 500:
                late[name].append(at - ready)
                polls[name].append(n)
        if i >= 500:
            points.append(paces.point("gp3") or 0.0)
    draws.sort()
    quantile = draws[int(Learning().quantile * len(draws))]
    assert sum(points) / len(points) == pytest.approx(quantile, rel=0.15)
    late_mean = {name: sum(v) / len(v) for name, v in late.items()}
    polls_mean = {name: sum(v) / len(v) for name, v in polls.items()}
    assert late_mean["learned"] < late_mean["fixed"] * 0.92  # measured: 1.11 s against 1.28 s
    assert polls_mean["learned"] < polls_mean["fixed"] * 0.92  # measured: 2.2 against 2.54


def test_waits_that_began_together_move_the_point_one_step() -> None:
    paces = _paces(Learning(warmup=0))
    together = [paces.pace("gp3") for _ in range(100)]
    for pace in together:
        pace.pause(0.0)
        pace.checked(False)  # all missed their check at 1.0 s
    assert paces.point("gp3") == pytest.approx(1.0 * UP)
    together = [paces.pace("gp3") for _ in range(100)]
    for pace in together:
        pace.checked(True)
    assert paces.point("gp3") == pytest.approx(1.0 * UP * DOWN)


def test_only_a_check_that_can_tell_teaches() -> None:
    paces = _paces()
    for _ in range(20):
        seen(paces.pace("st1"), 10.0)
    point = paces.point("st1")
    assert point is not None and point > 6.0
    pace = paces.pace("st1")
    pace.pause(0.0)
    pace.checked(False)  # the early check (at T / f²) found it creating: nothing learned
    assert paces.point("st1") == point
    pace.checked(True)  # an early check found it done: done by T
    assert paces.point("st1") == pytest.approx(point * DOWN)
    pace.pause(point / F / F)
    pace.checked(False)  # a wait teaches once
    assert paces.point("st1") == pytest.approx(point * DOWN)


@pytest.mark.parametrize("learned", [0.25, 0.5, 1.0, 2.0, 3.0, 7.5, 20.0, 60.0, 300.0])
def test_never_a_tight_loop_and_never_much_later_than_the_fixed_backoff(learned: float) -> None:
    checks, first_gap, least = schedule(learned, INITIAL, F, M)
    assert checks[-1] == learned and least == INITIAL / 4
    assert all(b - a >= least for a, b in itertools.pairwise(checks))
    assert least <= first_gap <= M
    paces = LearnedPaces(INITIAL, F, M, Learning(limit=learned))
    for ready in [0.1 * 1.07**k for k in range(110)]:  # 0.1 s .. 170 s
        paces._points["k"] = learned
        at, polls = seen(paces.pace("k"), ready)
        fixed_at, fixed_polls = seen(fixed(), ready)
        late = at - ready
        # Quick for its kind: seen within f² of its time (or by f² s). Late for its kind: within f of
        # its time or the least gap. Either way at most one gap of the cap late.
        bound = F * F * max(ready, INITIAL) - ready if ready < learned else max((F - 1) * ready, INITIAL / 4)
        assert late <= min(bound, M) + 1e-9, (learned, ready, at)
        assert at <= fixed_at + M
        assert polls <= fixed_polls + 2 * abs(math.log(learned)) / math.log(F) + 4


def test_no_check_runs_faster_than_the_least_gap_when_checks_are_slow() -> None:
    clock = FakeClock()
    paces = _paces()
    paces._points["gp3"] = 30.0
    waiter = Waiter(clock, ControllerConfig())

    def check() -> None:
        clock.advance(7.0)  # each check takes 7 s (a slow EC2): the early checks run past their points

    with pytest.raises(DeadlineExceeded):
        waiter.wait(Deadline(clock, 120.0), check, lambda: "x", paces.pace("gp3"))
    assert min(clock.sleeps[:-1]) >= INITIAL / 4


def test_the_deadline_bounds_a_learned_wait() -> None:
    clock = FakeClock()
    paces = _paces()
    paces._points["gp3"] = 50.0
    with pytest.raises(DeadlineExceeded, match="still creating"):
        Waiter(clock, ControllerConfig()).wait(
            Deadline(clock, 10.0), lambda: None, lambda: "still creating", paces.pace("gp3")
        )
    assert sum(clock.sleeps) == pytest.approx(10.0)


def test_kinds_are_type_origin_and_size_range() -> None:
    volume = Volume("vol-1", 100, "us-east-1a", VolumeState.CREATING, "gp3")
    assert creation_kind(volume) == ("gp3", "blank", 3)
    assert creation_kind(Volume("vol-1", 9, "z", VolumeState.CREATING, "io2", snapshot_id="snap-1")) == (
        "io2",
        "snapshot",
        1,
    )
    assert creation_kind(volume, copied=True)[1] == "copy"


def _core(
    clock: FakeClock, seconds: Callable[[VolumeSpec], float], learned: bool = True
) -> tuple[ControllerCore, FakeCloud]:
    cloud = FakeCloud(clock=clock)
    cloud.creating_seconds = seconds
    return ControllerCore(cloud, clock, DRIVER, ControllerConfig(learned_waits=learned)), cloud


def test_create_volume_checks_when_earlier_volumes_of_its_kind_were_ready() -> None:
    clock = FakeClock()
    core, cloud = _core(clock, lambda spec: 2.0 if spec.volume_type == "gp3" else 6.0)
    for i in range(15):
        create(core, name=f"pvc-{i}")
        create(core, name=f"pvc-io-{i}", parameters={"type": "io2", "iops": "3000"})
    clock.sleeps.clear()
    polls = cloud.calls["get_volume"]
    create(core, name="pvc-last")
    assert len(clock.sleeps) <= 2 and 2.0 <= sum(clock.sleeps) <= 2.0 * 1.2
    assert cloud.calls["get_volume"] - polls == len(clock.sleeps)
    io2 = core.paces.point(("io2", "blank", 2)) if core.paces else None
    assert io2 is not None and 6.0 * 0.9 <= io2 <= 6.0 * 1.2


def test_without_learned_waits_create_volume_keeps_the_fixed_backoff() -> None:
    clock = FakeClock()
    core, _ = _core(clock, lambda spec: 2.0, learned=False)
    for i in range(5):
        create(core, name=f"pvc-{i}")
    assert core.paces is None
    assert clock.sleeps[-2:] == pytest.approx([1.0, 1.6])


def test_a_new_volume_not_listed_yet_is_waited_for_not_failed() -> None:
    clock = FakeClock()
    core, cloud = _core(clock, lambda spec: 2.0)
    # Describe is eventually consistent: the first polls of a volume just made may not find it.
    cloud.fail("get_volume", NotFound("InvalidVolume.NotFound"), NotFound("InvalidVolume.NotFound"))
    created = create(core)
    assert created.volume_id in cloud.volumes
    assert cloud.calls["get_volume"] >= 3


def test_a_new_volume_still_not_listed_after_the_grace_is_not_found() -> None:
    clock = FakeClock()
    core, cloud = _core(clock, lambda spec: 2.0)
    cloud.fail("get_volume", *(NotFound("InvalidVolume.NotFound") for _ in range(100)))
    with pytest.raises(NotFound):
        create(core, deadline=Deadline(clock, 300.0))
    assert 30.0 <= sum(clock.sleeps) < 40.0  # ControllerConfig.token_mismatch_grace
