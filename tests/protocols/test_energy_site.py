"""SiteState: the live inputs of the energy manager (PV, meters, needs, external limits, caps) and the
limits per node that the status view shows, checked through the optimiser where it matters."""

from __future__ import annotations

import numpy as np
import pytest
from charger.protocols.energy_inputs import prepare
from charger.protocols.energy_model import EnergyModel, ModelOptions, greedy_plan
from charger.protocols.energy_report import node_rows
from charger.protocols.energy_site import EvseSample, Measured, MeterPlace, MeterSample, NodeCap, SiteState, deviation
from charger.protocols.limit_tree import Evse, LimitNode, LimitTree

SLOT_S = 900.0
SLOTS = 8
NOW = 1_700_000_000.0  # a slot boundary: 1_700_000_000 / 900 is not whole, slot_start rounds down


def tree() -> LimitTree:
    return LimitTree(
        [LimitNode(name="grid", current_limit_a=63), LimitNode(name="feeder", parent="grid", current_limit_a=32)],
        [Evse(name="e1", parent="feeder"), Evse(name="e2", parent="feeder")],
    )


def site(**kw: object) -> SiteState:
    args: dict[str, object] = {"slot_s": SLOT_S, "slots": SLOTS, "prices": [0.3]}
    args.update(kw)
    return SiteState(tree(), **args)  # type: ignore[arg-type]


def solve(state: SiteState, now: float = NOW, **options: object) -> dict[str, tuple[float, str]]:
    model = EnergyModel(state.tree, ModelOptions(slots=SLOTS, **options))  # type: ignore[arg-type]
    schedule = model.solve(state.inputs(now))
    return {name: (e.amps, str(e.reason)) for name, e in schedule.explanations.items()}


def test_pv_surplus_lets_a_car_charge_in_a_slot_that_costs_nothing() -> None:
    state = site(prices=[20.0])  # dearer than the 10 per kWh a delivered kWh is worth
    state.cars.add("e1")
    assert solve(state)["e1"] == (0.0, "price")
    state = site(prices=[20.0], pv_surplus_kw=[5.0])
    state.cars.add("e1")
    amps, _ = solve(state)["e1"]
    assert 6.0 <= amps <= 5.0 / 0.69 + 0.1  # what the PV surplus carries, no more


def test_the_live_grid_meter_corrects_slot_0_of_the_pv_forecast() -> None:
    state = site(prices=[20.0], meters={"grid-meter": MeterPlace(node="grid", measures="grid")})
    state.cars.add("e1")
    state.evses["e1"] = EvseSample(power_w=4140.0)  # 6 A on 3 phases
    state.meters["grid-meter"] = MeterSample(power_w=-3000.0, currents_a=(4.0, 4.0, 4.0))  # still exporting 3 kW
    measured = state.measured()
    assert measured.pv_kw == pytest.approx(7.14)
    assert all(np.all(a == 0) for a in measured.non_ev_a.values())  # export currents are no load
    inputs = state.inputs(NOW)
    assert np.asarray(inputs.pv_surplus_kw)[0] == pytest.approx(7.14)
    assert np.asarray(inputs.pv_surplus_kw)[1] == 0.0  # the forecast beyond now is untouched
    amps, _ = solve(state)["e1"]
    assert 6.0 <= amps <= 7.14 / 0.69 + 0.1


def test_a_pv_meter_less_the_load_meter_is_the_surplus() -> None:
    places = {"pv": MeterPlace(node="grid", measures="pv"), "house": MeterPlace(node="grid", measures="load")}
    state = site(meters=places)
    state.meters["pv"] = MeterSample(power_w=-9000.0)  # an inverter meter counting production as export
    state.meters["house"] = MeterSample(power_w=2300.0, currents_a=(10.0, 0.0, 0.0))
    measured = state.measured()
    assert measured.pv_kw == pytest.approx(6.7)
    assert list(measured.non_ev_a["grid"]) == [10.0, 0.0, 0.0]


def test_a_grid_meter_minus_the_evs_is_the_non_ev_load() -> None:
    state = site(meters={"m": MeterPlace(node="feeder", measures="grid")})
    state.evses["e1"] = EvseSample(power_w=6900.0)  # 10 A per phase
    state.meters["m"] = MeterSample(power_w=15000.0, currents_a=(20.0, 25.0, 12.0))
    assert list(state.measured().non_ev_a["feeder"]) == pytest.approx([10.0, 15.0, 2.0])
    state.cars.update({"e1", "e2"})
    result = solve(state)
    assert result["e1"][0] + result["e2"][0] <= 32 - 15 + 1e-6  # the busiest phase sets the room
    assert result["e1"][1] == "fuse"


