"""Only one process drives a relocation: the lease on the journal's PV, raced deterministically.

Two processes are two :class:`Relocator` objects over the same cluster and EC2; "at the same time" is one
of them acting inside the other's wait (a hook on the fake clock's sleep) or between the other's read
and its conditional write (a proxy on the kube port). No thread, no real sleep.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli.kubeaccess import connect
from provisioner.cli.relocate import Printer, execute, register
from provisioner.doctor.cluster import Cluster
from provisioner.doctor.findings import RELOCATION_UNFINISHED
from provisioner.doctor.volumes import check_volumes
from provisioner.embedded.ec2 import Delays
from provisioner.embedded.kube.fakeapi import FakeApiServer, kubeconfig_for
from provisioner.ports.cloud import Cloud
from provisioner.ports.kube import Kind, KubeApi, KubeConflict, Obj
from provisioner.relocate.core import Relocator
from provisioner.relocate.journal import ANN_LEASE, Journal, journal_of
from provisioner.relocate.lease import (
    HEARTBEAT,
    LEASE_TTL,
    Holder,
    LeaseHeld,
    LeaseKeeper,
    LeaseLost,
    lease_of,
)
from provisioner.relocate.plan import make_plan
from provisioner.relocate.rollback import rollback
from tests.fakes.clock import FakeClock
from tests.relocate.world import DRIVER, SyncClock, World, make_world, provision


class HookedClock(SyncClock):
    """Runs each hook once the clock has reached its time, on a sleep (i.e. inside somebody's wait)."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: list[tuple[float, Callable[[], None]]] = []

    def at(self, after: float, hook: Callable[[], None]) -> None:
        self.hooks.append((self.monotonic() + after, hook))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        due = [h for h in self.hooks if h[0] <= self.monotonic()]
        self.hooks = [h for h in self.hooks if h not in due]
        for _, hook in due:
            hook()


class RacingKube:
    """The kube port of one process; ``before_replace`` runs once right before its next replace of a PV
    (after it read the PV: the window a conditional write must close)."""

    def __init__(self, inner: KubeApi) -> None:
        self._inner = inner
        self.before_replace: list[Callable[[], None]] = []
        self.replaces = 0
        self.conflicts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def replace(self, kind: Kind, obj: Obj) -> Obj:
        if kind is Kind.PV:
            self.replaces += 1
            if self.before_replace:
                self.before_replace.pop(0)()
        try:
            return self._inner.replace(kind, obj)
        except KubeConflict:
            self.conflicts += 1
            raise


def ignore(_: object) -> None:
    """For a hook that acts for its effect."""


def held(by: Relocator | LeaseKeeper) -> str:
    """The holder as a refusal names it, as a regular expression."""
    return re.escape(str(by.lease.holder if isinstance(by, Relocator) else by.holder))


def relocator(world: World, kube: KubeApi | None = None) -> Relocator:
    """A process of its own (a fresh lease holder), over ``kube`` if given."""
    base = world.relocator()
    return Relocator(kube or world.kube, world.cloud, world.clock, base.driver, base.settings)


def died_after_retain(world: World) -> Journal:
    """A relocation whose process was killed -9 right after its first step: its lease is left behind."""
    dead = world.relocator()
    plan, _ = make_plan(world.kube, world.cloud, dead.driver, "default", "data", "us-east-1c")
    assert plan.journal is not None
    dead._begin(plan.journal)
    return plan.journal


def two_processes(world: World) -> tuple[Journal, RacingKube, Relocator, Relocator]:
    """A relocation whose holder died and whose lease expired; two processes about to resume it, the
    first over a :class:`RacingKube`."""
    j = died_after_retain(world)
    world.advance(LEASE_TTL)
    kube = RacingKube(world.kube)
    return j, kube, relocator(world, kube), relocator(world)


def lease_on(world: World, pv: str) -> Holder | None:
    lease = lease_of(world.kube.get(Kind.PV, pv))
    return lease.holder if lease is not None else None


def assert_relocated_once(world: World) -> None:
    journals = [j for p in world.kube.objects(Kind.PV) if (j := journal_of(p)) is not None]
    assert len(journals) == 1 and journals[0].finished, journals
    j = journals[0]
    assert world.claim()["spec"]["volumeName"] == j.new_pv
    assert [s.snapshot_id for s in world.relocation_snapshots()] == [j.snapshot_id]
    assert sorted(v.zone for v in world.volumes()) == ["us-east-1b", "us-east-1c"]  # source kept, one new
    assert all(ANN_LEASE not in (p["metadata"].get("annotations") or {}) for p in world.kube.objects(Kind.PV))


@pytest.fixture
def world() -> World:
    w = make_world(clock=HookedClock())
    provision(w)
    return w


def hooked(world: World) -> HookedClock:
    assert isinstance(world.clock, HookedClock)
    return world.clock


def test_a_resume_inside_another_resumes_wait_refuses_naming_the_holder(world: World) -> None:
    j = died_after_retain(world)
    world.advance(LEASE_TTL)
    first, second = relocator(world), relocator(world)
    refused: list[str] = []

    def race() -> None:
        with pytest.raises(LeaseHeld) as e:
            second.resume("default", "data")
        refused.append(str(e.value))

    hooked(world).at(3.0, race)  # during the first one's snapshot wait
    assert first.resume("default", "data").result == "relocated"
    assert len(refused) == 1
    assert f"is being driven by {first.lease.holder}, last renewed" in refused[0]
    assert "--take-over" in refused[0] and f"TTL {LEASE_TTL:.0f} s" in refused[0]
    assert j.id == journal_of(world.kube.get(Kind.PV, j.source_pv)).id  # type: ignore[union-attr]
    assert_relocated_once(world)


def test_two_resumes_taking_the_lease_at_once_one_gets_a_conflict_and_refuses(world: World) -> None:
    j, kube, first, second = two_processes(world)
    # The second takes the expired lease between the first one's read of the PV and its write.
    kube.before_replace.append(lambda: ignore(second.lease.acquire(j.source_pv, "it")))
    with pytest.raises(LeaseHeld, match=f"driven by {held(second)}, last renewed 0 s ago"):
        first.resume("default", "data")
    assert (kube.replaces, kube.conflicts) == (1, 1)  # refused after the conflict, without another write
    assert world.relocation_snapshots() == [] and lease_on(world, j.source_pv) == second.lease.holder
    assert second.resume("default", "data").result == "relocated"
    assert_relocated_once(world)


def test_a_resume_that_finished_inside_the_others_window_leaves_it_nothing_to_do(world: World) -> None:
    _, kube, first, second = two_processes(world)
    kube.before_replace.append(lambda: ignore(second.resume("default", "data")))
    assert first.resume("default", "data").result == "already-done"
    assert_relocated_once(world)


def test_a_killed_holders_lease_refuses_until_its_ttl_then_resume_goes_on(world: World) -> None:
    j = died_after_retain(world)
    world.advance(LEASE_TTL - 1)
    with pytest.raises(LeaseHeld, match=f"last renewed {LEASE_TTL - 1:.0f} s ago.* expires in 1 s"):
        relocator(world).resume("default", "data")
    with pytest.raises(LeaseHeld):
        rollback(relocator(world), "default", "data")
    assert journal_of(world.kube.get(Kind.PV, j.source_pv)).step == "retain"  # type: ignore[union-attr]
    world.advance(1)
    assert relocator(world).resume("default", "data").result == "relocated"
    assert_relocated_once(world)


def test_take_over_takes_a_live_lease_at_once(world: World) -> None:
    died_after_retain(world)
    assert relocator(world).resume("default", "data", take_over=True).result == "relocated"
    assert_relocated_once(world)


def test_a_holder_that_lost_the_lease_stops_before_its_next_step(world: World) -> None:
    j, _, first, second = two_processes(world)
    hooked(world).at(3.0, lambda: ignore(second.lease.acquire(j.source_pv, "it", take_over=True)))
    with pytest.raises(LeaseLost, match=f"taken over by {held(second)}.*without another step"):
        first.resume("default", "data")
    stopped = journal_of(world.kube.get(Kind.PV, j.source_pv))
    assert stopped is not None and (stopped.step, stopped.state) == ("snapshot", "started")
    assert [v.zone for v in world.volumes()] == ["us-east-1b"]  # the volume step was not taken
    assert lease_on(world, j.source_pv) == second.lease.holder  # and the lease was left alone
    assert second.resume("default", "data").result == "relocated"
    assert_relocated_once(world)


def test_an_unrelated_update_of_the_pv_is_retried_not_fatal(world: World) -> None:
    died_after_retain(world)
    world.advance(LEASE_TTL)
    kube = RacingKube(world.kube)
    source = world.claim()["spec"]["volumeName"]

    def controller_writes_status() -> None:
        world.kube.patch(Kind.PV, source, "", {"status": {"message": f"sync {kube.replaces}"}})

    kube.before_replace.extend([controller_writes_status] * 3)  # the take, and the first journal writes
    assert relocator(world, kube).resume("default", "data").result == "relocated"
    assert kube.conflicts == 3  # each conflicting write was read again and written again
    assert_relocated_once(world)


def test_the_heartbeat_keeps_the_lease_alive_across_a_long_snapshot_wait() -> None:
    world = make_world(clock=HookedClock(), delays=Delays(volume_create=2.0, snapshot=600.0))
    provision(world)
    died_after_retain(world)
    world.advance(LEASE_TTL)
    first = relocator(world)
    seen: list[str] = []

    def later() -> None:
        with pytest.raises(LeaseHeld) as e:
            relocator(world).resume("default", "data")
        seen.append(str(e.value))

    for minute in (2, 5, 9):
        hooked(world).at(minute * 60.0, later)
    assert first.resume("default", "data").result == "relocated"
    assert len(seen) == 3
    for text in seen:
        age = float(text.split("last renewed ")[1].split(" s ago")[0])
        assert age < HEARTBEAT + first.settings.poll_max, text
    assert_relocated_once(world)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zonal")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["relocate", "pvc", *argv])


def test_the_cli_refuses_in_one_line_and_takes_over_when_asked(world: World) -> None:
    died_after_retain(world)
    world.advance(12)

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()

        def make(kube: KubeApi, cloud: Cloud, printer: Printer, args: argparse.Namespace) -> Relocator:
            return Relocator(kube, cloud, world.clock, world.relocator().driver, reporter=printer)

        code = execute(parse(*argv), lambda a: world.kube, lambda a: world.cloud, out, err, make)
        return code, out.getvalue(), err.getvalue()

    code, _, err = run("default/data", "--resume")
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("zonal relocate: error: the relocation of default/data is being driven by ")
    assert "last renewed 12 s ago: wait for it to finish; if that process is surely gone, its lease " in err
    assert "expires in 48 s (TTL 60 s), or pass --take-over to take it now" in err
    code, out, err = run("default/data", "--resume", "--take-over")
    assert code == 0, err
    assert "relocated: claim default/data is Bound" in out
    help_text = io.StringIO()
    with pytest.raises(SystemExit):
        parser = argparse.ArgumentParser(prog="zonal")
        register(parser.add_subparsers(dest="command"))
        with contextlib.redirect_stdout(help_text):
            parser.parse_args(["relocate", "pvc", "--help"])
    assert "--take-over" in help_text.getvalue() and "(default: off" in help_text.getvalue()


# --- through the official client against the HTTP fake API ----------------------------------------------


@pytest.fixture
def served(world: World, tmp_path: Path) -> Iterator[KubeApi]:
    api = FakeApiServer(world.kube).start()
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_for(api.url))
    try:
        yield connect(str(path))
    finally:
        api.stop()


