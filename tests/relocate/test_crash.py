"""A relocation killed between every pair of calls that change anything, then resumed or rolled back by a
fresh process: each ends with exactly one volume holding the data, at most the one kept snapshot, and the
claim Bound.

"Killed" is a BaseException raised by the ports themselves, right before or right after the N-th call
that changes the cluster or EC2 takes effect (the latter is the window where the process made an object
and died before it could record it). The next process only has what the cluster and EC2 hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from provisioner.errors import FailedPrecondition, NotFound
from provisioner.ports.kube import Kind
from provisioner.relocate.core import RelocateSettings, Relocator
from provisioner.relocate.journal import ANN_JOURNAL, ANN_RELOCATION_ID, Journal, journal_of
from provisioner.relocate.lease import LEASE_TTL
from provisioner.relocate.plan import make_plan
from provisioner.relocate.rollback import rollback
from tests.relocate.world import World, make_world, provision

T = TypeVar("T")
KUBE_WRITES = ("create", "replace", "patch", "delete")
CLOUD_WRITES = ("create_snapshot", "create_volume", "delete_volume", "delete_snapshot", "create_tags")


class Killed(BaseException):
    """The process died here."""


class Dying:
    """Counts calls that change something; the ``at``-th one kills the process (``after``: once it took
    effect)."""

    def __init__(self, at: int, after: bool) -> None:
        self.at, self.after, self.count = at, after, 0
        self.killed_at = ""

    def call(self, what: str, do: Callable[[], T]) -> T:
        self.count += 1
        if self.count != self.at:
            return do()
        self.killed_at = f"{'after' if self.after else 'before'} {what}"
        if self.after:
            do()
        raise Killed(self.killed_at)


class Proxy:
    def __init__(self, inner: Any, dying: Dying, writes: tuple[str, ...]) -> None:
        self._inner, self._dying, self._writes = inner, dying, writes

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._writes:
            return attr

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return self._dying.call(f"{name}{args[:2]}", lambda: attr(*args, **kwargs))

        return wrapped


def dying_relocator(world: World, dying: Dying) -> Relocator:
    return Relocator(
        Proxy(world.kube, dying, KUBE_WRITES),
        Proxy(world.cloud, dying, CLOUD_WRITES),
        world.clock,
        world.relocator().driver,
        RelocateSettings(),
    )


def start(rel: Relocator, world: World, delete_source: bool) -> None:
    plan, _ = make_plan(world.kube, world.cloud, rel.driver, "default", "data", "us-east-1c")
    assert plan.ok, plan.checks
    rel.start(plan, delete_source=delete_source)


def crashed_world(at: int, after: bool) -> tuple[World, Dying, bool]:
    """A world whose first relocation died at the ``at``-th write; False when it ran out of writes first.
    The dead process's lease is left to expire (LEASE_TTL on the fake clock), as after a kill -9."""
    world = make_world()
    provision(world)
    dying = Dying(at, after)
    try:
        start(dying_relocator(world, dying), world, delete_source=True)
    except Killed:
        world.advance(LEASE_TTL)
        return world, dying, True
    return world, dying, False


def finished_journal(world: World) -> Journal:
    found = [journal_of(pv) for pv in world.kube.objects(Kind.PV)]
    journals = [j for j in found if j is not None]
    assert len(journals) == 1 and journals[0].finished, journals
    return journals[0]


def assert_relocated(world: World) -> None:
    j = finished_journal(world)
    claim = world.claim()
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == j.new_pv
    volumes = world.volumes()
    assert [(v.volume_id, v.zone) for v in volumes] == [(j.volume_id, "us-east-1c")]
    pv = world.kube.get(Kind.PV, j.new_pv)
    assert pv["spec"]["csi"]["volumeHandle"] == j.volume_id
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert world.kube.find(Kind.PV, j.source_pv) is None
    assert [s.snapshot_id for s in world.relocation_snapshots()] == [j.snapshot_id]  # the one kept


def assert_rolled_back(world: World, source_pv: str, source_volume: str) -> None:
    claim = world.claim()
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == source_pv
    assert [v.volume_id for v in world.volumes()] == [source_volume]
    pv = world.kube.get(Kind.PV, source_pv)
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert ANN_JOURNAL not in (pv["metadata"].get("annotations") or {})
    assert [
        p
        for p in world.kube.objects(Kind.PV)
        if ANN_RELOCATION_ID in (p["metadata"].get("annotations") or {})
    ] == []
    assert len(world.relocation_snapshots()) <= 1


