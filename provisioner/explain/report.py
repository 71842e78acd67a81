"""The answers ``zonal explain`` gives: verdicts and report records, as plain data.

Why it exists: the explain cores (:mod:`.pvc`, :mod:`.pod`) build these, the CLI renders them as text,
JSON or YAML. Everything here is a value: lists, dicts, strings and numbers only (``to_dict`` turns a
report into JSON/YAML-safe data). Nothing here reads the cluster or prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Verdict codes. Each comes with a one-line reason and a suggested action.
OK = "ok"
WAITING_FOR_CONSUMER = "waiting-for-consumer"
PENDING = "pending"
CONFLICT = "conflict"
IN_TREE_LABELS_ONLY = "in-tree-labels-only"
UNKNOWN_KEY = "unknown-key"
NO_AFFINITY = "no-affinity"
NO_CLASS = "no-class"
LOST = "lost"
MISSING_CLAIM = "missing-claim"

VERDICTS = (
    OK,
    WAITING_FOR_CONSUMER,
    PENDING,
    CONFLICT,
    IN_TREE_LABELS_ONLY,
    UNKNOWN_KEY,
    NO_AFFINITY,
    NO_CLASS,
    LOST,
    MISSING_CLAIM,
)
HEALTHY = frozenset({OK, WAITING_FOR_CONSUMER, PENDING})

NO_AWS = "unknown (no AWS access)"


@dataclass(frozen=True)
class Verdict:
    code: str
    reason: str
    action: str


@dataclass
class ClassInfo:
    name: str
    found: bool
    provisioner: str = ""
    binding_mode: str = ""
    reclaim_policy: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    # allowedTopologies, one entry per term: key → allowed values.
    allowed_topologies: list[dict[str, list[str]]] = field(default_factory=list)
    # allowedTopologies keys that no CSINode of the driver reports.
    unknown_keys: list[str] = field(default_factory=list)


@dataclass
class NodeInfo:
    name: str
    exists: bool
    zone: str = ""
    zone_labels: dict[str, str] = field(default_factory=dict)
    # Keys the node's CSINode lists for the driver; None: no CSINode or the driver is not on it.
    csinode_keys: list[str] | None = None
    schedulable: bool = False
    why_unschedulable: str = ""


@dataclass
class RequirementsInfo:
    """The accessibility requirements the loop sends (or would send now) in CreateVolume."""

    status: str  # sent (recorded on the PV) | computed | none | unavailable | waiting
    when: str  # "sent to CreateVolume (recorded …)" / "would be sent now (…)" / "will be sent"
    requisite: list[dict[str, str]] = field(default_factory=list)
    preferred: list[dict[str, str]] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class ZoneChoiceInfo:
    zone: str = ""
    source: str = ""  # preferred | requisite | default-zone | spread
    index: int | None = None
    description: str = ""
    zones_from: str = ""  # where the candidate zones came from
    candidates: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class VolumeInfo:
    """The PersistentVolume and what pins it to a zone."""

    pv: str
    phase: str = ""
    driver: str = ""  # spec.csi.driver, or kubernetes.io/aws-ebs for an in-tree PV
    volume_id: str = ""
    pinned_by: str = "none"  # nodeAffinity | zone-labels | none
    zones: list[str] = field(default_factory=list)
    node_affinity: dict[str, Any] | None = None
    zone_labels: dict[str, str] = field(default_factory=dict)
    ebs_zone: str = NO_AWS
    nodes_in_zone: list[str] = field(default_factory=list)  # schedulable nodes satisfying the PV


@dataclass
class PvcReport:
    namespace: str
    name: str
    phase: str
    verdict: Verdict
    driver: str = ""
    storage_class: ClassInfo | None = None
    selected_node: NodeInfo | None = None
    requirements: RequirementsInfo | None = None
    zone_choice: ZoneChoiceInfo | None = None
    volume: VolumeInfo | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "PersistentVolumeClaim"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_plain(self)
        return data


@dataclass
class PodVolume:
    volume: str  # the pod's volume name
    claim: str
    claim_phase: str = ""
    storage_class: ClassInfo | None = None
    pv: VolumeInfo | None = None
    satisfying_nodes: list[str] = field(default_factory=list)
    causes: list[Verdict] = field(default_factory=list)


@dataclass
class PodReport:
    namespace: str
    name: str
    phase: str
    verdict: Verdict
    node_name: str = ""
    scheduling_message: str = ""
    volume_affinity_conflict: bool = False
    volumes: list[PodVolume] = field(default_factory=list)
    candidate_nodes: list[str] = field(default_factory=list)  # satisfy every volume and are schedulable
    nodes: list[NodeInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "Pod"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_plain(self)
        return data


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings → dicts, lists and scalars (safe for JSON and ``yaml.safe_dump``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
