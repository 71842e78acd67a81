"""The accessibility-requirements decision as a pure table: sidecar cases, spreading, and each fix."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from provisioner.model import TopologyRequirement
from provisioner.topology.requirements import (
    BINDING_IMMEDIATE,
    BINDING_WFFC,
    ClaimTopologyInput,
    ClusterView,
    RequirementFixes,
    SelectorExpression,
    TopologyUnavailable,
    accessibility_requirements,
    claim_name_hash,
    flatten,
    fnv1_32,
    make_term,
    selector_terms_from_k8s,
    sort_dedupe,
)

Z = "topology.kubernetes.io/zone"
E = "topology.ebs.csi.aws.com/zone"
R = "topology.kubernetes.io/region"
SIDECAR = RequirementFixes.sidecar()


def three_zones(keys: tuple[str, ...] = (Z,)) -> ClusterView:
    labels = {f"n{i}": {k: f"us-east-1{z}" for k in keys} for i, z in enumerate("abc")}
    return ClusterView(node_labels=labels, csinode_keys={n: keys for n in labels})


def zones(segments: tuple[Mapping[str, str], ...], key: str = Z) -> list[str]:
    return [s[key] for s in segments]


def allowed(*values: str, key: str = Z) -> tuple[tuple[SelectorExpression, ...], ...]:
    return ((SelectorExpression(key, values),),)


def decide(
    cluster: ClusterView,
    fixes: RequirementFixes | None = None,
    seed: int = 0,
    **kw: object,
) -> TopologyRequirement | None:
    inp = ClaimTopologyInput(**kw)  # type: ignore[arg-type]
    return accessibility_requirements(inp, cluster, fixes, random.Random(seed)).requirement


# --- building blocks -----------------------------------------------------------------------------------


def test_fnv1_matches_go_hash_fnv_new32() -> None:
    assert fnv1_32(b"") == 0x811C9DC5
    assert fnv1_32(b"a") == 0x050C5D7E  # FNV-1, not FNV-1a (0xe40c292c)
    assert fnv1_32(b"foobar") == 0x31F0B262


@pytest.mark.parametrize(
    ("name", "hashed", "index"),
    [
        ("data-web-2", "web", 2),
        ("web-7", "web", 7),
        ("logs-my-set-007", "set", 7),
        ("plain", "plain", 0),
        ("claim-x1", "claim-x1", 0),
        ("claim--3", "", 3),
        ("claim-+3", "claim-+3", 0),
        ("claim-4294967296", "claim-4294967296", 0),
        ("claim-4294967295", "claim", 4294967295),
    ],
)
def test_claim_name_hash_follows_the_in_tree_rule(name: str, hashed: str, index: int) -> None:
    assert claim_name_hash(name) == (fnv1_32(hashed.encode()), index)


def test_flatten_is_a_cross_product_per_term() -> None:
    terms = flatten(
        (
            (SelectorExpression(Z, ("z1", "z2")), SelectorExpression("rack", ("rA", "rB"))),
            (SelectorExpression(Z, ("z9",)),),
        )
    )
    assert terms == [
        make_term({Z: "z1", "rack": "rA"}),
        make_term({Z: "z2", "rack": "rA"}),
        make_term({Z: "z1", "rack": "rB"}),
        make_term({Z: "z2", "rack": "rB"}),
        make_term({Z: "z9"}),
    ]


def test_flatten_keeps_the_sidecar_quirk_for_an_empty_value_list() -> None:
    terms = flatten(((SelectorExpression(Z, ()), SelectorExpression("rack", ("rA",))),))
    assert terms == [make_term({"rack": "rA"})]


def test_sort_puts_shorter_terms_first_then_key_then_value_and_dedupes() -> None:
    a = make_term({Z: "b"})
    b = make_term({Z: "a", "rack": "1"})
    c = make_term({Z: "a"})
    assert sort_dedupe([a, b, c, a]) == (c, a, b)


def test_selector_terms_from_api_json() -> None:
    api = [{"matchLabelExpressions": [{"key": Z, "values": ["a", "b"]}]}, {}]
    assert selector_terms_from_k8s(api) == ((SelectorExpression(Z, ("a", "b")),), ())


# --- CSI spec examples -----------------------------------------------------------------------------------


def test_csi_spec_example_requisite_and_preferred_with_selected_node() -> None:
    # CSI spec: requisite {R1,Z2},{R1,Z3}; the volume should preferably be in the selected node's Z3.
    labels = {"a": {R: "R1", Z: "Z2"}, "b": {R: "R1", Z: "Z3"}}
    cluster = ClusterView(labels, {"a": (R, Z), "b": (R, Z)})
    classes = ((SelectorExpression(R, ("R1",)), SelectorExpression(Z, ("Z2", "Z3"))),)
    req = decide(cluster, claim_name="c", selected_node="b", allowed_topologies=classes)
    assert req == TopologyRequirement(
        requisite=({R: "R1", Z: "Z2"}, {R: "R1", Z: "Z3"}),
        preferred=({R: "R1", Z: "Z3"}, {R: "R1", Z: "Z2"}),
    )


def test_csi_spec_example_strict_sends_only_the_selected_segment() -> None:
    labels = {"a": {R: "R1", Z: "Z2"}, "b": {R: "R1", Z: "Z3"}}
    cluster = ClusterView(labels, {"a": (R, Z), "b": (R, Z)})
    req = decide(cluster, claim_name="c", selected_node="b", strict_topology=True)
    assert req == TopologyRequirement(requisite=({R: "R1", Z: "Z3"},), preferred=({R: "R1", Z: "Z3"},))


# --- the sidecar decision table: binding mode x strict x allowedTopologies x immediate-topology ---------

CASES = [
    # (binding, strict, allowed, immediate, expected requisite zones, expected first preferred)
    (BINDING_WFFC, False, False, True, ["us-east-1a", "us-east-1b", "us-east-1c"], "us-east-1b"),
    (BINDING_WFFC, False, False, False, ["us-east-1a", "us-east-1b", "us-east-1c"], "us-east-1b"),
    (BINDING_WFFC, False, True, True, ["us-east-1b", "us-east-1c"], "us-east-1b"),
    (BINDING_WFFC, False, True, False, ["us-east-1b", "us-east-1c"], "us-east-1b"),
    (BINDING_WFFC, True, False, True, ["us-east-1b"], "us-east-1b"),
    (BINDING_WFFC, True, False, False, ["us-east-1b"], "us-east-1b"),
    (BINDING_WFFC, True, True, True, ["us-east-1b"], "us-east-1b"),
    (BINDING_WFFC, True, True, False, ["us-east-1b"], "us-east-1b"),
    (BINDING_IMMEDIATE, False, False, True, ["us-east-1a", "us-east-1b", "us-east-1c"], None),
    (BINDING_IMMEDIATE, False, False, False, None, None),
    (BINDING_IMMEDIATE, False, True, True, ["us-east-1b", "us-east-1c"], None),
    (BINDING_IMMEDIATE, False, True, False, ["us-east-1b", "us-east-1c"], None),
    (BINDING_IMMEDIATE, True, False, True, ["us-east-1a", "us-east-1b", "us-east-1c"], None),
    (BINDING_IMMEDIATE, True, False, False, None, None),
    (BINDING_IMMEDIATE, True, True, True, ["us-east-1b", "us-east-1c"], None),
    (BINDING_IMMEDIATE, True, True, False, ["us-east-1b", "us-east-1c"], None),
]


@pytest.mark.parametrize(("binding", "strict", "with_allowed", "immediate", "requisite", "first"), CASES)
@pytest.mark.parametrize("fixes", [RequirementFixes(), SIDECAR], ids=["fixes", "sidecar"])
def test_decision_table(
    binding: str,
    strict: bool,
    with_allowed: bool,
    immediate: bool,
    requisite: list[str] | None,
    first: str | None,
    fixes: RequirementFixes,
) -> None:
    req = decide(
        three_zones(),
        fixes,
        claim_name="data-web-0",
        binding_mode=binding,
        selected_node="n1" if binding == BINDING_WFFC else "",
        strict_topology=strict,
        immediate_topology=immediate,
        allowed_topologies=allowed("us-east-1c", "us-east-1b") if with_allowed else (),
    )
    if requisite is None:
        assert req is None
        return
    assert req is not None
    assert zones(req.requisite) == requisite
    assert sorted(zones(req.preferred)) == sorted(requisite)
    if first is not None:
        assert zones(req.preferred)[0] == first
    else:  # Immediate: rotated by the claim-name hash
        h, index = claim_name_hash("data-web-0")
        i = (h + index) % len(requisite)
        assert zones(req.preferred) == requisite[i:] + requisite[:i]


def test_wffc_without_selected_node_waits() -> None:
    with pytest.raises(TopologyUnavailable, match="waiting"):
        decide(three_zones(), claim_name="c", binding_mode=BINDING_WFFC)


def test_strict_selected_node_outside_allowed_topologies_is_an_error() -> None:
    with pytest.raises(TopologyUnavailable, match="not in allowed topologies") as e:
        decide(
            three_zones(),
            claim_name="c",
            selected_node="n0",
            strict_topology=True,
            allowed_topologies=allowed("us-east-1b"),
        )
    assert not e.value.reschedule


def test_selected_node_outside_allowed_topologies_is_an_error_without_strict() -> None:
    with pytest.raises(TopologyUnavailable, match="not in requisite"):
        decide(three_zones(), claim_name="c", selected_node="n0", allowed_topologies=allowed("us-east-1b"))


def test_allowed_topologies_with_only_empty_terms_sends_nothing() -> None:
    assert decide(three_zones(), claim_name="c", selected_node="n0", allowed_topologies=((),)) is None


# --- StatefulSet spreading -----------------------------------------------------------------------------


def test_statefulset_replicas_spread_round_robin_over_three_zones() -> None:
    firsts = []
    for ordinal in range(6):
        req = decide(three_zones(), claim_name=f"data-x-{ordinal}", binding_mode=BINDING_IMMEDIATE)
        assert req is not None
        firsts.append(zones(req.preferred)[0])
    assert sorted(firsts[:3]) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert firsts[3:] == firsts[:3]


def test_two_claims_of_one_replica_land_together() -> None:
    a = decide(three_zones(), claim_name="data-web-1", binding_mode=BINDING_IMMEDIATE)
    b = decide(three_zones(), claim_name="logs-web-1", binding_mode=BINDING_IMMEDIATE)
    assert a is not None and b is not None
    assert a.preferred == b.preferred


# --- subset and heterogeneous keys -----------------------------------------------------------------------


def test_allowed_topologies_may_use_fewer_keys_than_the_driver() -> None:
    cluster = three_zones(keys=(Z, E))
    req = decide(
        cluster, claim_name="c", selected_node="n2", allowed_topologies=allowed("us-east-1a", "us-east-1c")
    )
    assert req == TopologyRequirement(
        requisite=({Z: "us-east-1a"}, {Z: "us-east-1c"}), preferred=({Z: "us-east-1c"}, {Z: "us-east-1a"})
    )


def test_heterogeneous_keys_aggregate_with_the_selected_nodes_keys() -> None:
    labels = {
        "old": {Z: "us-east-1a"},
        "new": {Z: "us-east-1b", E: "us-east-1b"},
        "new2": {Z: "us-east-1c", E: "us-east-1c"},
    }
    cluster = ClusterView(labels, {"old": (Z,), "new": (Z, E), "new2": (Z, E)})
    req = decide(cluster, claim_name="c", selected_node="new")
    assert req is not None
    assert [dict(s) for s in req.requisite] == [
        {E: "us-east-1b", Z: "us-east-1b"},
        {E: "us-east-1c", Z: "us-east-1c"},
    ]
    req_old = decide(cluster, claim_name="c", selected_node="old")
    assert req_old is not None
    assert zones(req_old.requisite) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert zones(req_old.preferred)[0] == "us-east-1a"


# --- errors a retry or a reschedule fixes ---------------------------------------------------------------


def test_csinode_without_the_driver_retries() -> None:
    cluster = ClusterView({"n0": {Z: "a"}}, {"n0": None})
    with pytest.raises(TopologyUnavailable, match="no topology key") as e:
        decide(cluster, claim_name="c", selected_node="n0")
    assert not e.value.reschedule


def test_node_missing_a_key_label_retries() -> None:
    cluster = ClusterView({"n0": {}}, {"n0": (Z,)})
    with pytest.raises(TopologyUnavailable, match="do not match"):
        decide(cluster, claim_name="c", selected_node="n0")


def test_immediate_with_no_registered_driver_retries() -> None:
    cluster = ClusterView({"n0": {Z: "a"}}, {})
    with pytest.raises(TopologyUnavailable, match="no available topology"):
        decide(cluster, claim_name="c", binding_mode=BINDING_IMMEDIATE)


# --- fix: aggregate only from nodes that run the driver --------------------------------------------------


def driverless_zone() -> ClusterView:
    labels = {"n0": {Z: "us-east-1a"}, "n1": {Z: "us-east-1b"}, "gpu": {Z: "us-east-1d"}}
    return ClusterView(labels, {"n0": (Z,), "n1": (Z,), "gpu": None})


def test_fix_driver_nodes_only_on() -> None:
    req = decide(driverless_zone(), claim_name="c", selected_node="n1")
    assert req is not None and zones(req.requisite) == ["us-east-1a", "us-east-1b"]


def test_fix_driver_nodes_only_off_reproduces_the_sidecar() -> None:
    req = decide(driverless_zone(), SIDECAR, claim_name="c", selected_node="n1")
    assert req is not None and zones(req.requisite) == ["us-east-1a", "us-east-1b", "us-east-1d"]


# --- fix: deterministic Immediate keys -------------------------------------------------------------------


def mixed_keys() -> ClusterView:
    labels = {f"n{i}": {Z: f"z{i}", E: f"z{i}"} for i in range(4)}
    keys: dict[str, tuple[str, ...] | None] = {"n0": (Z,), "n1": (Z, E), "n2": (Z, E), "n3": (E, Z)}
    return ClusterView(labels, keys)


def test_fix_deterministic_keys_on_picks_the_most_common_key_set() -> None:
    for seed in range(10):
        req = decide(mixed_keys(), seed=seed, claim_name="c", binding_mode=BINDING_IMMEDIATE)
        assert req is not None
        assert all(set(s) == {Z, E} for s in req.requisite)


def test_fix_deterministic_keys_off_depends_on_a_random_node() -> None:
    shapes = set()
    for seed in range(30):
        req = decide(mixed_keys(), SIDECAR, seed=seed, claim_name="c", binding_mode=BINDING_IMMEDIATE)
        assert req is not None
        shapes.add(frozenset(req.requisite[0]))
    assert shapes == {frozenset({Z}), frozenset({Z, E})}


# --- fix: a vanished selected node reschedules -----------------------------------------------------------


@pytest.mark.parametrize("gone", ["node", "csinode"])
def test_fix_missing_selected_node_reschedules(gone: str) -> None:
    cluster = three_zones()
    labels = {k: v for k, v in cluster.node_labels.items() if not (gone == "node" and k == "n1")}
    keys = {k: v for k, v in cluster.csinode_keys.items() if not (gone == "csinode" and k == "n1")}
    for fixes, reschedule in ((RequirementFixes(), True), (SIDECAR, False)):
        with pytest.raises(TopologyUnavailable, match="does not exist") as e:
            decide(ClusterView(labels, keys), fixes, claim_name="c", selected_node="n1")
        assert e.value.reschedule is reschedule


def test_explanation_records_each_step() -> None:
    inp = ClaimTopologyInput(claim_name="data-x-1", binding_mode=BINDING_IMMEDIATE)
    decision = accessibility_requirements(inp, three_zones())
    why = decision.explanation
    assert why.topology_keys == (Z,)
    assert len(why.requisite) == 3
    assert why.preferred[0] == why.requisite[why.rotation]
    assert any("most common key set" in s for s in why.steps)
