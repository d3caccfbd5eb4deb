"""The greedy fair share: one fuse like `share_fuse`, every ancestor per phase, and the multi-slot schedule."""

from __future__ import annotations

import numpy as np
import pytest
from charger.actors.load_share import share_fuse
from charger.protocols.energy_inputs import EnergyInputs, Session, SlotArrays, prepare
from charger.protocols.greedy_share import STEP_A, SlotRoom, clip_to_rows, fair_share, greedy_schedule, round_off
from charger.protocols.limit_tree import Evse, LimitNode, LimitTree
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.protocols.energy_helpers import TOLERANCE, breaches, inputs_for, schedule_problems, trees


def _one_fuse(fuse_a: float, n: int, max_a: float = 80.0) -> LimitTree:
    evses = [Evse(name=f"c{k}", parent="fuse", max_current_a=max_a) for k in range(n)]
    return LimitTree([LimitNode(name="fuse", current_limit_a=fuse_a)], evses)


@settings(max_examples=200, deadline=None)
@given(fuse_a=st.integers(0, 400).map(lambda x: x / 2), n=st.integers(1, 12))
def test_one_fuse_gives_what_share_fuse_gives_to_connectors_in_a_transaction(fuse_a: float, n: int) -> None:
    names = [f"c{k}" for k in range(n)]
    expected = share_fuse(fuse_a, names, names)
    assume(max(expected.values()) <= 80.0)  # share_fuse knows no EVSE maximum
    assert fair_share(_one_fuse(fuse_a, n), dict.fromkeys(names, 80.0)) == expected


def test_a_full_feeder_gives_the_minimum_in_order_then_nothing() -> None:
    tree = _one_fuse(14.0, 4)
    shares = fair_share(tree, dict.fromkeys(["c0", "c1", "c2", "c3"], 32.0), order=["c3", "c1", "c0", "c2"])
    assert shares == {"c0": 0.0, "c1": 7.0, "c2": 0.0, "c3": 7.0}


def test_evses_left_out_of_the_order_follow_in_wish_order() -> None:
    tree = _one_fuse(12.0, 3)
    assert fair_share(tree, {"c0": 32.0, "c1": 32.0, "c2": 32.0}, order=["c2"]) == {"c0": 6.0, "c1": 0.0, "c2": 6.0}


def test_single_phase_evses_on_different_phases_do_not_compete() -> None:
    evses = [
        Evse(name="l1", parent="fuse", phases=1, grid_phase="L1"),
        Evse(name="l2a", parent="fuse", phases=1, grid_phase="L2"),
        Evse(name="l2b", parent="fuse", phases=1, grid_phase="L2"),
    ]
    tree = LimitTree([LimitNode(name="fuse", current_limit_a=20.0)], evses)
    assert fair_share(tree, {"l1": 32.0, "l2a": 32.0, "l2b": 32.0}) == {"l1": 20.0, "l2a": 10.0, "l2b": 10.0}


def test_every_ancestor_counts_and_a_capped_evse_leaves_room_to_others() -> None:
    nodes = [
        LimitNode(name="tx", current_limit_a=50.0),
        LimitNode(name="a", parent="tx", current_limit_a=40.0),
        LimitNode(name="b", parent="tx", current_limit_a=40.0),
    ]
    evses = [
        Evse(name="a1", parent="a", max_current_a=8.0),
        Evse(name="a2", parent="a"),
        Evse(name="b1", parent="b"),
    ]
    tree = LimitTree(nodes, evses)
    shares = fair_share(tree, {"a1": 32.0, "a2": 32.0, "b1": 32.0})
    assert shares == {"a1": 8.0, "a2": 21.0, "b1": 21.0}  # 50 A at tx: 8 + 21 + 21
    # the power of a node counts too: 11.04 kW is 16 A on three phases
    tree = LimitTree([LimitNode(name="tx", power_limit_kw=11.04)], [Evse(name="a1", parent="tx")])
    assert fair_share(tree, {"a1": 32.0}) == {"a1": 16.0}


def test_non_ev_load_and_caps_reduce_the_share() -> None:
    tree = _one_fuse(32.0, 2)
    assert fair_share(tree, {"c0": 32.0, "c1": 32.0}, non_ev_load_a={"fuse": (12.0, 0.0, 0.0)}) == {
        "c0": 10.0,
        "c1": 10.0,
    }
    assert fair_share(tree, {"c0": 32.0, "c1": 32.0}, caps_a={"fuse": 6.0}) == {"c0": 6.0, "c1": 0.0}


