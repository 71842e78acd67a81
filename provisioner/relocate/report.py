"""What a relocation tells its user: the plan, each step as it happens, and the outcome.

Why it exists: the core decides and acts, the CLI renders; between them pass only these values and the
:class:`Reporter` port (a step begins, a line of detail, a percentage). Every step being visible is part
of the contract: an SRE at 3 a.m. must see what was done before anything else happens. Nothing here
reads, writes or prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioner.relocate.journal import Journal

OK = "ok"
WARN = "warn"
FAIL = "fail"


class Reporter(Protocol):
    def step(self, name: str, text: str) -> None:
        """A step begins (``name`` is one of the journal's steps, or ``rollback``)."""
        ...

    def detail(self, text: str) -> None:
        """One line about the step in progress (an object made, a wait, a skip)."""
        ...

    def progress(self, text: str, percent: int) -> None:
        """How far a long wait is (EC2's snapshot progress)."""
        ...


class SilentReporter:
    def step(self, name: str, text: str) -> None:
        pass

    def detail(self, text: str) -> None:
        pass

    def progress(self, text: str, percent: int) -> None:
        pass


@dataclass(frozen=True)
class Check:
    """One precondition: ``ok``, ``warn`` (goes ahead, said so) or ``fail`` (nothing is changed)."""

    name: str
    level: str
    text: str


@dataclass
class Plan:
    namespace: str
    claim: str
    to_zone: str
    checks: list[Check] = field(default_factory=list)
    # What will be done, in order: objects created or changed, and the EC2 calls.
    actions: list[str] = field(default_factory=list)
    journal: Journal | None = None

    @property
    def ok(self) -> bool:
        return all(c.level != FAIL for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.level == FAIL]

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": f"{self.namespace}/{self.claim}",
            "to_zone": self.to_zone,
            "ok": self.ok,
            "checks": [dataclasses.asdict(c) for c in self.checks],
            "actions": list(self.actions),
            "journal": self.journal.to_dict() if self.journal else None,
        }


@dataclass
class Outcome:
    """Where a run ended: the journal as last written, and what is left for the user to decide on."""

    journal: Journal
    result: str  # relocated | rolled-back | already-done
    leftovers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"result": self.result, "journal": self.journal.to_dict(), "leftovers": list(self.leftovers)}
