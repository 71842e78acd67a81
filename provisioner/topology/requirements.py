"""The accessibility requirements a claim sends in CreateVolume: a pure function of what the cluster shows.

Why it exists: the provisioner loop, the tests and ``zonal explain`` must all reach the same decision, and
that decision must match what Kubernetes' external-provisioner (v6.x, ``pkg/controller/topology.go``)
does, because users rely on it. This module reproduces those decisions step by step and records each
step in an :class:`Explanation`; it never reads the cluster, never caches and never calls the driver
(the loop caches a computed requirement per claim so a retried CreateVolume sends identical requirements).

The sidecar's decisions (default behaviour):

1. With a selected node (WaitForFirstConsumer): topology keys come from the node's CSINode entry for the
   driver, values from the Node's labels; a missing key is an error (retry).
2. ``strict_topology`` with a selected node: requisite = [selected topology], which must be a superset of
   one flattened allowedTopologies term when the class has them; preferred = requisite.
3. Otherwise requisite = the flattened allowedTopologies (each term's expressions as a cross product) or,
   without them, every distinct topology found on nodes carrying all keys; Immediate binding without
   allowedTopologies and without ``immediate_topology`` sends no requirement at all.
4. Terms are sorted (fewer segments first, then key, then value) and consecutive duplicates removed.
5. Preferred = requisite rotated so the first term that is a subset of the selected topology leads
   (WaitForFirstConsumer), or rotated by ``(fnv1_32(base) + ordinal) mod 2**32 mod len`` for Immediate
   binding, where a claim named ``<claim>-<set>-<n>`` hashes only ``<set>`` and offsets by ``n``.

Fixes over the sidecar, each a flag in :class:`RequirementFixes`, on by default:

- ``driver_nodes_only``: aggregate topologies only from nodes whose CSINode lists this driver (the sidecar
  takes every node carrying the label keys, so a zone where no node runs the driver can be chosen).
- ``deterministic_keys``: in Immediate mode use the most common key set among the driver's CSINodes
  (ties: the lexicographically smallest sorted key tuple) instead of the keys of a random CSINode.
- ``missing_node_reschedules``: a selected node whose Node or CSINode object no longer exists asks the
  scheduler to pick again (``reschedule=True``); the sidecar keeps retrying with the vanished node.
  A CSINode that exists but does not (yet) list the driver stays a plain retry: the node plugin may be
  restarting.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from provisioner.model import Segment, TopologyRequirement

BINDING_IMMEDIATE = "Immediate"
BINDING_WFFC = "WaitForFirstConsumer"

Term = tuple[tuple[str, str], ...]
"""One topology term: (key, value) pairs sorted by key (then value); the AND of its pairs."""


@dataclass(frozen=True)
class SelectorExpression:
    """A ``TopologySelectorLabelRequirement``: one key, an OR of values."""

    key: str
    values: tuple[str, ...]


SelectorTerm = tuple[SelectorExpression, ...]
"""A ``TopologySelectorTerm``: the AND of its expressions. allowedTopologies is an OR of these."""


@dataclass(frozen=True)
class ClusterView:
    """What the cluster shows, reduced to what the decision needs.

    ``node_labels``: every Node's name → labels. ``csinode_keys``: every CSINode's name → the topology keys
    it lists for this driver, or ``None`` when the CSINode exists but does not list the driver; a node
    without a CSINode object is absent from the mapping.
    """

    node_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    csinode_keys: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)

    def driver_keys(self) -> dict[str, tuple[str, ...]]:
        """CSINodes that list this driver, with their keys (possibly empty)."""
        return {name: keys for name, keys in self.csinode_keys.items() if keys is not None}


@dataclass(frozen=True)
class RequirementFixes:
    """Each fix over the sidecar, on by default; see the module docstring."""

    driver_nodes_only: bool = True
    deterministic_keys: bool = True
    missing_node_reschedules: bool = True

    @classmethod
    def sidecar(cls) -> RequirementFixes:
        """Exactly the sidecar's behaviour."""
        return cls(driver_nodes_only=False, deterministic_keys=False, missing_node_reschedules=False)


