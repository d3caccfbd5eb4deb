"""The tree of limits: validation, rows, room per slot, and the per-phase violation check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from charger.protocols.limit_tree import Evse, LimitNode, LimitTree, LimitTreeError, Violation
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocols.energy_helpers import breaches, trees


def _site() -> LimitTree:
    """grid (power 30 kW) -> tx (63 A) -> feeder-a (32 A), feeder-b (25, 16, 25 A)."""
    nodes = [
        LimitNode(name="grid", power_limit_kw=30.0),
        LimitNode(name="tx", parent="grid", current_limit_a=63.0),
        LimitNode(name="feeder-a", parent="tx", current_limit_a=32.0),
        LimitNode(name="feeder-b", parent="tx", current_limit_a=(25.0, 16.0, 25.0)),
    ]
    evses = [
        Evse(name="a1", parent="feeder-a", max_current_a=32.0),
        Evse(name="a2", parent="feeder-a", max_current_a=16.0),
        Evse(name="b1", parent="feeder-b", phases=1, grid_phase="L2"),
        Evse(name="b2", parent="feeder-b", phases=1, grid_phase="L2"),
        Evse(name="b3", parent="feeder-b", phases=1, grid_phase="L3"),
    ]
    return LimitTree(nodes, evses)


def test_ancestors_and_members() -> None:
    tree = _site()
    assert tree.root == "grid"
    assert tree.ancestors("b1") == ("feeder-b", "tx", "grid")
    assert tree.ancestors("feeder-a") == ("tx", "grid")
    assert tree.ancestors("grid") == ()
    assert tree.evses_under("feeder-b") == ("b1", "b2", "b3")
    assert tree.evses_under("grid") == ("a1", "a2", "b1", "b2", "b3")
    with pytest.raises(KeyError):
        tree.ancestors("nowhere")


def test_rows_follow_the_phases_each_evse_loads() -> None:
    tree = _site()
    rows = tree.rows
    labels = list(rows.phase_rows)
    assert ("feeder-b", 0) not in labels  # nothing below feeder-b loads L1
    assert ("feeder-b", 1) in labels and ("feeder-b", 2) in labels
    amps = np.array([10.0, 5.0, 7.0, 3.0, 2.0])
    loads = dict(zip(labels, rows.phase_matrix @ amps, strict=True))
    assert loads[("tx", 0)] == 15.0  # a1 + a2 (three-phase)
    assert loads[("tx", 1)] == 25.0  # a1 + a2 + b1 + b2
    assert loads[("tx", 2)] == 17.0  # a1 + a2 + b3
    assert loads[("feeder-b", 1)] == 10.0
    power = dict(zip(rows.power_rows, rows.power_matrix @ amps, strict=True))
    assert power["feeder-b"] == pytest.approx(12 * 0.23)
    assert power["grid"] == pytest.approx(15 * 0.69 + 12 * 0.23)
    # each EVSE's rows, nearest node first
    assert [rows.phase_rows[r] for r in rows.evse_phase_rows[2]] == [("feeder-b", 1), ("tx", 1), ("grid", 1)]
    assert [rows.power_rows[r] for r in rows.evse_power_rows[0]] == ["feeder-a", "tx", "grid"]


def test_room_takes_off_non_ev_load_and_external_caps() -> None:
    tree = _site()
    room_a, room_kw = tree.room(
        2,
        non_ev_load_a={"feeder-a": (10.0, 0.0, -5.0), "tx": [(5.0, 5.0, 5.0), (20.0, 0.0, 0.0)]},
        caps_a={"feeder-b": [20.0, 10.0]},
        caps_kw={"grid": 25.0},
    )
    row = {label: r for r, label in enumerate(tree.rows.phase_rows)}
    assert list(room_a[row[("feeder-a", 0)]]) == [22.0, 22.0]
    assert list(room_a[row[("feeder-a", 2)]]) == [32.0, 32.0]  # generation never makes room
    # tx carries its own reading or feeder-a's, whichever is more, phase by phase
    assert list(room_a[row[("tx", 0)]]) == [53.0, 43.0]
    assert list(room_a[row[("tx", 1)]]) == [58.0, 63.0]
    assert list(room_a[row[("feeder-b", 1)]]) == [16.0, 10.0]  # the cap lowers the 16 A fuse only in slot 1
    grid = tree.rows.power_rows.index("grid")
    assert room_kw[grid, 0] == pytest.approx(25.0 - (10 + 5 + 5) * 0.23)
    assert room_kw[grid, 1] == pytest.approx(25.0 - 20 * 0.23)
    # rows without a limit get the sum of their EVSEs' maxima: finite, never binding
    assert room_a[row[("grid", 0)], 0] == 48.0


def test_room_never_negative() -> None:
    room_a, room_kw = _site().room(1, non_ev_load_a={"tx": (100.0, 100.0, 100.0)})
    assert (room_a >= 0).all() and (room_kw >= 0).all()
    assert room_a.min() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"non_ev_load_a": {"nowhere": (1, 1, 1)}}, "unknown nodes: nowhere"),
        ({"caps_a": {"nowhere": 1.0}}, "caps_a given for unknown nodes"),
        ({"non_ev_load_a": {"tx": (1, 2)}}, "expected (L1, L2, L3)"),
        ({"caps_kw": {"tx": [1.0, 2.0, 3.0]}}, "expected a number or 2 per-slot"),
        ({"caps_a": {"tx": math.nan}}, "NaN"),
    ],
)
def test_room_rejects_bad_inputs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        _site().room(2, **kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_violations_per_phase() -> None:
    tree = _site()
    # two single-phase EVSEs on L2 share feeder-b's 16 A L2 fuse; the one on L3 has its own 25 A
    assert tree.violations({"b1": 8.0, "b2": 8.0, "b3": 25.0}) == []
    found = tree.violations({"b1": 10.0, "b2": 8.0})
    assert found == [Violation(where="feeder-b", phase="L2", load=18.0, limit=16.0)]
    assert str(found[0]) == "feeder-b L2: 18.000 A over 16.000 A"


def test_violations_with_non_ev_load_caps_and_power() -> None:
    tree = _site()
    assert tree.violations({"a1": 20.0}) == []
    assert [v.where for v in tree.violations({"a1": 20.0}, non_ev_load_a={"feeder-a": (13.0, 0, 0)})] == ["feeder-a"]
    assert [v.phase for v in tree.violations({"a1": 20.0}, caps_kw={"feeder-a": 10.0})] == ["power"]
    assert [v.where for v in tree.violations({"a1": 20.0}, caps_a={"tx": 19.0})] == ["tx", "tx", "tx"]
    # every fuse holds, but 32 A three-phase (22.1 kW) + 41 A single-phase (9.4 kW) is over the grid's 30 kW
    heavy = {"a1": 20.0, "a2": 12.0, "b1": 8.0, "b2": 8.0, "b3": 25.0}
    assert [(v.where, v.phase) for v in tree.violations(heavy)] == [("grid", "power")]


def test_violations_of_an_evse_range() -> None:
    tree = _site()
    found = tree.violations({"a1": 3.0, "a2": 17.0, "b1": math.nan})
    assert [(v.where, v.phase) for v in found] == [("a1", "range"), ("a2", "range"), ("b1", "range")]
    assert tree.violations({"a1": 0.0, "a2": 6.0}) == []
    with pytest.raises(ValueError, match="unknown EVSEs: zz"):
        tree.violations({"zz": 1.0})


def _problems(nodes: list[LimitNode], evses: list[Evse]) -> tuple[str, ...]:
    with pytest.raises(LimitTreeError) as caught:
        LimitTree(nodes, evses)
    return caught.value.problems


def test_structure_errors_are_all_reported() -> None:
    problems = _problems(
        [
            LimitNode(name="grid"),
            LimitNode(name="a", parent="b"),
            LimitNode(name="b", parent="a"),
            LimitNode(name="c", parent="ghost"),
            LimitNode(name="grid", parent=None),
        ],
        [Evse(name="e1", parent="nowhere"), Evse(name="e2", parent="e1"), Evse(name="a", parent="grid")],
    )
    text = "\n".join(problems)
    assert "name 'grid' is used more than once" in text
    assert "name 'a' is used more than once" in text
    assert "exactly one root" in text
    assert "cycle of nodes: a -> b -> a" in text
    assert "node 'c': parent 'ghost' is unknown" in text
    assert "EVSE 'e1': parent 'nowhere' is unknown" in text
    assert "EVSE 'e2': parent 'e1' is an EVSE" in text


def test_a_tree_needs_a_root() -> None:
    problems = _problems([LimitNode(name="x", parent="y"), LimitNode(name="y", parent="x")], [])
    assert any("exactly one root" in p for p in problems)
    assert any("cycle of nodes" in p for p in problems)


def test_a_self_loop_is_a_cycle() -> None:
    problems = _problems([LimitNode(name="grid"), LimitNode(name="x", parent="x")], [])
    assert problems == ("cycle of nodes: x -> x",)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LimitNode(name="n", current_limit_a=-1.0), "current_limit_a must be a number >= 0"),
        (lambda: LimitNode(name="n", current_limit_a=(10.0, -1.0, 10.0)), "current_limit_a L2"),
        (lambda: LimitNode(name="n", current_limit_a=(10.0, 10.0)), "needs 3 phases"),  # type: ignore[arg-type]
        (lambda: LimitNode(name="n", power_limit_kw=math.nan), "power_limit_kw"),
        (lambda: LimitNode(name="n", voltage_v=0.0), "voltage_v must be > 0"),
        (lambda: LimitNode(name=""), "non-empty string"),
        (lambda: Evse(name="e", parent="n", min_current_a=10.0, max_current_a=6.0), "above max_current_a"),
        (lambda: Evse(name="e", parent="n", min_current_a=-1.0), "min_current_a must be >= 0"),
        (lambda: Evse(name="e", parent="n", max_current_a=0.0), "max_current_a must be > 0"),
        (lambda: Evse(name="e", parent="n", phases=2), "phases must be 1 or 3"),  # type: ignore[arg-type]
        (lambda: Evse(name="e", parent="n", grid_phase="L4"), "grid_phase"),  # type: ignore[arg-type]
        (lambda: Evse(name="e", parent="n", max_current_a=True), "max_current_a"),
    ],
)
def test_bad_fields(make: object, message: str) -> None:
    with pytest.raises(LimitTreeError) as caught:
        make()  # type: ignore[operator]
    assert message in str(caught.value)


def test_unlimited_and_infinite_limits_are_allowed() -> None:
    tree = LimitTree([LimitNode(name="grid", current_limit_a=math.inf)], [Evse(name="e", parent="grid")])
    assert tree.violations({"e": 32.0}) == []
    assert tree.nodes["grid"].phase_limits_a == (math.inf, math.inf, math.inf)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_violations_agree_with_walking_the_parents(data: st.DataObject) -> None:
    tree = data.draw(trees())
    amps = {e.name: data.draw(st.sampled_from([0.0, e.min_current_a, e.max_current_a, 3.3])) for e in tree.evses}
    non_ev = {
        name: data.draw(st.tuples(*[st.sampled_from([-5.0, 0.0, 7.5, 30.0])] * 3))
        for name in data.draw(st.lists(st.sampled_from(sorted(tree.nodes)), unique=True, max_size=2))
    }
    caps = dict.fromkeys(data.draw(st.lists(st.sampled_from(sorted(tree.nodes)), unique=True, max_size=1)), 20.0)
    found = {(v.where, v.phase) for v in tree.violations(amps, non_ev_load_a=non_ev, caps_a=caps)}
    expected = {tuple(b.split(":")[0].split()) for b in breaches(tree, amps, non_ev, caps)}
    assert found == expected
