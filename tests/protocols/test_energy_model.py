"""The optimiser: DPP, safety over random sites, price and PV shifting, round-off, explanations, fallback."""

from __future__ import annotations

from dataclasses import replace

import cvxpy as cp
import numpy as np
import pytest
from charger.protocols.energy_inputs import EnergyInputs, Session, prepare
from charger.protocols.energy_model import EnergyModel, ModelOptions, greedy_plan
from charger.protocols.energy_schedule import Reason, evaluate
from charger.protocols.limit_tree import Evse, LimitNode, LimitTree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocols.energy_helpers import inputs_for, schedule_problems, trees

SLOTS = 8
KWH_PER_SLOT_16A_3PH = 16 * 3 * 230 / 1000 * 0.25  # 2.76 kWh


def _model(tree: LimitTree, **options: object) -> EnergyModel:
    return EnergyModel(tree, ModelOptions(slots=SLOTS, **options))  # type: ignore[arg-type]


def _feeder(fuse_a: float = 32.0, n: int = 2, max_a: float = 16.0, **node: object) -> LimitTree:
    evses = [Evse(name=f"e{k}", parent="feeder", max_current_a=max_a) for k in range(n)]
    return LimitTree([LimitNode(name="feeder", current_limit_a=fuse_a, **node)], evses)  # type: ignore[arg-type]


def _flat(price: float = 0.3) -> list[float]:
    return [price] * SLOTS