def test_non_ev_load_above_the_fuse_gives_the_evs_nothing_and_never_a_negative_lease() -> None:
    state = site(meters={"m": MeterPlace(node="feeder", measures="load")})
    state.meters["m"] = MeterSample(power_w=30000.0, currents_a=(45.0, 40.0, 50.0))  # over the 32 A fuse
    state.cars.update({"e1", "e2"})
    model = EnergyModel(state.tree, ModelOptions(slots=SLOTS))
    for variant_model in (model, EnergyModel(state.tree, ModelOptions(slots=SLOTS, variant="qp"))):
        schedule = variant_model.solve(state.inputs(NOW))
        assert (schedule.currents_a == 0).all()
        assert {(e.reason, e.node) for e in schedule.explanations.values()} == {("fuse", "feeder")}
    greedy = greedy_plan(state.tree, prepare(state.tree, state.inputs(NOW), slots=SLOTS, slot_h=0.25))
    assert (greedy.currents_a == 0).all()


def test_a_grid_cap_lowers_the_shares_and_says_so_until_it_ends() -> None:
    state = site()
    state.cars.update({"e1", "e2"})
    assert sum(a for a, _ in solve(state).values()) == pytest.approx(32.0, abs=0.2)
    until = state.slot_start(NOW) + 2 * SLOT_S
    state.set_cap("grid", NodeCap(amps=20.0, valid_until=until, source="dso"))
    capped = solve(state)
    assert sum(a for a, _ in capped.values()) <= 20.0 + 1e-6
    assert {r for _, r in capped.values()} == {"node_cap"}
    inputs = state.inputs(NOW)
    caps = np.asarray(inputs.node_limit_a["grid"])
    assert list(caps[:2]) == [20.0, 20.0] and np.isinf(caps[2:]).all()  # slots that start after it: uncapped
    assert state.expire_caps(until - 1) == []
    assert state.expire_caps(until) == ["grid"]
    with pytest.raises(ValueError, match="no node"):
        state.set_cap("nowhere", NodeCap(amps=1.0))


def test_an_external_limit_from_another_grantor_bounds_the_evse() -> None:
    state = site()
    state.cars.add("e1")
    state.evses["e1"] = EvseSample(external_a=8.0)
    assert solve(state)["e1"] == (8.0, "external_limit")
    state.cars.add("e2")
    result = solve(state, variant="qp")  # the LP may leave e1 at 0: the same energy goes to e2
    assert 6.0 <= result["e1"][0] <= 8.0
    assert result["e2"][0] >= 23.8  # the rest of the feeder goes to the other car


def test_a_met_need_gives_0_a_with_reason_need_met() -> None:
    state = site()
    state.cars.add("e1")
    state.evses["e1"] = EvseSample(session_id="s1", energy_wh=1000.0)
    state.set_need("e1", 5.0, None)
    assert state.remaining_need("e1") == 5.0
    state.evses["e1"] = EvseSample(session_id="s1", energy_wh=4000.0)
    assert state.remaining_need("e1") == pytest.approx(2.0)
    state.evses["e1"] = EvseSample(session_id="s1", energy_wh=6000.0)
    assert solve(state)["e1"] == (0.0, "need_met")
    state.session_ended("e1")
    assert state.remaining_need("e1") is None


def test_a_need_given_before_the_session_counts_from_its_start() -> None:
    state = site()
    state.set_need("e1", 10.0, None)
    state.evses["e1"] = EvseSample(session_id="s2", energy_wh=2500.0)
    assert state.remaining_need("e1") == pytest.approx(7.5)
    with pytest.raises(ValueError, match="finite number"):
        state.set_need("e1", -1.0, None)
    with pytest.raises(ValueError, match="no EVSE"):
        state.set_need("e9", 1.0, None)


def test_departure_sets_the_last_slot_and_a_past_one_means_unknown() -> None:
    state = site()
    start = state.slot_start(NOW)
    state.set_need("e1", None, start + 3 * SLOT_S + 10)
    assert state.departure_slot("e1", NOW) == 3
    assert state.departure_slot("e1", start + 3 * SLOT_S + 20) is None
    state.set_need("e1", None, NOW + 5)
    assert state.departure_slot("e1", NOW) == 1  # leaving within this slot: it still charges now