def test_fair_share_rejects_unknown_or_bad_wishes() -> None:
    tree = _one_fuse(32.0, 2)
    with pytest.raises(ValueError, match="unknown EVSEs: zz"):
        fair_share(tree, {"zz": 1.0})
    with pytest.raises(ValueError, match="unknown EVSEs: yy"):
        fair_share(tree, {"c0": 1.0}, order=["yy"])
    with pytest.raises(ValueError, match="finite number >= 0"):
        fair_share(tree, {"c0": -1.0})


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fair_share_never_breaks_a_fuse_and_leaves_no_one_able_to_take_more(data: st.DataObject) -> None:
    tree = data.draw(trees())
    wanted = {
        e.name: data.draw(st.sampled_from([0.0, 3.0, e.min_current_a, e.max_current_a, 100.0])) for e in tree.evses
    }
    non_ev = {tree.root: data.draw(st.tuples(*[st.sampled_from([0.0, 5.0, 40.0])] * 3))}
    shares = fair_share(tree, wanted, non_ev_load_a=non_ev)
    assert breaches(tree, shares, non_ev) == []
    for evse in tree.evses:
        cap = min(wanted[evse.name], evse.max_current_a)
        got = shares[evse.name]
        assert got <= cap + TOLERANCE
        if got > 0 and got < cap - STEP_A:
            # not at its wish: more must break some fuse above it, beyond the 0.1 A rounding of everyone
            # (in a power row a three-phase EVSE's 0.1 A is worth 0.3 A of a single-phase one)
            more = dict(shares, **{evse.name: got + 3 * STEP_A * (len(tree.evses) + 1)})
            assert breaches(tree, more, non_ev), f"{evse.name} could take more: {shares}"
        if got == 0 and cap >= max(evse.min_current_a, STEP_A):
            more = dict(shares, **{evse.name: max(evse.min_current_a, STEP_A)})
            assert breaches(tree, more, non_ev), f"{evse.name} could get its minimum: {shares}"


def _site_and_arrays(tree: LimitTree, inputs: EnergyInputs, slots: int = 6) -> SlotArrays:
    return prepare(tree, inputs, slots=slots, slot_h=0.25)


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_greedy_schedule_respects_every_limit(data: st.DataObject) -> None:
    tree = data.draw(trees())
    inputs = data.draw(inputs_for(tree, 6))
    currents = greedy_schedule(tree, _site_and_arrays(tree, inputs))
    assert schedule_problems(tree, inputs, currents, 0.25) == []


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_round_off_makes_any_plan_safe(data: st.DataObject) -> None:
    tree = data.draw(trees())
    inputs = data.draw(inputs_for(tree, 6))
    arrays = _site_and_arrays(tree, inputs)
    plan = np.array(data.draw(st.lists(st.floats(0, 60), min_size=6 * len(tree.evses), max_size=6 * len(tree.evses))))
    currents = round_off(tree, arrays, plan.reshape(len(tree.evses), 6))
    assert schedule_problems(tree, inputs, currents, 0.25) == []


def test_greedy_schedule_charges_at_once_and_stops_at_the_need() -> None:
    tree = _one_fuse(32.0, 2, max_a=16.0)
    # c0 needs 2 slots at 16 A (16 A x 3 x 230 V x 0.5 h = 5.52 kWh); c1 is there from slot 1 to 3
    inputs = EnergyInputs(
        price=[1, 1, 1, 1, 1, 1],
        sessions={"c0": Session(energy_need_kwh=5.52), "c1": Session(arrival_slot=1, departure_slot=3)},
    )
    currents = greedy_schedule(tree, _site_and_arrays(tree, inputs))
    assert currents.tolist() == [[16, 16, 0, 0, 0, 0], [0, 16, 16, 0, 0, 0]]


def test_greedy_schedule_serves_the_earliest_departure_first() -> None:
    tree = _one_fuse(10.0, 2, max_a=16.0)
    inputs = EnergyInputs(price=[1] * 4, sessions={"c0": Session(), "c1": Session(departure_slot=2)})
    arrays = _site_and_arrays(tree, inputs, slots=4)
    assert greedy_schedule(tree, arrays).tolist() == [[0, 0, 10, 10], [10, 10, 0, 0]]
    assert greedy_schedule(tree, arrays, earliest_departure_first=False).tolist() == [[10, 10, 10, 10], [0, 0, 0, 0]]


def test_clip_to_rows_scales_an_overloaded_row_and_drops_what_falls_below_the_minimum() -> None:
    tree = _one_fuse(30.0, 3)
    slot = SlotRoom(tree.rows, tree.min_current_a, tree.kw_per_a, np.array([30.0] * 3), np.array([1e3]))
    amps = clip_to_rows(np.array([20.0, 20.0, 5.0]), slot)
    assert amps.tolist() == [13.3, 13.3, 0.0]
