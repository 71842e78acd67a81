"""ControllerExpandVolume / ControllerModifyVolume, the merge window and EC2's rate limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from provisioner import errors
from provisioner.config import ControllerConfig
from provisioner.controller import ControllerCore
from provisioner.model import GIB, CapacityRange, TopologyRequirement
from provisioner.ports.clock import Deadline
from tests.controller.conftest import DRIVER
from tests.controller.helpers import BLOCK_RWO, MOUNT_RWO, create, zones
from tests.fakes.clock import FakeClock
from tests.fakes.cloud import FakeCloud

WINDOW = 0.75
UNKNOWN = "vol-0000000000000dead"


class GateClock(FakeClock):
    """A FakeClock whose merge-window sleep blocks until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.in_window = threading.Event()
        self.gate = threading.Event()

    def sleep(self, seconds: float) -> None:
        if seconds == WINDOW:
            self.in_window.set()
            assert self.gate.wait(10), "the test never opened the gate"
        super().sleep(seconds)


@pytest.fixture
def gate() -> GateClock:
    return GateClock()


@pytest.fixture
def fake(gate: GateClock) -> FakeCloud:
    return FakeCloud(clock=gate)


@pytest.fixture
def ctl(fake: FakeCloud, gate: GateClock) -> ControllerCore:
    return ControllerCore(fake, gate, DRIVER, ControllerConfig(modify_merge_window=WINDOW))


def _volume(core: ControllerCore, size_gib: int = 10, params: dict[str, str] | None = None) -> str:
    requirement = TopologyRequirement(requisite=zones("us-east-1a"))
    return create(core, size_gib=size_gib, parameters=params, requirement=requirement).volume_id


def _gib(n: float) -> CapacityRange:
    return CapacityRange(int(n * GIB))


def _open(gate: GateClock) -> None:
    gate.gate.set()


