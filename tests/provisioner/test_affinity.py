"""PV node affinity: shape, matching, and validation of the driver's accessible topology."""

from __future__ import annotations

from provisioner.topology.affinity import accessible_topology_problem, node_satisfies, volume_node_affinity

Z = "topology.kubernetes.io/zone"
E = "topology.ebs.csi.aws.com/zone"


def test_one_term_per_segment_one_sorted_in_expression_per_key() -> None:
    affinity = volume_node_affinity([{Z: "a", E: "a"}, {}, {Z: "b"}])
    assert affinity == {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": E, "operator": "In", "values": ["a"]},
                        {"key": Z, "operator": "In", "values": ["a"]},
                    ]
                },
                {"matchExpressions": [{"key": Z, "operator": "In", "values": ["b"]}]},
            ]
        }
    }
    assert volume_node_affinity([]) is None
    assert volume_node_affinity([{}]) is None


def test_node_satisfies_ors_terms_and_ands_expressions() -> None:
    affinity = volume_node_affinity([{Z: "a", E: "a"}, {Z: "b"}])
    assert node_satisfies(affinity, {Z: "a", E: "a", "x": "y"})
    assert not node_satisfies(affinity, {Z: "a"})
    assert node_satisfies(affinity, {Z: "b"})
    assert not node_satisfies(affinity, {})
    assert node_satisfies(None, {})


def test_other_operators_and_empty_terms() -> None:
    def aff(*exprs: dict[str, object]) -> dict[str, object]:
        return {"required": {"nodeSelectorTerms": [{"matchExpressions": list(exprs)}]}}

    assert node_satisfies(aff({"key": "k", "operator": "NotIn", "values": ["x"]}), {"k": "y"})
    assert node_satisfies(aff({"key": "k", "operator": "Exists"}), {"k": ""})
    assert node_satisfies(aff({"key": "k", "operator": "DoesNotExist"}), {})
    assert node_satisfies(aff({"key": "k", "operator": "Gt", "values": ["3"]}), {"k": "4"})
    assert not node_satisfies(aff({"key": "k", "operator": "Lt", "values": ["3"]}), {"k": "x"})
    assert not node_satisfies({"required": {"nodeSelectorTerms": [{}]}}, {"k": "v"})


def test_accessible_topology_validation() -> None:
    req = [{Z: "a"}, {Z: "b"}]
    assert accessible_topology_problem([{Z: "a"}], req, [Z]) is None
    assert accessible_topology_problem([{Z: "a", E: "a"}], req, [Z, E]) is None
    assert "no accessible" in (accessible_topology_problem([], req, [Z]) or "")
    assert "empty" in (accessible_topology_problem([{}], req, [Z]) or "")
    assert "unknown" in (accessible_topology_problem([{"rack": "1"}], req, [Z]) or "")
    assert "does not intersect" in (accessible_topology_problem([{Z: "c"}], req, [Z]) or "")
    assert accessible_topology_problem([{Z: "c"}], [], [Z]) is None
