"""What ``zonal doctor`` reports: one :class:`Finding` type and the :class:`DoctorReport` that holds them.

Why it exists: every check, whatever it looks at, answers in the same shape (severity, code, the objects
involved, why it matters, the exact remedy), so the CLI renders findings once per output format and a
pipeline can gate on the exit status (:meth:`DoctorReport.exit_status`). Plain values only; nothing here
reads the cluster or prints.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from provisioner.explain.report import to_plain


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


# Finding codes, one per check. The README lists each with an example.
IMMEDIATE_BINDING = "immediate-binding"
ALLOWED_KEY_UNKNOWN = "allowed-topology-key-unknown"
ALLOWED_VALUE_UNKNOWN = "allowed-topology-value-unknown"
CLASS_ZONES_WITHOUT_NODES = "class-zones-without-nodes"
CLASS_ZONE_WITHOUT_NODES = "class-zone-without-nodes"
CSINODE_KEY_NOT_LABELLED = "csinode-key-not-labelled"
NODE_WITHOUT_ZONE = "node-without-zone"
DRIVER_NOT_INSTALLED = "driver-not-installed"
ZONE_WITHOUT_DRIVER = "zone-without-driver"
NODE_ZONE_MISMATCH = "node-zone-mismatch"
CLAIM_AT_RISK = "claim-at-risk"
POD_AFFINITY_CONFLICT = "pod-volume-affinity-conflict"
PV_ZONE_MISMATCH = "pv-zone-mismatch"
PV_VOLUME_MISSING = "pv-volume-missing"
PV_NO_AFFINITY = "pv-no-affinity"
IN_TREE_LABELS_ONLY = "in-tree-labels-only"
RELOCATION_UNFINISHED = "relocation-unfinished"
EC2_UNREACHABLE = "ec2-unreachable"

CODES = (
    IMMEDIATE_BINDING,
    ALLOWED_KEY_UNKNOWN,
    ALLOWED_VALUE_UNKNOWN,
    CLASS_ZONES_WITHOUT_NODES,
    CLASS_ZONE_WITHOUT_NODES,
    CSINODE_KEY_NOT_LABELLED,
    NODE_WITHOUT_ZONE,
    DRIVER_NOT_INSTALLED,
    ZONE_WITHOUT_DRIVER,
    NODE_ZONE_MISMATCH,
    CLAIM_AT_RISK,
    POD_AFFINITY_CONFLICT,
    PV_ZONE_MISMATCH,
    PV_VOLUME_MISSING,
    PV_NO_AFFINITY,
    IN_TREE_LABELS_ONLY,
    RELOCATION_UNFINISHED,
    EC2_UNREACHABLE,
)
# Checks that need EC2; skipped (and said so) when it cannot be reached.
EC2_CODES = (NODE_ZONE_MISMATCH, PV_ZONE_MISMATCH, PV_VOLUME_MISSING)


@dataclass(frozen=True)
class Finding:
    """One problem: how bad, which check, the objects (``Kind namespace/name``), why it matters, the fix."""

    severity: Severity
    code: str
    objects: tuple[str, ...]
    why: str
    remedy: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "objects": list(self.objects),
            "why": self.why,
            "remedy": self.remedy,
        }


def error(code: str, objects: tuple[str, ...], why: str, remedy: str) -> Finding:
    return Finding(Severity.ERROR, code, objects, why, remedy)


def warning(code: str, objects: tuple[str, ...], why: str, remedy: str) -> Finding:
    return Finding(Severity.WARNING, code, objects, why, remedy)


@dataclass
class DoctorReport:
    driver: str
    findings: list[Finding] = field(default_factory=list)
    # What was read: kind → count (nodes, csinodes, storageclasses, persistentvolumes, …).
    checked: dict[str, int] = field(default_factory=dict)
    # EC2: "us-east-1: 4 volumes, 3 instances", or why its checks were skipped.
    ec2: str = ""
    ec2_checked: bool = False
    notes: list[str] = field(default_factory=list)

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    def exit_status(self) -> int:
        """0 clean, 1 warnings only, 2 any error (so CI and upgrade gates can act on it)."""
        if self.count(Severity.ERROR):
            return 2
        return 1 if self.count(Severity.WARNING) else 0

    def sort(self) -> None:
        """Errors first, then by code and objects, so the output is stable from run to run."""
        order = {Severity.ERROR: 0, Severity.WARNING: 1}
        self.findings.sort(key=lambda f: (order[f.severity], f.code, f.objects))

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "findings": [f.to_dict() for f in self.findings],
            "summary": {
                "errors": self.count(Severity.ERROR),
                "warnings": self.count(Severity.WARNING),
                "exit_status": self.exit_status(),
            },
            "checked": to_plain(self.checked),
            "ec2": self.ec2,
            "ec2_checked": self.ec2_checked,
            "notes": list(self.notes),
        }


def obj(kind: str, name: str, namespace: str = "") -> str:
    """``Kind namespace/name`` (or ``Kind name`` for cluster-scoped objects), as findings name them."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
