"""PersistentVolume node affinity from a volume's accessible topology, and checks against it.

Why it exists: the PV's ``spec.nodeAffinity`` is what the scheduler enforces, so the provisioner loop must
build it deterministically (one nodeSelectorTerm per segment, one ``In`` expression per key, expressions
sorted by key) and must be able to prove, before a pod gets stuck with "volume node affinity conflict",
that the driver's answer fits the request. Pure functions over API-shaped dicts; no I/O, no Kubernetes
client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from provisioner.model import Segment


def volume_node_affinity(accessible_topology: Sequence[Segment]) -> dict[str, Any] | None:
    """``spec.nodeAffinity`` for a PV: the OR of the segments, each the AND of ``key In [value]``.

    CSI: accessible_topology lists where the volume can be used; empty segments carry no constraint.
    """
    terms: list[dict[str, Any]] = []
    for segment in accessible_topology:
        if not segment:
            continue
        terms.append(
            {
                "matchExpressions": [
                    {"key": key, "operator": "In", "values": [segment[key]]} for key in sorted(segment)
                ]
            }
        )
    if not terms:
        return None
    return {"required": {"nodeSelectorTerms": terms}}


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key = str(expr.get("key", ""))
    op = expr.get("operator", "")
    values = [str(v) for v in expr.get("values") or ()]
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_satisfies(affinity: Mapping[str, Any] | None, node_labels: Mapping[str, str]) -> bool:
    """Does a node with ``node_labels`` satisfy a PV's ``spec.nodeAffinity``?

    No affinity (or no ``required``) → every node. A term with no expressions matches no node, as in
    Kubernetes' ``MatchNodeSelectorTerms``. ``matchFields`` are not label-based and are not supported here.
    """
    if not affinity or not affinity.get("required"):
        return True
    terms = affinity["required"].get("nodeSelectorTerms") or []
    for term in terms:
        exprs = term.get("matchExpressions") or []
        if exprs and all(_expression_matches(e, node_labels) for e in exprs):
            return True
    return False


def _compatible(a: Segment, b: Segment) -> bool:
    shared = set(a) & set(b)
    return bool(shared) and all(a[k] == b[k] for k in shared)


def accessible_topology_problem(
    accessible: Sequence[Segment],
    requisite: Sequence[Segment],
    known_keys: Iterable[str],
) -> str | None:
    """Why the driver's ``accessible_topology`` does not fit the request, or ``None`` when it does.

    Checks: at least one segment, no empty segment, only keys the driver registers (or the request used),
    and — when a requisite was sent — some segment agreeing with some requisite term on their shared keys.
    CSI: CreateVolume's accessible_topology must satisfy the requisite of accessibility_requirements.
    """
    if not accessible:
        return "the driver returned no accessible topology"
    if any(not seg for seg in accessible):
        return "the driver returned an empty topology segment"
    known = set(known_keys) | {k for seg in requisite for k in seg}
    if known:
        unknown = sorted({k for seg in accessible for k in seg} - known)
        if unknown:
            return f"the driver returned unknown topology keys {unknown}"
    if requisite and not any(_compatible(a, r) for a in accessible for r in requisite):
        return (
            f"accessible topology {[dict(s) for s in accessible]} does not intersect the requisite "
            f"{[dict(s) for s in requisite]}"
        )
    return None