def test_a_need_due_by_departure_is_planned_in_the_cheap_slots() -> None:
    state = site(prices=[0.5, 0.1])  # alternating by slot of the day
    state.cars.add("e1")
    state.set_need("e1", 5.0, state.slot_start(NOW) + 4 * SLOT_S)
    inputs = state.inputs(NOW)
    model = EnergyModel(state.tree, ModelOptions(slots=SLOTS))
    schedule = model.solve(inputs)
    price = np.asarray(inputs.price)
    cheap = price == 0.1
    assert (schedule.currents_a[0, 4:] == 0).all()  # gone from slot 4
    assert schedule.currents_a[0, :4][cheap[:4]].sum() > schedule.currents_a[0, :4][~cheap[:4]].sum()


def test_profiles_follow_the_time_of_day_and_a_forecast_replaces_them() -> None:
    state = site(prices=list(range(96)), utc_offset_s=3600.0)
    midnight_utc = 1_700_006_400.0  # 00:00 UTC, 01:00 local
    assert list(state.price(midnight_utc)[:3]) == [4.0, 5.0, 6.0]
    state.set_forecast(midnight_utc + SLOT_S, [100.0, 101.0], None)
    assert list(state.price(midnight_utc)[:4]) == [4.0, 100.0, 101.0, 7.0]
    state.set_forecast(midnight_utc + 10, None, [2.0])  # from within slot 0: slot 0 is covered
    assert list(state.pv_forecast(midnight_utc + 20)[:2]) == [2.0, 0.0]
    with pytest.raises(ValueError, match="finite"):
        state.set_forecast(midnight_utc, [float("nan")], None)


def test_deviation_is_the_largest_change() -> None:
    a = Measured(non_ev_a={"feeder": np.array([1.0, 2.0, 3.0])}, pv_kw=2.0)
    b = Measured(non_ev_a={"feeder": np.array([1.0, 6.0, 3.0]), "grid": np.array([0.0, 0.0, 1.0])}, pv_kw=0.5)
    assert deviation(a, b) == (4.0, 1.5)
    assert deviation(Measured(), Measured()) == (0.0, 0.0)


def test_node_rows_show_rating_cap_load_plan_and_headroom() -> None:
    state = site(meters={"m": MeterPlace(node="feeder", measures="load")})
    state.meters["m"] = MeterSample(power_w=2300.0, currents_a=(10.0, 0.0, 0.0))
    state.set_cap("grid", NodeCap(kw=11.0))
    state.cars.add("e1")
    inputs = state.inputs(NOW)
    model = EnergyModel(state.tree, ModelOptions(slots=SLOTS))
    schedule = model.solve(inputs)
    arrays = prepare(state.tree, inputs, slots=SLOTS, slot_h=0.25)
    rows = {(r.node, r.phase): r for r in node_rows(state.tree, inputs, arrays, schedule.currents_a)}
    assert set(rows) == {("grid", p) for p in ("L1", "L2", "L3", "power")} | {("feeder", p) for p in ("L1", "L2", "L3")}
    power = rows[("grid", "power")]
    assert (power.unit, power.limit, power.cap) == ("kW", None, 11.0)
    assert power.non_ev == pytest.approx(2.3)
    assert power.planned + power.headroom == pytest.approx(11.0 - 2.3)
    feeder = rows[("feeder", "L1")]
    assert (feeder.limit, feeder.non_ev) == (32.0, 10.0)
    assert feeder.planned == pytest.approx(schedule.currents_a[0, 0])
    assert feeder.headroom == pytest.approx(32.0 - 10.0 - feeder.planned)


def test_needs_and_run_time_caps_survive_a_snapshot_but_ended_caps_do_not() -> None:
    state = site()
    state.evses["e1"] = EvseSample(session_id="s1", energy_wh=1000.0)
    state.set_need("e1", 5.0, NOW + 3600)
    state.set_cap("grid", NodeCap(amps=20.0, valid_until=NOW + 60, source="dso"))
    state.set_cap("feeder", NodeCap(kw=9.0, source="api"))
    snapshot = state.snapshot()
    again = site(caps={"grid": NodeCap(amps=50.0)})
    again.restore(snapshot, NOW)
    assert again.caps["grid"] == NodeCap(amps=20.0, valid_until=NOW + 60, source="dso")
    assert again.caps["feeder"].kw == 9.0
    assert again.needs["e1"].baseline_wh == 1000.0 and again.needs["e1"].session_id == "s1"
    later = site()
    later.restore(snapshot, NOW + 61)
    assert set(later.caps) == {"feeder"}
    assert "config" not in {
        source for _, _, _, source in site(caps={"grid": NodeCap(amps=1.0)}).snapshot()["caps"].values()
    }