@pytest.mark.parametrize("variant", ["lp", "qp"])
def test_the_model_is_dpp(variant: str) -> None:
    model = _model(_feeder(), variant=variant)
    assert model.problem.is_dpp()
    assert model.options.solver_name == (cp.HIGHS if variant == "lp" else cp.CLARABEL)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_schedule_ever_breaks_a_limit(data: st.DataObject) -> None:
    tree = data.draw(trees())
    inputs = data.draw(inputs_for(tree, SLOTS))
    model = _model(tree, time_budget_s=60.0)
    schedule = model.solve(inputs)
    assert schedule.fallback_reason is None, schedule.fallback_reason
    assert schedule_problems(tree, inputs, schedule.currents_a, 0.25) == []
    # the LP itself respects every limit (within solver tolerance); round-off only adds the minimum current rule
    assert model.plan_a is not None
    plan_problems = schedule_problems(tree, inputs, model.plan_a, 0.25, tolerance=1e-5)
    assert [p for p in plan_problems if " range: " not in p] == []
    assert set(schedule.explanations) == {e.name for e in tree.evses}
    for i, name in enumerate(schedule.evses):
        assert schedule.explanations[name].amps == schedule.currents_a[i, 0]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_qp_variant_is_as_safe(data: st.DataObject) -> None:
    tree = data.draw(trees(max_evses=4))
    inputs = data.draw(inputs_for(tree, SLOTS))
    schedule = _model(tree, variant="qp", time_budget_s=60.0).solve(inputs)
    assert schedule.planner == cp.CLARABEL and schedule.fallback_reason is None, schedule.fallback_reason
    assert schedule_problems(tree, inputs, schedule.currents_a, 0.25) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_resolve_after_new_data_equals_a_fresh_build(data: st.DataObject) -> None:
    tree = data.draw(trees())
    first, second = data.draw(inputs_for(tree, SLOTS)), data.draw(inputs_for(tree, SLOTS))
    reused = _model(tree, time_budget_s=60.0)
    reused.solve(first)
    again = reused.solve(second)
    fresh = _model(tree, time_budget_s=60.0).solve(second)
    assert again.objective == pytest.approx(fresh.objective, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(again.currents_a, fresh.currents_a, atol=1e-6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_optimiser_delivers_no_less_than_greedy_at_no_higher_cost(data: st.DataObject) -> None:
    tree = data.draw(trees())
    inputs = data.draw(inputs_for(tree, SLOTS))
    schedule = _model(tree, time_budget_s=60.0).solve(inputs)
    arrays = prepare(tree, inputs, slots=SLOTS, slot_h=0.25)
    optimised = evaluate(tree, inputs, arrays, schedule.currents_a)
    greedy = evaluate(tree, inputs, arrays, greedy_plan(tree, arrays).currents_a)
    assert optimised.violations == greedy.violations == 0
    # round-off can lose less than one minimum-current slot per car against the LP's plan
    slack = sum(e.min_current_a * e.kw_per_a * 0.25 for e in tree.evses)
    assert optimised.energy_kwh >= greedy.energy_kwh - slack - 1e-6


def test_energy_goes_to_the_cheapest_slots() -> None:
    tree = _feeder(n=1)
    price = [0.5, 0.4, 0.1, 0.1, 0.3, 0.2, 0.6, 0.6]
    inputs = EnergyInputs(price=price, sessions={"e0": Session(energy_need_kwh=3 * KWH_PER_SLOT_16A_3PH)})
    schedule = _model(tree).solve(inputs)
    assert schedule.status == "optimal" and schedule.planner == cp.HIGHS
    assert schedule.currents_a[0].tolist() == [0, 0, 16, 16, 0, 16, 0, 0]
    assert schedule.explanations["e0"].reason is Reason.PRICE
    assert schedule.lease_a() == {"e0": 0.0}


def test_pv_surplus_is_free_and_ties_go_to_earlier_slots() -> None:
    tree = _feeder(n=1)
    pv = [0, 0, 0, 0, 11.04, 11.04, 0, 0]  # exactly 16 A three-phase in slots 4 and 5
    inputs = EnergyInputs(
        price=_flat(), pv_surplus_kw=pv, sessions={"e0": Session(energy_need_kwh=3 * KWH_PER_SLOT_16A_3PH)}
    )
    assert _model(tree).solve(inputs).currents_a[0].tolist() == [16, 0, 0, 0, 16, 16, 0, 0]


def test_departure_and_arrival_bound_the_window() -> None:
    tree = _feeder(n=1)
    inputs = EnergyInputs(
        price=[0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1],
        sessions={"e0": Session(energy_need_kwh=10 * KWH_PER_SLOT_16A_3PH, arrival_slot=2, departure_slot=5)},
    )
    assert _model(tree).solve(inputs).currents_a[0].tolist() == [0, 0, 16, 16, 16, 0, 0, 0]


def test_no_car_can_take_less_than_its_minimum() -> None:
    # 10 A of room and two cars that want energy: 5 A each is what an LP might like, 0 or >= 6 is what cars take
    tree = _feeder(fuse_a=10.0)
    inputs = EnergyInputs(price=_flat(), sessions={"e0": Session(), "e1": Session()})
    schedule = _model(tree, variant="qp").solve(inputs)
    first = sorted(schedule.currents_a[:, 0].tolist())
    assert first == [0.0, 10.0]
    reasons = {e.reason for e in schedule.explanations.values()}
    assert reasons <= {Reason.FUSE, Reason.MIN_NOT_REACHABLE}
    unserved = next(e for e in schedule.explanations.values() if e.amps == 0)
    assert unserved.reason is Reason.MIN_NOT_REACHABLE and unserved.node == "feeder"


def test_explanations_name_the_constraint() -> None:
    nodes = [
        LimitNode(name="grid", power_limit_kw=100.0),
        LimitNode(name="small", parent="grid", current_limit_a=(20.0, 20.0, 20.0)),
        LimitNode(name="capped", parent="grid", current_limit_a=63.0),
    ]
    evses = [
        Evse(name="free", parent="grid", max_current_a=16.0),
        Evse(name="limited", parent="grid"),
        Evse(name="s1", parent="small"),
        Evse(name="s2", parent="small"),
        Evse(name="c1", parent="capped"),
        Evse(name="empty", parent="grid"),
        Evse(name="full", parent="grid"),
    ]
    tree = LimitTree(nodes, evses)
    inputs = EnergyInputs(
        price=_flat(),
        sessions={name: Session() for name in ("free", "limited", "s1", "s2", "c1")}
        | {"full": Session(energy_need_kwh=0)},
        evse_limit_a={"limited": 10.0},
        node_limit_a={"capped": 8.0},
    )
    why = _model(tree).solve(inputs).explanations
    assert (why["free"].reason, why["free"].amps) == (Reason.OWN_MAX, 16.0)
    assert (why["limited"].reason, why["limited"].amps) == (Reason.EXTERNAL_LIMIT, 10.0)
    assert (why["s1"].reason, why["s1"].node) == (Reason.FUSE, "small")
    assert why["s1"].amps + why["s2"].amps == 20.0
    assert (why["c1"].reason, why["c1"].node, why["c1"].amps) == (Reason.NODE_CAP, "capped", 8.0)
    assert why["empty"].reason is Reason.NO_SESSION
    assert why["full"].reason is Reason.NEED_MET
    assert "small" in why["s1"].detail and why["s1"].phase in {"L1", "L2", "L3"}


def test_a_grid_power_limit_after_non_ev_load_is_named() -> None:
    tree = LimitTree([LimitNode(name="grid", power_limit_kw=20.0)], [Evse(name="e0", parent="grid")])
    inputs = EnergyInputs(price=_flat(), sessions={"e0": Session()}, non_ev_load_a={"grid": (10.0, 10.0, 10.0)})
    schedule = _model(tree).solve(inputs)
    why = schedule.explanations["e0"]
    assert (why.reason, why.node, why.phase) == (Reason.FUSE, "grid", "power")
    assert why.amps == pytest.approx(np.floor((20.0 - 30 * 0.23) / 0.69 * 10) / 10)


def test_negative_prices_stay_bounded() -> None:
    tree = _feeder(n=1)
    inputs = EnergyInputs(price=[-0.5] * SLOTS, pv_surplus_kw=5.0, sessions={"e0": Session(energy_need_kwh=5.0)})
    schedule = _model(tree).solve(inputs)
    assert schedule.status == "optimal"
    assert schedule_problems(tree, inputs, schedule.currents_a, 0.25) == []


def test_a_failing_solver_falls_back_to_greedy_and_says_why() -> None:
    tree = _feeder()
    inputs = EnergyInputs(price=_flat(), sessions={"e0": Session(), "e1": Session(energy_need_kwh=4.0)})
    schedule = _model(tree, solver="NO_SUCH_SOLVER").solve(inputs)
    expected = greedy_plan(tree, prepare(tree, inputs, slots=SLOTS, slot_h=0.25))
    assert (schedule.planner, schedule.status) == ("greedy", "fallback")
    assert schedule.fallback_reason is not None and "NO_SUCH_SOLVER failed" in schedule.fallback_reason
    np.testing.assert_array_equal(schedule.currents_a, expected.currents_a)
    assert expected.fallback_reason is None and expected.status == "greedy"


def test_a_solver_over_its_time_budget_falls_back_to_greedy() -> None:
    tree = _feeder()
    inputs = EnergyInputs(price=_flat(), sessions={"e0": Session(), "e1": Session()})
    schedule = _model(tree, time_budget_s=0.0).solve(inputs)
    assert schedule.planner == "greedy"
    assert schedule.fallback_reason is not None
    assert "budget" in schedule.fallback_reason or "user_limit" in schedule.fallback_reason
    assert schedule_problems(tree, inputs, schedule.currents_a, 0.25) == []


def test_the_lease_is_the_first_slot() -> None:
    tree = _feeder(fuse_a=20.0)
    inputs = EnergyInputs(price=_flat(), sessions={"e0": Session(), "e1": Session()})
    schedule = _model(tree).solve(inputs)
    lease = schedule.lease_a()
    assert set(lease) == {"e0", "e1"} and sum(lease.values()) <= 20.0
    assert lease == {name: schedule.currents_a[i, 0] for i, name in enumerate(schedule.evses)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"price": [0.1, 0.2]}, "price: expected a number or 8 per-slot figures"),
        ({"price": [float("nan")] * SLOTS}, "price: every figure must be finite"),
        ({"sessions": {"zz": Session()}}, "sessions given for unknown EVSEs: zz"),
        ({"evse_limit_a": {"zz": 1.0}}, "evse_limit_a given for unknown EVSEs: zz"),
        ({"node_limit_kw": {"zz": 1.0}}, "caps_kw given for unknown nodes: zz"),
        ({"non_ev_load_a": {"feeder": (1.0,)}}, "expected (L1, L2, L3)"),
    ],
)
def test_bad_inputs_are_rejected(change: dict[str, object], message: str) -> None:
    inputs = replace(EnergyInputs(price=_flat()), **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as caught:
        _model(_feeder()).solve(inputs)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"energy_need_kwh": -1.0}, "energy_need_kwh"),
        ({"arrival_slot": -1}, "arrival_slot"),
        ({"arrival_slot": 3, "departure_slot": 2}, "departure_slot"),
    ],
)
def test_bad_sessions_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Session(**kwargs)  # type: ignore[arg-type]


def test_bad_options_and_empty_trees_are_rejected() -> None:
    with pytest.raises(ValueError, match="variant"):
        ModelOptions(variant="milp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slots"):
        ModelOptions(slots=0)
    with pytest.raises(ValueError, match="nothing to optimise"):
        EnergyModel(LimitTree([LimitNode(name="grid")], []))
