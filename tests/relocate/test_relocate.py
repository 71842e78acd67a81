"""``Relocator`` end to end on the EC2 simulator and the in-memory cluster (with the PV controller's rules):
the plan's refusals, the run, what the new objects look like, and the opt-in deletions."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from provisioner.errors import FailedPrecondition
from provisioner.model import TAG_VOLUME_NAME, VolumeState
from provisioner.ports.kube import Kind
from provisioner.relocate.core import Relocator
from provisioner.relocate.journal import ANN_JOURNAL, ANN_RELOCATION_ID, ANN_SAVED_CLAIM, journal_of
from provisioner.relocate.lease import LEASE_TTL
from provisioner.relocate.plan import make_plan
from provisioner.relocate.report import FAIL, Plan
from provisioner.relocate.rollback import rollback
from tests.relocate.world import DRIVER, World, make_world, provision


@dataclass
class Recorder:
    lines: list[str] = field(default_factory=list)
    percents: list[int] = field(default_factory=list)

    def step(self, name: str, text: str) -> None:
        self.lines.append(f"[{name}] {text}")

    def detail(self, text: str) -> None:
        self.lines.append(text)

    def progress(self, text: str, percent: int) -> None:
        self.percents.append(percent)


@pytest.fixture
def world() -> World:
    w = make_world()
    provision(w)
    return w


def plan_for(world: World, zone: str = "us-east-1c") -> tuple[Relocator, Plan]:
    rel = world.relocator()
    plan, _ = make_plan(world.kube, world.cloud, rel.driver, "default", "data", zone)
    return rel, plan


def test_relocates_the_claim_to_a_volume_in_the_new_zone(world: World) -> None:
    before = world.claim()
    old_pv = world.kube.get(Kind.PV, before["spec"]["volumeName"])
    source = world.cloud.get_volume(old_pv["spec"]["csi"]["volumeHandle"])
    assert source.zone == "us-east-1b"
    recorder = Recorder()
    rel = world.relocator(recorder)
    plan, _ = make_plan(world.kube, world.cloud, rel.driver, "default", "data", "us-east-1c")
    assert plan.ok, plan.checks

    outcome = rel.start(plan)

    j = outcome.journal
    assert outcome.result == "relocated" and j.finished
    claim = world.claim()
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["volumeName"] == j.new_pv
    assert claim["metadata"]["uid"] != before["metadata"]["uid"]
    # What the user set is kept; what controllers wrote is not.
    assert claim["metadata"]["labels"] == {"app": "web"}
    notes = claim["metadata"]["annotations"]
    assert notes["team.example.com/owner"] == "storage"
    assert "volume.kubernetes.io/selected-node" not in notes
    assert notes[ANN_RELOCATION_ID] == j.id
    assert claim["spec"]["resources"] == before["spec"]["resources"]

    new_pv = world.kube.get(Kind.PV, j.new_pv)
    terms = new_pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert {v for t in terms for e in t["matchExpressions"] for v in e["values"]} == {"us-east-1c"}
    assert new_pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"  # the class's, restored at the end
    assert new_pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert new_pv["metadata"]["finalizers"] == old_pv["metadata"]["finalizers"]

    new = world.cloud.get_volume(new_pv["spec"]["csi"]["volumeHandle"])
    assert new.zone == "us-east-1c"
    assert (new.volume_type, new.size_gib, new.iops, new.throughput) == (
        source.volume_type,
        source.size_gib,
        source.iops,
        source.throughput,
    )
    assert new.encrypted == source.encrypted and new.kms_key_id == source.kms_key_id
    assert new.tags[TAG_VOLUME_NAME] == j.new_pv
    assert new.tags["team"] == "storage"  # the class's tag, as the driver wrote it on the source
    assert new.tags["kubernetes.io/cluster/test-cluster"] == "owned"
    assert new.snapshot_id == j.snapshot_id

    # The source is kept (Retain, journal finished) and so is the snapshot.
    old = world.kube.get(Kind.PV, old_pv["metadata"]["name"])
    assert old["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert old["status"]["phase"] == "Released"
    journal = journal_of(old)
    assert journal is not None and journal.finished
    assert world.cloud.get_volume(source.volume_id).state is VolumeState.AVAILABLE
    assert [s.snapshot_id for s in world.relocation_snapshots()] == [j.snapshot_id]
    assert len(outcome.leftovers) == 2
    # Every step was visible, with EC2's snapshot progress.
    assert [line.split("]")[0] for line in recorder.lines if line.startswith("[")] == [
        "[retain",
        "[snapshot",
        "[volume",
        "[pv",
        "[claim",
        "[finish",
    ]
    assert recorder.percents[0] < 100 and recorder.percents[-1] == 100
    assert len(set(recorder.percents)) > 2


def test_delete_source_and_snapshot_leave_one_volume_and_no_source_pv(world: World) -> None:
    rel, plan = plan_for(world)
    outcome = rel.start(plan, delete_source=True, delete_snapshot=True)
    j = outcome.journal
    assert [v.volume_id for v in world.volumes()] == [j.volume_id]
    assert world.relocation_snapshots() == []
    assert world.kube.find(Kind.PV, j.source_pv) is None
    new_pv = world.kube.get(Kind.PV, j.new_pv)
    moved = journal_of(new_pv)
    assert moved is not None and moved.finished  # the journal lives on the new PV once the source is gone
    assert outcome.leftovers == []


def test_resume_of_a_finished_relocation_deletes_what_is_asked_now(world: World) -> None:
    rel, plan = plan_for(world)
    first = rel.start(plan)
    again = world.relocator().resume("default", "data")
    assert again.result == "already-done"
    done = world.relocator().resume("default", "data", delete_source=True)
    assert done.result == "relocated"
    assert [v.volume_id for v in world.volumes()] == [first.journal.volume_id]
    assert len(world.relocation_snapshots()) == 1


def test_refuses_while_a_pod_uses_the_claim_and_changes_nothing(world: World) -> None:
    world.kube.create(
        Kind.POD,
        {
            "metadata": {
                "name": "web-0",
                "namespace": "default",
                "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": True}],
            },
            "spec": {
                "containers": [{"name": "app", "image": "busybox"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            },
            "status": {"phase": "Pending"},
        },
    )
    rel, plan = plan_for(world)
    failed = plan.failed()
    assert [c.name for c in failed] == ["no pod uses the claim"]
    assert "kubectl scale statefulset web -n default --replicas=0" in failed[0].text
    before = world.kube.resource_version
    with pytest.raises(FailedPrecondition):
        rel.start(plan)
    assert world.kube.resource_version == before


@pytest.mark.parametrize(
    ("zone", "why"),
    [("us-east-1b", "already in us-east-1b"), ("us-east-1f", "has no zone us-east-1f")],
)
def test_refuses_a_zone_it_cannot_move_to(world: World, zone: str, why: str) -> None:
    _, plan = plan_for(world, zone)
    assert any(c.level == FAIL and why in c.text for c in plan.checks), plan.checks


def test_refuses_a_zone_without_a_schedulable_node_of_the_driver(world: World) -> None:
    world.kube.patch(Kind.NODE, "node-c", "", {"spec": {"unschedulable": True}})
    _, plan = plan_for(world)
    failed = {c.name: c.text for c in plan.failed()}
    assert "node-c cordoned" in failed["target zone has nodes"]


def test_refuses_an_attached_volume(world: World) -> None:
    volume_id = world.kube.get(Kind.PV, world.claim()["spec"]["volumeName"])["spec"]["csi"]["volumeHandle"]
    world.cloud.attach_volume(volume_id, world.instances["node-b"], "/dev/xvdba")
    _, plan = plan_for(world)
    assert any("attached to" in c.text for c in plan.failed())


def test_refuses_a_second_relocation_while_one_is_unfinished(world: World) -> None:
    rel, plan = plan_for(world)
    assert plan.journal is not None
    rel._begin(plan.journal)
    _, again = plan_for(world, "us-east-1a")
    assert any("--resume" in c.text for c in again.failed())


def test_the_journal_and_saved_claim_are_on_the_source_pv_while_it_runs(world: World) -> None:
    rel, plan = plan_for(world)
    assert plan.journal is not None
    rel._begin(plan.journal)
    pv = world.kube.get(Kind.PV, plan.journal.source_pv)
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert ANN_JOURNAL in pv["metadata"]["annotations"] and ANN_SAVED_CLAIM in pv["metadata"]["annotations"]
    j = journal_of(pv)
    assert j is not None and j.reclaim_policy == "Delete" and j.step == "retain" and j.state == "done"
    assert [h["state"] for h in j.history] == ["started", "done"]
    assert DRIVER in pv["spec"]["csi"]["driver"]


def test_a_relocated_claim_moves_again_and_that_move_rolls_back(world: World) -> None:
    rel, plan = plan_for(world)
    first = rel.start(plan, delete_source=True, delete_snapshot=True).journal
    again, plan2 = plan_for(world, "us-east-1a")
    assert plan2.ok, plan2.checks
    assert plan2.journal is not None and plan2.journal.source_pv == first.new_pv
    again._begin(plan2.journal)  # then the process dies: only the retain step was taken
    world.advance(LEASE_TTL)  # its lease expires
    outcome = rollback(world.relocator(), "default", "data")
    assert outcome.result == "rolled-back"
    claim = world.claim()
    assert claim["spec"]["volumeName"] == first.new_pv and claim["status"]["phase"] == "Bound"
    assert [v.zone for v in world.volumes()] == ["us-east-1c"]
    second = world.relocator().start(plan_for(world, "us-east-1a")[1])
    assert second.result == "relocated" and world.claim()["spec"]["volumeName"] == second.journal.new_pv
    assert sorted(v.zone for v in world.volumes()) == ["us-east-1a", "us-east-1c"]
