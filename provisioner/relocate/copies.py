"""The relocation's two EC2 steps: the snapshot of the source volume and the new volume made from it.

Why it exists: these are the steps where a crash can leave an object EC2 made but the journal does not
name yet. Each looks for that object first — the snapshot by its name tag (EC2's CreateSnapshot takes no
ClientToken), the volume by its name tag and, when created, by a ClientToken derived from the relocation
id — so a resumed run finds it instead of making a second one. The snapshot is taken only while the data
is at rest; the new volume is used only if EC2 put it in the target zone. Waits are bounded and report
EC2's progress. Over the Cloud port and :class:`~provisioner.relocate.core.Relocator`'s helpers only.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from provisioner.controller.tokens import client_token
from provisioner.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    NotFound,
    OperationInProgress,
    Unavailable,
)
from provisioner.model import Snapshot, Volume, VolumeState
from provisioner.relocate import objects as O
from provisioner.relocate.journal import TAG_RELOCATION, Journal

if TYPE_CHECKING:
    from provisioner.relocate.core import Relocator


def _source_volume(rel: Relocator, j: Journal) -> Volume:
    try:
        return rel.cloud.get_volume(j.source_volume)
    except NotFound as e:
        raise FailedPrecondition(f"the source volume {j.source_volume} no longer exists") from e


# --- snapshot ---------------------------------------------------------------------------------------


def find_snapshot(rel: Relocator, j: Journal) -> Snapshot | None:
    if j.snapshot_id:
        with contextlib.suppress(NotFound):
            return rel.cloud.get_snapshot(j.snapshot_id)
    found = rel.cloud.find_snapshot_by_name(O.snapshot_name(j))
    if found is not None and found.tags.get(TAG_RELOCATION) == j.id:
        return found
    return None


def snapshot_step(rel: Relocator, j: Journal) -> None:
    snap = find_snapshot(rel, j)
    if snap is not None and snap.snapshot_id != j.snapshot_id:
        rel.report.detail(f"found snapshot {snap.snapshot_id}, made before the interruption")
    if snap is None:
        rel.at_rest(j)
        source = _source_volume(rel, j)
        rel.renew()  # CreateSnapshot takes no ClientToken: prove the lease is still ours right before it
        snap = rel.cloud.create_snapshot(
            j.source_volume,
            O.snapshot_tags(source, j, rel.driver),
            f"zonal relocate {j.claim_ref} to {j.to_zone} ({j.id})",
        )
        rel.report.detail(f"EC2 CreateSnapshot of {j.source_volume} → {snap.snapshot_id}")
    if j.snapshot_id != snap.snapshot_id:
        j.snapshot_id = snap.snapshot_id
        rel.save(j)
    _wait_snapshot(rel, j, snap)


def _wait_snapshot(rel: Relocator, j: Journal, snap: Snapshot) -> None:
    last = [snap]
    label = f"snapshot {snap.snapshot_id}"

    def completed() -> Snapshot | None:
        current = rel.cloud.get_snapshot(snap.snapshot_id)
        last[0] = current
        if current.state == "error":
            with contextlib.suppress(NotFound):
                rel.cloud.delete_snapshot(current.snapshot_id)
            j.snapshot_id = ""
            rel.save(j)
            raise Unavailable(
                f"EC2 failed {label} (state error) and it was deleted; --resume takes a new one"
            )
        rel.report.progress(label, 100 if current.ready else current.progress)
        return current if current.ready else None

    rel.report.progress(label, 100 if snap.ready else snap.progress)
    if snap.ready:
        return
    try:
        rel.wait(rel.settings.snapshot_timeout, completed, lambda: label)
    except DeadlineExceeded as e:
        raise DeadlineExceeded(
            f"{label} is still {last[0].state} at {last[0].progress}% after "
            f"{rel.settings.snapshot_timeout:g} s; nothing is lost: --resume waits on"
        ) from e


# --- the new volume ---------------------------------------------------------------------------------


def find_volume(rel: Relocator, j: Journal) -> Volume | None:
    if j.volume_id:
        with contextlib.suppress(NotFound):
            volume = rel.cloud.get_volume(j.volume_id)
            if volume.state not in (VolumeState.DELETING, VolumeState.DELETED):
                return volume
    found = rel.cloud.find_volume_by_name(j.new_pv)
    if found is None:
        return None
    if found.tags.get(TAG_RELOCATION) != j.id:
        raise AlreadyExists(f"EC2 volume {found.volume_id} already carries the name {j.new_pv}, not ours")
    return found


def volume_step(rel: Relocator, j: Journal) -> None:
    volume = find_volume(rel, j)
    if volume is not None and volume.volume_id != j.volume_id:
        rel.report.detail(f"found volume {volume.volume_id}, made before the interruption")
    if volume is None:
        volume = _create_volume(rel, j)
    if j.volume_id != volume.volume_id:
        j.volume_id = volume.volume_id
        rel.save(j)
    if volume.zone != j.to_zone:  # never carry on with a volume outside the target zone
        raise Internal(f"EC2 made {volume.volume_id} in {volume.zone}, not {j.to_zone}; nothing was rebound")
    volume_id = volume.volume_id

    def settled() -> Volume | None:
        current = rel.cloud.get_volume(volume_id)
        return None if current.state is VolumeState.CREATING else current

    if volume.state is VolumeState.CREATING:
        volume = rel.wait(
            rel.settings.volume_timeout, settled, lambda: f"volume {volume_id} is still creating"
        )
    if volume.state is VolumeState.ERROR:
        with contextlib.suppress(NotFound):
            rel.cloud.delete_volume(volume_id)
        j.volume_id, j.volume_attempt = "", j.volume_attempt + 1
        rel.save(j)
        raise Unavailable(
            f"EC2 failed volume {volume_id} (state error) and it was deleted; --resume makes another"
        )
    rel.report.detail(f"volume {volume_id} is {volume.state.value} in {volume.zone}")


def _create_volume(rel: Relocator, j: Journal) -> Volume:
    spec = O.restore_spec(_source_volume(rel, j), j.snapshot_id, j, rel.driver)
    for _ in (1, 2):
        token = client_token(f"relocate-{j.id}", j.volume_attempt)
        try:
            volume = rel.cloud.create_volume(spec, j.to_zone, token)
        except AlreadyExists as e:
            found = rel.cloud.find_volume_by_name(j.new_pv)
            if found is not None and found.tags.get(TAG_RELOCATION) == j.id:
                return found
            raise OperationInProgress(
                f"EC2 holds an earlier request of this relocation with other parameters ({e}); "
                "--resume in a minute"
            ) from e
        if volume.state not in (VolumeState.DELETING, VolumeState.DELETED):
            rel.report.detail(
                f"EC2 CreateVolume from {j.snapshot_id} in {j.to_zone} ({O.describe_spec(spec)}) "
                f"→ {volume.volume_id}"
            )
            return volume
        j.volume_attempt += 1  # the token's volume was deleted since: a fresh token, once
        rel.save(j)
    raise OperationInProgress(f"EC2 keeps answering with deleted volumes for {j.new_pv}; --resume later")
