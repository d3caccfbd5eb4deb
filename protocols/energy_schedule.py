"""A charging schedule, why each EVSE got what it got, and the figures to compare two schedules by.

`Schedule` is what both planners return: currents per EVSE and slot (slot 0 goes out now as a lease),
which planner made it and why a fallback happened. `explain` gives each EVSE the one constraint that
set its current in slot 0, checked in this order:

1. no car (not plugged in, or not yet arrived / already gone);
2. its energy need is met, or the rest of it fits in this slot;
3. its own maximum or an external limit (OCPP smart charging) on the EVSE;
4. a full row on the way to the root, nearest node first: a fuse (phase or power, after non-EV load),
   or an external cap on that node; when the EVSE got nothing because its minimum did not fit there,
   that is "min current not reachable";
5. the plan wanted less than the minimum current, so the EVSE waits;
6. price: the plan put the energy in cheaper slots (or values it below the price).

`evaluate` gives energy, cost, peak import and the number of broken limits of a schedule;
`count_violations` checks every slot against the tree itself (`LimitTree.violations`), the EVSE's
external limit and presence, and the energy need.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from charger.protocols.energy_inputs import EnergyInputs, SlotArrays
from charger.protocols.limit_tree import PHASES, POWER, FloatArray, LimitTree

__all__ = ["Explanation", "Metrics", "Reason", "Schedule", "count_violations", "evaluate", "explain"]

_STEP_A = 0.1
_TOLERANCE = 1e-6


class Reason(enum.StrEnum):
    """The constraint that decided an EVSE's current."""

    NO_SESSION = "no_session"
    NEED_MET = "need_met"
    OWN_MAX = "own_max"
    EXTERNAL_LIMIT = "external_limit"
    FUSE = "fuse"
    NODE_CAP = "node_cap"
    MIN_NOT_REACHABLE = "min_not_reachable"
    PRICE = "price"


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """Why `evse` gets `amps` now."""

    evse: str
    amps: float
    reason: Reason
    detail: str
    """One sentence for people (status view, `charger.ctl`)."""
    node: str | None = None
    """The node whose row is full, for FUSE, NODE_CAP and MIN_NOT_REACHABLE."""
    phase: str | None = None
    """"L1".."L3" or "power", with `node`."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Schedule:
    """Currents per EVSE and slot; each is 0 or within [min, limit] and every row of the tree holds."""

    evses: tuple[str, ...]
    currents_a: FloatArray
    """(N, T) amps per phase; column 0 is what goes out now."""
    slot_h: float
    planner: str
    """"HIGHS", "CLARABEL" (or another cvxpy solver) or "greedy"."""
    status: str
    """The solver's status ("optimal"), or "fallback" / "greedy"."""
    fallback_reason: str | None
    """Why the optimiser's answer was not used; None when it was (or when greedy was asked for)."""
    solve_s: float
    """Wall time of the decision: data in, solve, round-off, explanations."""
    explanations: Mapping[str, Explanation]
    objective: float | None = None

    def lease_a(self) -> dict[str, float]:
        """What goes out now: slot 0's current per EVSE."""
        return {name: float(self.currents_a[i, 0]) for i, name in enumerate(self.evses)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    energy_kwh: float
    cost: float
    """Price x energy imported: EV power beyond the PV surplus, slot by slot."""
    peak_import_kw: float
    violations: int


def evaluate(tree: LimitTree, inputs: EnergyInputs, arrays: SlotArrays, currents: FloatArray) -> Metrics:
    power_kw = arrays.kw_per_a @ currents
    imported = np.maximum(power_kw - arrays.pv_kw, 0.0)
    return Metrics(
        energy_kwh=float(arrays.slot_energy_kwh(currents).sum()),
        cost=float(arrays.price @ imported * arrays.slot_h),
        peak_import_kw=float(imported.max(initial=0.0)),
        violations=count_violations(tree, inputs, arrays, currents),
    )


def count_violations(tree: LimitTree, inputs: EnergyInputs, arrays: SlotArrays, currents: FloatArray) -> int:
    """Broken limits over all slots: tree rows (with non-EV load and node caps), EVSE range, external
    EVSE limit or absent car, and energy beyond the need."""
    count = 0
    for t in range(arrays.slots):
        amps = {evse.name: float(currents[i, t]) for i, evse in enumerate(tree.evses)}
        count += len(
            tree.violations(
                amps,
                non_ev_load_a={k: _at(v, t, 2) for k, v in inputs.non_ev_load_a.items()},
                caps_a={k: float(_at(v, t, 1)) for k, v in inputs.node_limit_a.items()},
                caps_kw={k: float(_at(v, t, 1)) for k, v in inputs.node_limit_kw.items()},
            )
        )
    count += int((currents > arrays.ub + _TOLERANCE).sum())
    count += int((arrays.slot_energy_kwh(currents).sum(axis=1) > arrays.need_kwh + _TOLERANCE).sum())
    return count


def _at(value: object, t: int, full_ndim: int) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    return array[t] if array.ndim == full_ndim else array


def explain(tree: LimitTree, arrays: SlotArrays, currents: FloatArray, plan: FloatArray) -> dict[str, Explanation]:
    """One `Explanation` per EVSE for slot 0 of `currents`; `plan` is the planner's (N, T) currents
    before round-off (the LP's continuous solution), which tells "below its minimum" and "deferred"."""
    rows = tree.rows
    now = currents[:, 0]
    resid_a = arrays.room_a[:, 0] - rows.phase_matrix @ now
    resid_kw = arrays.room_kw[:, 0] - rows.power_matrix @ now
    # rounding each current down to 0.1 A leaves up to 0.1 A per drawing EVSE unused in a full row
    drawing = (now > 0).astype(np.float64)
    rounded_a = resid_a - _STEP_A * (rows.phase_matrix @ drawing + 1)
    rounded_kw = resid_kw - _STEP_A * (rows.power_matrix @ drawing + arrays.kw_per_a.max(initial=0.0))
    planned_kwh = arrays.slot_energy_kwh(plan).sum(axis=1)
    wanted_now = plan[:, 0]
    result: dict[str, Explanation] = {}
    for i, evse in enumerate(tree.evses):
        amps = float(now[i])
        own = _limited_by_own_state(arrays, i, amps)
        # an EVSE at 0 A needs real room for its minimum; one that draws is full up to the rounding
        residuals = (resid_a, resid_kw) if amps == 0 else (rounded_a, rounded_kw)
        full = None if own else _full_row(tree, arrays, i, amps, residuals)
        if full is not None:
            result[evse.name] = _row_explanation(evse.name, amps, arrays, full, float(wanted_now[i]))
        else:
            reason, detail = own or _limited_by_plan(arrays, i, amps, float(wanted_now[i]), float(planned_kwh[i]))
            result[evse.name] = Explanation(evse=evse.name, amps=amps, reason=reason, detail=detail)
    return result


def _limited_by_own_state(arrays: SlotArrays, i: int, amps: float) -> tuple[Reason, str] | None:
    """Steps 1-3: the car, its need, the EVSE's own or external limit."""
    ub, need = float(arrays.ub[i, 0]), float(arrays.need_kwh[i])
    if not arrays.present[i, 0]:
        return Reason.NO_SESSION, "no car plugged in now"
    if need <= _TOLERANCE:
        return Reason.NEED_MET, "its energy need is met"
    if ub <= 0 or amps >= ub - _STEP_A + _TOLERANCE:
        if ub < arrays.max_a[i] - _TOLERANCE:
            return Reason.EXTERNAL_LIMIT, f"at its external limit of {ub:g} A"
        return Reason.OWN_MAX, f"at its maximum of {ub:g} A"
    if amps > 0 and amps >= need / (arrays.kw_per_a[i] * arrays.slot_h) - _STEP_A:
        return Reason.NEED_MET, f"the last {need:.2f} kWh of its need fit in this slot"
    return None


def _limited_by_plan(arrays: SlotArrays, i: int, amps: float, wanted: float, planned_kwh: float) -> tuple[Reason, str]:
    """Steps 5-6, once no row is full: the minimum current, or price."""
    if amps == 0 and wanted > 0:
        return Reason.MIN_NOT_REACHABLE, f"the plan asked {wanted:.2f} A, below its minimum of {arrays.min_a[i]:g} A"
    if planned_kwh >= arrays.need_kwh[i] - 1e-3:
        return Reason.PRICE, "its energy need is planned in cheaper slots"
    return Reason.PRICE, "energy now costs more than it is worth"


_Row = tuple[str, str, int, bool]  # node, phase or "power", row index, is a power row


def _full_row(
    tree: LimitTree, arrays: SlotArrays, i: int, amps: float, residuals: tuple[FloatArray, FloatArray]
) -> _Row | None:
    """The nearest row above EVSE i without room for more current (for its minimum, at 0 A)."""
    rows = tree.rows
    resid_a, resid_kw = residuals
    more_a = arrays.min_a[i] if amps == 0 else 0.0
    for r in rows.evse_phase_rows[i]:
        node, phase = rows.phase_rows[r]
        if resid_a[r] < more_a - _TOLERANCE:
            return node, PHASES[phase], int(r), False
    for r in rows.evse_power_rows[i]:
        if resid_kw[r] < more_a * arrays.kw_per_a[i] - _TOLERANCE:
            return rows.power_rows[r], POWER, int(r), True
    return None


def _row_explanation(evse: str, amps: float, arrays: SlotArrays, full: _Row, wanted: float) -> Explanation:
    node, phase, r, is_power = full
    room, fuse_room = (arrays.room_kw, arrays.fuse_room_kw) if is_power else (arrays.room_a, arrays.fuse_room_a)
    unit = "kW" if is_power else "A"
    capped = room[r, 0] < fuse_room[r, 0] - _TOLERANCE
    where = f"{node} {phase}"
    if amps == 0 and wanted > 0:
        reason = Reason.MIN_NOT_REACHABLE
        detail = f"its minimum current does not fit under {where} ({room[r, 0]:.1f} {unit} of room for EVs)"
    elif capped:
        reason, detail = Reason.NODE_CAP, f"{where} is at its external cap ({room[r, 0]:.1f} {unit} for EVs)"
    else:
        reason, detail = Reason.FUSE, f"{where} is full ({room[r, 0]:.1f} {unit} for EVs after non-EV load)"
    return Explanation(evse=evse, amps=amps, reason=reason, detail=detail, node=node, phase=phase)