@dataclass(frozen=True)
class ClaimTopologyInput:
    """Everything about one claim and its class the decision depends on."""

    claim_name: str
    binding_mode: str = BINDING_WFFC
    allowed_topologies: tuple[SelectorTerm, ...] = ()
    selected_node: str = ""
    strict_topology: bool = False
    immediate_topology: bool = True


@dataclass
class Explanation:
    """Why the decision came out as it did; rendered by ``zonal explain`` and logged by the loop."""

    steps: list[str] = field(default_factory=list)
    topology_keys: tuple[str, ...] = ()
    selected_topology: Term = ()
    requisite: tuple[Term, ...] = ()
    preferred: tuple[Term, ...] = ()
    rotation: int = 0

    def note(self, text: str) -> None:
        self.steps.append(text)


@dataclass(frozen=True)
class Decision:
    """The outcome: a requirement (``None`` = send no accessibility requirements) and its explanation."""

    requirement: TopologyRequirement | None
    explanation: Explanation


class TopologyUnavailable(Exception):
    """No requirement can be built now. ``reschedule`` asks the scheduler to choose another node;
    otherwise the claim is retried with backoff. ``explanation`` holds the steps up to the failure."""

    def __init__(self, message: str, explanation: Explanation, *, reschedule: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.explanation = explanation
        self.reschedule = reschedule

    def __str__(self) -> str:
        return self.message


# --- terms ---------------------------------------------------------------------------------------------


def make_term(pairs: Mapping[str, str] | Sequence[tuple[str, str]]) -> Term:
    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
    return tuple(sorted(items))


def term_sort_key(term: Term) -> tuple[int, Term]:
    """The sidecar's order: fewer segments first, then pairwise by key, then by value."""
    return (len(term), term)


def is_subset(small: Term, big: Term) -> bool:
    """Every (key, value) of ``small`` appears in ``big`` (both sorted); the empty term is a subset of all."""
    return set(small) <= set(big)


def term_from_labels(labels: Mapping[str, str], keys: Sequence[str]) -> Term | None:
    """The term a node with ``labels`` has for ``keys``, or ``None`` when a key is missing."""
    if any(k not in labels for k in keys):
        return None
    return make_term([(k, labels[k]) for k in keys])


def flatten(allowed: Sequence[SelectorTerm]) -> list[Term]:
    """allowedTopologies → OR of terms: each selector term's expressions distributed as a cross product.

    Reproduces the sidecar exactly, including its quirk: an expression with no values yields no terms,
    and the next expression then starts afresh as if it were the first.
    """
    final: list[Term] = []
    for selector_term in allowed:  # OR
        old: list[list[tuple[str, str]]] = []
        for expr in selector_term:  # AND
            new: list[list[tuple[str, str]]] = []
            for value in expr.values:  # OR
                if not old:
                    new.append([(expr.key, value)])
                else:
                    new.extend([*prev, (expr.key, value)] for prev in old)
            old = new
        final.extend(make_term(t) for t in old)
    return final


def sort_dedupe(terms: Sequence[Term]) -> tuple[Term, ...]:
    ordered = sorted(terms, key=term_sort_key)
    out: list[Term] = []
    for t in ordered:
        if not out or out[-1] != t:
            out.append(t)
    return tuple(out)


# --- the StatefulSet spreading hash ------------------------------------------------------------------------


def fnv1_32(data: bytes) -> int:
    """FNV-1 (multiply, then xor), 32 bits: Go's ``hash/fnv.New32``."""
    h = 0x811C9DC5
    for b in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= b
    return h


def _parse_uint32(text: str) -> int | None:
    """Go's ``strconv.ParseUint(text, 10, 32)``: ASCII digits only, no sign, must fit in 32 bits."""
    if not text or not all("0" <= c <= "9" for c in text):
        return None
    value = int(text)
    return value if value <= 0xFFFFFFFF else None


def claim_name_hash(claim_name: str, rng: random.Random | None = None) -> tuple[int, int]:
    """(hash, ordinal offset) for a claim name, as the in-tree ``getPVCNameHashAndIndexOffset`` does.

    ``data-web-2`` → hash of ``web``, offset 2, so ``data-web-0/1/2`` walk the zones round-robin while
    ``data-web-1`` and ``logs-web-1`` (two claims of one replica) land together.
    """
    if not claim_name:
        return (rng or random.Random()).getrandbits(32), 0
    hashed = claim_name
    index = 0
    dash = claim_name.rfind("-")
    if dash != -1:
        ordinal = _parse_uint32(claim_name[dash + 1 :])
        if ordinal is not None:
            index = ordinal
            hashed = claim_name[:dash]
            inner = hashed.rfind("-")
            if inner != -1:
                hashed = hashed[inner + 1 :]
    return fnv1_32(hashed.encode()), index


def rotation_for_claim(claim_name: str, count: int, rng: random.Random | None = None) -> int:
    h, index = claim_name_hash(claim_name, rng)
    return ((h + index) & 0xFFFFFFFF) % count


# --- the decision ------------------------------------------------------------------------------------------


def _keys_for_immediate(
    cluster: ClusterView, fixes: RequirementFixes, rng: random.Random, why: Explanation
) -> tuple[str, ...]:
    candidates = [(name, keys) for name, keys in cluster.driver_keys().items() if keys]
    if not candidates:
        return ()
    if fixes.deterministic_keys:
        counts = Counter(tuple(sorted(keys)) for _, keys in candidates)
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        why.note(
            f"keys {list(best)}: the most common key set among {len(candidates)} CSINode(s) of the driver"
        )
        return best
    shuffled = sorted(candidates)
    rng.shuffle(shuffled)
    name, keys = shuffled[0]
    why.note(f"keys {list(keys)}: from CSINode {name} (picked at random, as the sidecar does)")
    return keys


def _aggregate(
    keys: Sequence[str], cluster: ClusterView, fixes: RequirementFixes, why: Explanation
) -> list[Term]:
    driver_nodes = cluster.driver_keys()
    terms: list[Term] = []
    for name, labels in sorted(cluster.node_labels.items()):
        if fixes.driver_nodes_only and name not in driver_nodes:
            continue
        term = term_from_labels(labels, keys)
        if term:
            terms.append(term)
    source = "nodes whose CSINode lists the driver" if fixes.driver_nodes_only else "all nodes with the keys"
    why.note(f"aggregated {len(terms)} node topologies from {source}")
    return terms


def _selected_node_topology(
    inp: ClaimTopologyInput, cluster: ClusterView, fixes: RequirementFixes, why: Explanation
) -> tuple[tuple[str, ...], Term]:
    node = inp.selected_node
    if node not in cluster.csinode_keys:
        # Sidecar: the CSINode lookup fails and provisioning is retried.
        raise TopologyUnavailable(
            f"CSINode {node} of the selected node does not exist",
            why,
            reschedule=fixes.missing_node_reschedules,
        )
    keys = cluster.csinode_keys[node] or ()
    if not keys:
        raise TopologyUnavailable(f"no topology key found for node {node}", why)
    why.topology_keys = tuple(keys)
    why.note(f"keys {list(keys)}: from the CSINode of selected node {node}")
    labels = cluster.node_labels.get(node)
    if labels is None:
        raise TopologyUnavailable(
            f"selected node {node} does not exist", why, reschedule=fixes.missing_node_reschedules
        )
    term = term_from_labels(labels, keys)
    if term is None:
        raise TopologyUnavailable(
            f"topology labels from selected node {node} ({dict(labels)}) do not match "
            f"topology keys from CSINode {list(keys)}",
            why,
        )
    why.selected_topology = term
    why.note(f"selected node {node} is in {dict(term)}")
    return tuple(keys), term


def accessibility_requirements(
    inp: ClaimTopologyInput,
    cluster: ClusterView,
    fixes: RequirementFixes | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """The TopologyRequirement for one claim (``None`` = none), or raise :class:`TopologyUnavailable`."""
    fixes = fixes or RequirementFixes()
    rng = rng or random.Random()
    why = Explanation()
    if inp.binding_mode == BINDING_WFFC and not inp.selected_node:
        raise TopologyUnavailable("waiting for the scheduler to select a node", why)

    keys: tuple[str, ...] = ()
    selected: Term = ()
    requisite: list[Term] = []
    if inp.selected_node:
        keys, selected = _selected_node_topology(inp, cluster, fixes, why)
        if inp.strict_topology:
            if inp.allowed_topologies:
                allowed = flatten(inp.allowed_topologies)
                if not any(is_subset(t, selected) for t in allowed):
                    raise TopologyUnavailable(
                        f"selected node {inp.selected_node} topology {dict(selected)} is not in allowed "
                        f"topologies {[dict(t) for t in allowed]}",
                        why,
                    )
            why.note("strict topology: only the selected node's topology is requisite")
            requisite = [selected]

    if not requisite:
        if inp.allowed_topologies:
            requisite = flatten(inp.allowed_topologies)
            why.note(f"requisite from the class's allowedTopologies: {len(requisite)} term(s)")
        else:
            if not inp.selected_node and not inp.immediate_topology:
                why.note("Immediate binding, no allowedTopologies, immediate-topology off: no requirement")
                return Decision(None, why)
            if not inp.selected_node:
                keys = _keys_for_immediate(cluster, fixes, rng, why)
                why.topology_keys = keys
                if not keys:
                    why.note("no CSINode lists topology keys for the driver")
            if keys:
                requisite = _aggregate(keys, cluster, fixes, why)
                if not requisite and inp.selected_node:
                    raise TopologyUnavailable(f"topology keys {list(keys)} were not found on any node", why)
            if not requisite:
                # CSI: the driver has registered on no node yet; wait until one can take the volume.
                raise TopologyUnavailable("no available topology found", why)

    if not requisite:
        why.note("allowedTopologies has only empty terms: no requirement")
        return Decision(None, why)

    ordered = sort_dedupe(requisite)
    why.requisite = ordered
    if not inp.selected_node:
        h, offset = claim_name_hash(inp.claim_name, rng)
        i = ((h + offset) & 0xFFFFFFFF) % len(ordered)
        why.rotation = i
        why.note(f"preferred rotated by {i}: fnv1({h:#010x}) + ordinal {offset} mod {len(ordered)}")
        preferred = ordered[i:] + ordered[:i]
    elif inp.strict_topology:
        preferred = ordered
    else:
        first = next((i for i, t in enumerate(ordered) if is_subset(t, selected)), None)
        if first is None:
            raise TopologyUnavailable(
                f"topology {dict(selected)} of selected node {inp.selected_node} is not in requisite "
                f"{[dict(t) for t in ordered]}",
                why,
            )
        why.rotation = first
        why.note(f"preferred starts with the selected node's topology (rotated by {first})")
        preferred = ordered[first:] + ordered[:first]
    why.preferred = preferred
    return Decision(TopologyRequirement(_segments(ordered), _segments(preferred)), why)


def _segments(terms: Sequence[Term]) -> tuple[Segment, ...]:
    return tuple(dict(t) for t in terms if t)


def selector_terms_from_k8s(allowed: Sequence[Mapping[str, object]] | None) -> tuple[SelectorTerm, ...]:
    """StorageClass ``allowedTopologies`` (API JSON) → selector terms."""
    out: list[SelectorTerm] = []
    for term in allowed or ():
        exprs = term.get("matchLabelExpressions") or []
        assert isinstance(exprs, list)
        out.append(
            tuple(
                SelectorExpression(str(e.get("key", "")), tuple(str(v) for v in e.get("values") or ()))
                for e in exprs
            )
        )
    return tuple(out)
