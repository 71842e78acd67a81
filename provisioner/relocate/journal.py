"""The relocation journal: where a relocation stands, written on the cluster's own objects.

Why it exists: a relocation deletes and recreates a claim and makes EC2 objects; a crash or Ctrl-C can
come between any two calls. The journal is recorded on the source PersistentVolume (the one object that
outlives every step) before and after each step, so ``--resume`` and ``--rollback`` read what was done
from the cluster itself, not from a local file. The snapshot and the new volume carry the relocation id
as a tag, and the new PV and claim as an annotation, so an object made just before a crash is found again
instead of made twice. Plain values and their JSON form only; nothing here reads or writes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from provisioner.ports.kube import Obj

# On the source PV: the journal (JSON) and the claim as the user made it (JSON), both until the end.
ANN_JOURNAL = "zonal.dev/relocation"
ANN_SAVED_CLAIM = "zonal.dev/relocation-claim"
# On the journal's PV while a process drives the relocation: who, renewed when (see :mod:`.lease`).
ANN_LEASE = "zonal.dev/relocation-lease"
# On the new PV and the recreated claim: the relocation that made them.
ANN_RELOCATION_ID = "zonal.dev/relocation-id"
# On the new PV: where its data came from.
ANN_RELOCATED_FROM = "zonal.dev/relocated-from"
# On the snapshot and the new EBS volume.
TAG_RELOCATION = "zonal.dev/relocation"

# The steps in order. Each is recorded "started" before it acts and "done" after.
RETAIN = "retain"  # journal on the source PV, its reclaim policy set to Retain (one update)
SNAPSHOT = "snapshot"  # CreateSnapshot of the source volume, wait until completed
VOLUME = "volume"  # CreateVolume from the snapshot in the target zone, wait until available
PV = "pv"  # the new PV, pinned to the target zone, pre-bound to the claim's name
CLAIM = "claim"  # the claim deleted and created again pre-bound to the new PV; wait Bound
FINISH = "finish"  # the new PV's reclaim policy restored; opt-in deletions
STEPS = (RETAIN, SNAPSHOT, VOLUME, PV, CLAIM, FINISH)

STARTED = "started"
DONE = "done"
FORWARD = "forward"
ROLLBACK = "rollback"
MAX_HISTORY = 40


@dataclass
class Journal:
    id: str
    namespace: str
    claim: str
    claim_uid: str
    source_pv: str
    source_volume: str
    from_zone: str
    to_zone: str
    reclaim_policy: str
    new_pv: str
    # The source PV's finalizers other than pv-protection (the provisioner's hand-over), for the new PV.
    finalizers: list[str] = field(default_factory=list)
    started_at: str = ""
    snapshot_id: str = ""
    volume_id: str = ""
    volume_attempt: int = 0  # part of the ClientToken; bumped only after a new volume ended in error
    delete_source: bool = False
    delete_snapshot: bool = False
    mode: str = FORWARD
    step: str = RETAIN
    state: str = STARTED
    history: list[dict[str, str]] = field(default_factory=list)

    @property
    def claim_ref(self) -> str:
        return f"{self.namespace}/{self.claim}"

    @property
    def finished(self) -> bool:
        return self.mode == FORWARD and self.step == FINISH and self.state == DONE

    def done(self, step: str) -> bool:
        """Whether ``step`` of the forward run is behind us."""
        if self.mode != FORWARD:
            return False
        mine, current = STEPS.index(step), STEPS.index(self.step)
        return mine < current or (mine == current and self.state == DONE)

    def record(self, step: str, state: str, at: str) -> None:
        self.step, self.state = step, state
        self.history.append({"at": at, "mode": self.mode, "step": step, "state": state})
        del self.history[:-MAX_HISTORY]

    def where(self) -> str:
        """Where it stands, for messages: ``step snapshot started (2024-…)``."""
        at = self.history[-1]["at"] if self.history else self.started_at
        what = "rollback" if self.mode == ROLLBACK else "step"
        return f"{what} {self.step} {self.state}" + (f" at {at}" if at else "")

    def encode(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def decode(cls, text: str) -> Journal | None:
        """The journal in ``text``, or None when it is not one (a hand-edited or foreign annotation)."""
        try:
            data = json.loads(text)
            names = {f.name for f in dataclasses.fields(cls)}
            journal = cls(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError, AttributeError):
            return None
        if journal.step not in STEPS or journal.mode not in (FORWARD, ROLLBACK):
            return None
        return journal


def journal_of(pv: Obj) -> Journal | None:
    text = (pv.get("metadata", {}).get("annotations") or {}).get(ANN_JOURNAL, "")
    return Journal.decode(text) if text else None