def test_expand_rounds_up_and_reports_node_expansion(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    _open(gate)
    volume_id = _volume(ctl)
    expanded = ctl.expand_volume(volume_id, _gib(10.5), MOUNT_RWO, None)
    assert expanded.capacity_bytes == 11 * GIB and expanded.node_expansion_required
    assert fake.modified == [(volume_id, {"size_gib": 11})]
    block = ctl.expand_volume(volume_id, _gib(12), BLOCK_RWO, None)
    assert block.capacity_bytes == 12 * GIB and not block.node_expansion_required
    assert ctl.expand_volume(volume_id, _gib(12), None, None).node_expansion_required  # no capability: fs


def test_expand_to_the_current_size_is_ok_without_a_modification(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    volume_id = _volume(ctl, 20)
    assert ctl.expand_volume(volume_id, _gib(15), MOUNT_RWO, None).capacity_bytes == 20 * GIB
    assert fake.calls["modify_volume"] == 0 and not gate.in_window.is_set()


def test_expand_rejections(ctl: ControllerCore) -> None:
    volume_id = _volume(ctl)
    with pytest.raises(errors.OutOfRange, match="65536"):
        ctl.expand_volume(volume_id, _gib(70_000), MOUNT_RWO, None)
    with pytest.raises(errors.OutOfRange, match="limit_bytes"):
        ctl.expand_volume(volume_id, CapacityRange(20 * GIB, 15 * GIB), MOUNT_RWO, None)
    with pytest.raises(errors.NotFound):
        ctl.expand_volume(UNKNOWN, _gib(20), MOUNT_RWO, None)
    with pytest.raises(errors.InvalidArgument):
        ctl.expand_volume("", _gib(20), MOUNT_RWO, None)
    with pytest.raises(errors.InvalidArgument):
        ctl.expand_volume(volume_id, None, MOUNT_RWO, None)


def test_expand_waits_for_optimizing_and_a_retry_does_not_modify_again(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    _open(gate)
    volume_id = _volume(ctl)
    fake.modify_polls = 10
    with pytest.raises(errors.DeadlineExceeded, match="being modified"):
        ctl.expand_volume(volume_id, _gib(20), MOUNT_RWO, Deadline(gate, 2.0))
    assert fake.modifications[volume_id].state == "modifying"
    fake.modify_polls = 2
    expanded = ctl.expand_volume(volume_id, _gib(20), MOUNT_RWO, None)
    assert expanded.capacity_bytes == 20 * GIB
    assert fake.modifications[volume_id].state == "optimizing"  # usable: no need to wait for completed
    assert fake.calls["modify_volume"] == 1


def test_modify_type_performance_and_tags(ctl: ControllerCore, fake: FakeCloud, gate: GateClock) -> None:
    _open(gate)
    volume_id = _volume(ctl, params={"tagSpecification_1": "old=1"})
    ctl.modify_volume(
        volume_id,
        {"type": "io2", "IOPS": "6000", "tagSpecification_1": "tier=gold", "tagDeletion_1": "old"},
        None,
    )
    volume = fake.volumes[volume_id].volume
    assert (volume.volume_type, volume.iops) == ("io2", 6000)
    assert volume.tags["tier"] == "gold" and "old" not in volume.tags
    assert fake.modified == [(volume_id, {"volume_type": "io2", "iops": 6000})]
    ctl.modify_volume(volume_id, {"type": "io2", "tagSpecification_1": "tier=gold"}, None)
    assert fake.calls["modify_volume"] == 1, "nothing left to change: no ModifyVolume"


@pytest.mark.parametrize(
    ("parameters", "match"),
    [
        ({"color": "blue"}, "color"),
        ({"type": "floppy"}, "floppy"),
        ({"iops": "many"}, "whole number"),
        ({"type": "io2", "throughput": "200"}, "throughput"),
        ({"throughput": "5000"}, "outside"),
        ({"iops": "100"}, "outside"),
        ({"tagDeletion_1": "CSIVolumeName"}, "reserved"),
        ({"tagSpecification_1": "a=1", "tagDeletion_1": "a"}, "both"),
    ],
)
def test_modify_rejections(ctl: ControllerCore, parameters: dict[str, str], match: str) -> None:
    volume_id = _volume(ctl)
    with pytest.raises(errors.InvalidArgument, match=match):
        ctl.modify_volume(volume_id, parameters, None)


@pytest.mark.parametrize("parameters", [{"iops": "4000"}, {}])
def test_modify_unknown_volume_is_not_found(ctl: ControllerCore, parameters: dict[str, str]) -> None:
    # CSI: volume does not exist → NOT_FOUND, with or without mutable_parameters.
    with pytest.raises(errors.NotFound):
        ctl.modify_volume(UNKNOWN, parameters, None)


def test_modify_without_parameters_is_a_no_op(ctl: ControllerCore, fake: FakeCloud) -> None:
    volume_id = _volume(ctl)
    before = fake.volumes[volume_id].volume
    ctl.modify_volume(volume_id, {}, None)  # CSI: empty mutable_parameters → OK
    assert fake.calls["modify_volume"] == 0
    assert fake.volumes[volume_id].volume == before


def test_rate_limit_says_when_to_retry(ctl: ControllerCore, fake: FakeCloud, gate: GateClock) -> None:
    _open(gate)
    volume_id = _volume(ctl)
    fake.max_modifications = 1
    ctl.modify_volume(volume_id, {"iops": "4000"}, None)
    started = fake.modifications[volume_id].start_time
    with pytest.raises(errors.ModificationRateLimited) as info:
        ctl.modify_volume(volume_id, {"iops": "5000"}, None)
    retry_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started + 6 * 3600))
    assert f"retry after {retry_at}" in info.value.message
    assert "VolumeModificationRateExceeded" in info.value.message


def test_one_modification_at_a_time_says_wait_for_completion(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    _open(gate)
    volume_id = _volume(ctl)
    fake.modify_polls = 2
    ctl.modify_volume(volume_id, {"iops": "4000"}, None)  # returns at optimizing
    with pytest.raises(errors.ModificationRateLimited, match="retry when it has completed"):
        ctl.modify_volume(volume_id, {"iops": "5000"}, None)
    fake.finish_modification(volume_id)
    ctl.modify_volume(volume_id, {"iops": "5000"}, None)
    assert fake.volumes[volume_id].volume.iops == 5000


def _in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:
            failures.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, failures


def _wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError("condition never became true")


def test_expand_and_modify_in_one_window_are_one_modify_volume(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    volume_id = _volume(ctl)
    answers: list[int] = []
    first, first_failures = _in_thread(
        lambda: answers.append(ctl.expand_volume(volume_id, _gib(20), MOUNT_RWO, None).capacity_bytes)
    )
    assert gate.in_window.wait(5)
    second, second_failures = _in_thread(lambda: ctl.modify_volume(volume_id, {"throughput": "250"}, None))
    third, third_failures = _in_thread(lambda: ctl.expand_volume(volume_id, _gib(25), MOUNT_RWO, None))
    batch = ctl.modifier._batches[volume_id]
    _wait_for(lambda: batch.want == {"size_gib": 25, "throughput": 250})
    _open(gate)
    for t in (first, second, third):
        t.join(10)
    assert first_failures == second_failures == third_failures == []
    assert fake.modified == [(volume_id, {"size_gib": 25, "throughput": 250})]
    assert answers == [25 * GIB], "the first caller answers the size the merged request gave"
    assert gate.sleeps.count(WINDOW) == 1


def test_a_conflicting_value_fails_only_the_later_caller(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    volume_id = _volume(ctl)
    first, failures = _in_thread(lambda: ctl.modify_volume(volume_id, {"iops": "4000"}, None))
    assert gate.in_window.wait(5)
    with pytest.raises(errors.OperationInProgress, match="iops=5000 conflicts with iops=4000"):
        ctl.modify_volume(volume_id, {"iops": "5000"}, None)
    _open(gate)
    first.join(10)
    assert failures == []
    assert fake.modified == [(volume_id, {"iops": 4000})]


def test_a_failed_merged_modification_fails_every_caller(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    volume_id = _volume(ctl)
    fake.fail("modify_volume", errors.InvalidArgument("InvalidParameterValue: nope"))
    first, first_failures = _in_thread(lambda: ctl.expand_volume(volume_id, _gib(20), MOUNT_RWO, None))
    assert gate.in_window.wait(5)
    second, second_failures = _in_thread(lambda: ctl.modify_volume(volume_id, {"iops": "4000"}, None))
    _wait_for(lambda: len(ctl.modifier._batches[volume_id].want) == 2)
    _open(gate)
    first.join(10)
    second.join(10)
    assert [type(e) for e in first_failures + second_failures] == [errors.InvalidArgument] * 2


def test_the_window_is_cut_short_by_the_deadline(fake: FakeCloud) -> None:
    clock = FakeClock()
    core = ControllerCore(FakeCloud(clock=clock), clock, DRIVER, ControllerConfig(modify_merge_window=2.0))
    volume_id = _volume(core)
    before = len(clock.sleeps)
    core.expand_volume(volume_id, _gib(20), MOUNT_RWO, Deadline(clock, 1.5))
    assert clock.sleeps[before:] == [1.5]


# allowAutoIOPSIncreaseOnModify: IOPS raised with the size, in the same ModifyVolume, as a floor.

AUTO = {"type": "io2", "iopsPerGB": "50", "allowAutoIOPSIncreaseOnModify": "true"}


def test_expansion_raises_iops_in_the_same_modification(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    _open(gate)
    volume_id = create(ctl, size_gib=10, parameters=AUTO).volume_id
    ctl.expand_volume(volume_id, CapacityRange(40 * GIB), MOUNT_RWO, None)
    assert fake.modified == [(volume_id, {"size_gib": 40, "iops": 2000})]


def test_without_the_key_expansion_leaves_iops_alone(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    _open(gate)
    volume_id = create(ctl, size_gib=10, parameters={"type": "io2", "iopsPerGB": "50"}).volume_id
    ctl.expand_volume(volume_id, CapacityRange(40 * GIB), MOUNT_RWO, None)
    assert fake.modified == [(volume_id, {"size_gib": 40})]


def test_a_higher_class_iops_in_the_same_window_stands(
    ctl: ControllerCore, fake: FakeCloud, gate: GateClock
) -> None:
    volume_id = create(ctl, size_gib=10, parameters=AUTO).volume_id
    first, first_failures = _in_thread(
        lambda: ctl.expand_volume(volume_id, CapacityRange(40 * GIB), MOUNT_RWO, None)
    )
    assert gate.in_window.wait(5)
    second, second_failures = _in_thread(lambda: ctl.modify_volume(volume_id, {"iops": "9000"}, None))
    _wait_for(lambda: ctl.modifier._batches[volume_id].want.get("iops") == 9000)
    _open(gate)
    for t in (first, second):
        t.join(10)
    assert first_failures == second_failures == []
    assert fake.modified == [(volume_id, {"size_gib": 40, "iops": 9000})]  # above the 2000 floor