def test_the_conditional_write_over_http_retries_a_409_and_refuses_a_live_lease(
    world: World, served: KubeApi
) -> None:
    clock = FakeClock()
    pv = world.claim()["spec"]["volumeName"]
    kube = RacingKube(served)
    mine, other = LeaseKeeper(kube, clock), LeaseKeeper(served, clock)
    # The PV controller writes between our read and our write: the API server answers 409, we read again.
    kube.before_replace.append(
        lambda: ignore(world.kube.patch(Kind.PV, pv, "", {"status": {"message": "x"}}))
    )
    written = mine.acquire(pv, "the relocation")
    assert (kube.replaces, kube.conflicts) == (2, 1) and lease_of(written) is not None
    assert world.kube.get(Kind.PV, pv)["status"]["message"] == "x"  # the other update was kept
    clock.advance(LEASE_TTL - 5)
    with pytest.raises(LeaseHeld, match=f"driven by {held(mine)}, last renewed 55 s ago"):
        other.acquire(pv, "the relocation")
    mine.write(pv, lambda obj: None)  # renewed
    other.acquire(pv, "the relocation", take_over=True)
    with pytest.raises(LeaseLost):
        mine.write(pv, lambda obj: obj["metadata"]["annotations"].update({"x": "y"}))
    assert "x" not in world.kube.get(Kind.PV, pv)["metadata"]["annotations"]
    other.release(pv)
    assert lease_of(world.kube.get(Kind.PV, pv)) is None