def source_of(world: World) -> tuple[str, str]:
    pv = world.kube.get(Kind.PV, world.claim()["spec"]["volumeName"])
    return pv["metadata"]["name"], pv["spec"]["csi"]["volumeHandle"]


@pytest.mark.parametrize("after", [False, True])
def test_resume_after_a_kill_at_every_write(after: bool) -> None:
    points = 0
    for at in range(1, 60):
        world, dying, killed = crashed_world(at, after)
        if not killed:
            break
        points += 1
        fresh = world.relocator()
        try:
            fresh.resume("default", "data")
        except NotFound:  # killed before the journal was written: nothing happened, start again
            assert world.relocation_snapshots() == [], dying.killed_at
            start(fresh, world, delete_source=True)
        try:
            assert_relocated(world)
        except AssertionError as e:
            raise AssertionError(f"killed {dying.killed_at} (write {at}): {e}") from e
    assert points >= 20  # every step's writes were crossed


@pytest.mark.parametrize("after", [False, True])
def test_rollback_after_a_kill_at_every_write(after: bool) -> None:
    points = 0
    for at in range(1, 60):
        world, dying, killed = crashed_world(at, after)
        if not killed:
            break
        points += 1
        source_pv = next(
            (j.source_pv for p in world.kube.objects(Kind.PV) if (j := journal_of(p)) is not None), ""
        )
        try:
            outcome = rollback(world.relocator(), "default", "data")
        except FailedPrecondition as e:
            if "nothing to undo" in str(e):  # killed before the journal was written
                pv, volume = source_of(world)
                assert_rolled_back(world, pv, volume)
                continue
            if "is finished" in str(e):  # killed after its last write
                assert_relocated(world)
                continue
            assert "source volume" in str(e) and "is gone" in str(e), (dying.killed_at, e)
            # The source was already deleted (--delete-source, claim Bound): only forward is left.
            world.relocator().resume("default", "data")
            assert_relocated(world)
            continue
        try:
            assert outcome.journal.source_pv == source_pv
            assert_rolled_back(world, outcome.journal.source_pv, outcome.journal.source_volume)
        except AssertionError as e:
            raise AssertionError(f"killed {dying.killed_at} (write {at}): {e}") from e
    assert points >= 20


class DieAfter(Dying):
    """Dies right after the first write whose description contains ``marker``."""

    def __init__(self, marker: str) -> None:
        super().__init__(0, True)
        self.marker = marker

    def call(self, what: str, do: Callable[[], T]) -> T:
        result = do()
        if self.marker in what:
            self.killed_at = f"after {what}"
            raise Killed(what)
        return result


def test_a_rollback_killed_at_every_write_is_finished_by_the_next_one() -> None:
    points = 0
    for at in range(1, 40):
        # The relocation died right after it asked for the claim's deletion: the worst moment.
        world = make_world()
        provision(world)
        original = world.claim()["metadata"]["uid"]
        rel = dying_relocator(world, DieAfter("delete(<Kind.CLAIM"))
        plan, _ = make_plan(world.kube, world.cloud, rel.driver, "default", "data", "us-east-1c")
        assert plan.journal is not None
        j = plan.journal
        with pytest.raises(Killed):
            rel.start(plan)
        world.advance(LEASE_TTL)  # the killed process's lease expires
        assert world.claim()["metadata"]["uid"] == original and world.claim()["metadata"]["deletionTimestamp"]
        dying = Dying(at, after=True)
        try:
            rollback(dying_relocator(world, dying), "default", "data")
        except Killed:
            points += 1
            world.advance(LEASE_TTL)
            try:
                rollback(world.relocator(), "default", "data")
            except FailedPrecondition as e:
                assert "nothing to undo" in str(e)  # killed after its last write: the journal is gone
            try:
                assert_rolled_back(world, j.source_pv, j.source_volume)
            except AssertionError as e:
                raise AssertionError(f"rollback killed {dying.killed_at} (write {at}): {e}") from e
            continue
        assert_rolled_back(world, j.source_pv, j.source_volume)
        break
    assert points >= 8
