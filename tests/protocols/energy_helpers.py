"""Random sites for the energy tests, and an oracle that checks currents against the tree on its own.

The oracle walks parent links itself instead of using `LimitTree.rows` or `LimitTree.room`, so a bug
in the rows that both planners share cannot hide from the property tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from charger.protocols.energy_inputs import EnergyInputs, Session
from charger.protocols.limit_tree import PHASES, Evse, LimitNode, LimitTree
from hypothesis import strategies as st

TOLERANCE = 1e-6

_limits = st.floats(0, 120, allow_nan=False).map(lambda x: round(x, 1))
_current_limits = st.one_of(st.none(), _limits, st.tuples(_limits, _limits, _limits))


@st.composite
def trees(draw: st.DrawFn, max_nodes: int = 5, max_evses: int = 7) -> LimitTree:
    """A random tree: any shape, any limits (0 included), 1- and 3-phase EVSEs anywhere."""
    count = draw(st.integers(1, max_nodes))
    nodes = []
    for k in range(count):
        parent = None if k == 0 else f"n{draw(st.integers(0, k - 1))}"
        power = draw(st.one_of(st.none(), st.floats(0, 80).map(lambda x: round(x, 1))))
        nodes.append(
            LimitNode(name=f"n{k}", parent=parent, current_limit_a=draw(_current_limits), power_limit_kw=power)
        )
    evses = []
    for k in range(draw(st.integers(1, max_evses))):
        min_a = draw(st.sampled_from([0.0, 6.0, 6.0, 8.0]))
        max_a = min_a + draw(st.sampled_from([0.0, 4.0, 10.0, 26.0]))
        if max_a <= 0:
            max_a = 16.0
        evses.append(
            Evse(
                name=f"e{k}",
                parent=f"n{draw(st.integers(0, count - 1))}",
                min_current_a=min_a,
                max_current_a=max_a,
                phases=draw(st.sampled_from([1, 3])),
                grid_phase=draw(st.sampled_from(PHASES)),
            )
        )
    return LimitTree(nodes, evses)


@st.composite
def inputs_for(draw: st.DrawFn, tree: LimitTree, slots: int) -> EnergyInputs:
    """Random prices (negative too), PV, sessions, non-EV load and external limits for `tree`."""
    price = draw(st.lists(st.floats(-0.2, 1.0).map(lambda x: round(x, 3)), min_size=slots, max_size=slots))
    pv = draw(st.lists(st.floats(0, 30).map(lambda x: round(x, 1)), min_size=slots, max_size=slots))
    sessions: dict[str, Session] = {}
    for evse in tree.evses:
        if draw(st.booleans()) or len(tree.evses) == 1:
            arrival = draw(st.integers(0, slots - 1))
            departure = draw(st.one_of(st.none(), st.integers(arrival, slots + 2)))
            need = draw(st.one_of(st.none(), st.floats(0, 40).map(lambda x: round(x, 2))))
            sessions[evse.name] = Session(energy_need_kwh=need, arrival_slot=arrival, departure_slot=departure)
    node_names = sorted(tree.nodes)
    some_nodes = st.lists(st.sampled_from(node_names), unique=True, max_size=2)
    non_ev = {name: draw(st.tuples(*[st.floats(-10, 60).map(lambda x: round(x, 1))] * 3)) for name in draw(some_nodes)}
    evse_limits = {
        name: draw(st.floats(0, 40).map(lambda x: round(x, 1)))
        for name in draw(st.lists(st.sampled_from([e.name for e in tree.evses]), unique=True, max_size=2))
    }
    node_caps_a = {name: draw(st.floats(0, 100).map(lambda x: round(x, 1))) for name in draw(some_nodes)}
    node_caps_kw = {name: draw(st.floats(0, 60).map(lambda x: round(x, 1))) for name in draw(some_nodes)}
    return EnergyInputs(
        price=price,
        pv_surplus_kw=pv,
        sessions=sessions,
        non_ev_load_a=non_ev,
        evse_limit_a=evse_limits,
        node_limit_a=node_caps_a,
        node_limit_kw=node_caps_kw,
    )


def _through_load(tree: LimitTree, own: Mapping[str, Any], name: str) -> list[float]:
    mine = [max(float(x), 0.0) for x in own.get(name, (0.0, 0.0, 0.0))]
    children = [n for n, node in tree.nodes.items() if node.parent == name]
    below = [0.0, 0.0, 0.0]
    for child in children:
        below = [a + b for a, b in zip(below, _through_load(tree, own, child), strict=True)]
    return [max(a, b) for a, b in zip(mine, below, strict=True)]


def breaches(
    tree: LimitTree,
    amps: Mapping[str, float],
    non_ev_load_a: Mapping[str, Any] | None = None,
    caps_a: Mapping[str, Any] | None = None,
    caps_kw: Mapping[str, Any] | None = None,
    *,
    tolerance: float = TOLERANCE,
) -> list[str]:
    """Every (node, phase) or node power over its limit, walking parents; plus EVSEs outside 0 or [min, max].

    Each entry starts with "WHERE PHASE:" (PHASE is L1..L3, "power" or "range"), as `Violation` names them."""
    found = []
    phase_amps: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in tree.nodes}
    power_kw: dict[str, float] = dict.fromkeys(tree.nodes, 0.0)
    for evse in tree.evses:
        current = amps.get(evse.name, 0.0)
        if current != 0 and not (evse.min_current_a - tolerance <= current <= evse.max_current_a + tolerance):
            found.append(f"{evse.name} range: {current} A outside [{evse.min_current_a}, {evse.max_current_a}]")
        parent: str | None = evse.parent
        while parent is not None:
            for phase in range(3):
                if evse.phases == 3 or PHASES[phase] == evse.grid_phase:
                    phase_amps[parent][phase] += current
            power_kw[parent] += current * evse.voltage_v * evse.phases / 1000
            parent = tree.nodes[parent].parent
    for name, node in tree.nodes.items():
        load = _through_load(tree, non_ev_load_a or {}, name)
        limits = node.current_limit_a
        per_phase = [math.inf] * 3 if limits is None else list(limits) if isinstance(limits, tuple) else [limits] * 3
        for phase in range(3):
            limit = min(per_phase[phase], (caps_a or {}).get(name, math.inf))
            if phase_amps[name][phase] > tolerance and phase_amps[name][phase] + load[phase] > limit + tolerance:
                found.append(f"{name} {PHASES[phase]}: {phase_amps[name][phase]} A EV + {load[phase]} A over {limit}")
        power_limit = min(node.power_limit, (caps_kw or {}).get(name, math.inf))
        non_ev_kw = sum(load) * node.voltage_v / 1000
        if power_kw[name] > tolerance and power_kw[name] + non_ev_kw > power_limit + tolerance:
            found.append(f"{name} power: {power_kw[name]} kW EV + {non_ev_kw} kW over {power_limit}")
    return found


def schedule_problems(
    tree: LimitTree, inputs: EnergyInputs, currents: np.ndarray, slot_h: float, tolerance: float = TOLERANCE
) -> list[str]:
    """Everything a schedule must never do, slot by slot, checked from the inputs directly."""
    problems = []
    slots = currents.shape[1]
    for t in range(slots):
        amps = {evse.name: float(currents[i, t]) for i, evse in enumerate(tree.evses)}
        found = breaches(
            tree, amps, inputs.non_ev_load_a, inputs.node_limit_a, inputs.node_limit_kw, tolerance=tolerance
        )
        problems += [f"slot {t}: {b}" for b in found]
        for i, evse in enumerate(tree.evses):
            session = inputs.sessions.get(evse.name)
            departure = slots if session is None or session.departure_slot is None else session.departure_slot
            present = session is not None and session.arrival_slot <= t < departure
            if currents[i, t] > tolerance and not present:
                problems.append(f"slot {t}: {evse.name} draws {currents[i, t]} A with no car present")
            limit = inputs.evse_limit_a.get(evse.name)
            if limit is not None and currents[i, t] > float(limit) + tolerance:  # type: ignore[arg-type]
                problems.append(f"slot {t}: {evse.name} over its external limit {limit}")
    for i, evse in enumerate(tree.evses):
        session = inputs.sessions.get(evse.name)
        energy = float(currents[i].sum()) * evse.kw_per_a * slot_h
        if session is not None and session.energy_need_kwh is not None and energy > session.energy_need_kwh + tolerance:
            problems.append(f"{evse.name} gets {energy} kWh, over its need of {session.energy_need_kwh}")
    return problems