def test_a_new_relocation_retries_an_unrelated_update_of_the_pv(world: World) -> None:
    kube = RacingKube(world.kube)
    source = world.claim()["spec"]["volumeName"]
    kube.before_replace.append(
        lambda: ignore(world.kube.patch(Kind.PV, source, "", {"status": {"message": "controller"}}))
    )
    rel = relocator(world, kube)
    plan, _ = make_plan(world.kube, world.cloud, rel.driver, "default", "data", "us-east-1c")
    assert rel.start(plan).result == "relocated"
    assert kube.conflicts == 1  # the first write of the journal conflicted and was made again
    assert_relocated_once(world)


def test_doctor_names_the_holder_of_an_unfinished_relocation(world: World) -> None:
    j = died_after_retain(world)
    holder = lease_on(world, j.source_pv)
    assert holder is not None
    found = [f for f in check_volumes(Cluster.read(world.kube), DRIVER) if f.code == RELOCATION_UNFINISHED]
    assert len(found) == 1 and f"its lease names {holder}, last renewed 20" in found[0].why


class StallingCloud:
    """The cloud port of a process that stalls (a laptop's lid closed) right before its CreateSnapshot:
    ``stall`` runs at its first read of the source volume (the at-rest check before CreateSnapshot)."""

    def __init__(self, inner: Cloud, stall: Callable[[], None]) -> None:
        self._inner, self._stall = inner, [stall]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_volume(self, volume_id: str) -> Any:
        if self._stall:
            self._stall.pop()()
        return self._inner.get_volume(volume_id)


def test_a_holder_stalled_past_its_ttl_does_not_take_the_snapshot(world: World) -> None:
    j, _, _, second = two_processes(world)

    def stalled() -> None:
        world.advance(LEASE_TTL)  # the holder was stopped for a minute: its lease expired
        second.lease.acquire(j.source_pv, "it")  # and another process took it without --take-over

    base = world.relocator()
    first = Relocator(
        world.kube, StallingCloud(world.cloud, stalled), world.clock, base.driver, base.settings
    )
    with pytest.raises(LeaseLost):
        first.resume("default", "data")
    assert world.relocation_snapshots() == []  # the check came right before CreateSnapshot
    assert second.resume("default", "data").result == "relocated"
    assert_relocated_once(world)
