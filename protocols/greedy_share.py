"""Greedy fair share of a tree of fuses, EVerest style: the fallback and the benchmark baseline.

One instant (`share_slot`, `fair_share`):

1. every EVSE that wants at least its minimum current gets it, in the given order (earliest departure
   first, or first come), as long as every row above it (each ancestor's phase conductor and power)
   still has room for it: EVerest's first trade buys the minimum (everest.md §5);
2. the rest is water-filled: all served EVSEs rise together by the same current until one reaches
   what it wants or a row above it is full, which freezes the EVSEs under that row; repeat. This is
   EVerest's round-robin slicing with an infinitely thin slice, so it is max-min fair in amperes;
3. currents are rounded down to 0.1 A (what OCPP and the PWM duty cycle can carry), never up.

With one fuse it gives what `charger.actors.load_share.share_fuse` gives to connectors in a
transaction: the first `room // 6 A` get an equal split. Here every ancestor counts, phase by phase.

Over a horizon (`greedy_schedule`): slot by slot, each EVSE wants what its car can take (its limit,
capped by its remaining energy need), and gets its fair share of that slot. No price, no PV forecast:
it charges as soon and as fast as the fuses allow.

`round_off` and `clip_to_rows` are the same tools applied to the optimiser's continuous plan: an LP
can hand out 3 A to a car that needs 6 A or nothing, and a solver's tolerance can overshoot a row by
1e-7 A. They lower currents, raise one to its minimum or hand on what the plan meant for a car left at
0 A, always within every row's room: the last word is always `clip_to_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from charger.protocols.energy_inputs import SlotArrays
from charger.protocols.limit_tree import FloatArray, LimitTree, TreeRows

__all__ = [
    "STEP_A",
    "SlotRoom",
    "clip_to_rows",
    "departure_order",
    "fair_share",
    "floor_to_step",
    "grant_minimum",
    "greedy_schedule",
    "round_off",
    "share_slot",
]

STEP_A = 0.1
"""Resolution of a granted current: OCPP limits carry one decimal, like `share_fuse`."""
_STEPS_PER_A = 10  # dividing by 10 lands exactly on the double nearest k/10; multiplying by 0.1 may not
_EPS = 1e-9


def floor_to_step(amps: FloatArray, min_a: FloatArray) -> FloatArray:
    """Round down to `STEP_A`; a current at or above its minimum stays there (the minimum may be off the grid)."""
    floored = np.floor(amps * _STEPS_PER_A + 1e-6) / _STEPS_PER_A
    floored = np.minimum(floored, amps)  # the 1e-6 above absorbs float noise; it must never round up
    kept_min = (amps >= min_a) & (floored < min_a)
    floored[kept_min] = min_a[kept_min]
    floored[floored < min_a - _EPS] = 0.0
    return np.maximum(floored, 0.0)


@dataclass(frozen=True, slots=True, eq=False)
class SlotRoom:
    """The tree's rows, each row's room in one slot, and the EVSE figures a share needs."""

    rows: TreeRows
    min_a: FloatArray
    kw_per_a: FloatArray
    room_a: FloatArray
    """(phase rows,) EV current each (node, phase) may carry."""
    room_kw: FloatArray
    """(power rows,) EV power each node may carry."""

    @classmethod
    def of(cls, tree: LimitTree, arrays: SlotArrays, t: int) -> SlotRoom:
        return cls(tree.rows, arrays.min_a, arrays.kw_per_a, arrays.room_a[:, t], arrays.room_kw[:, t])

    def residuals(self, amps: FloatArray) -> tuple[FloatArray, FloatArray]:
        return self.room_a - self.rows.phase_matrix @ amps, self.room_kw - self.rows.power_matrix @ amps


def grant_minimum(amps: FloatArray, candidates: Sequence[int], slot: SlotRoom) -> FloatArray:
    """Raise each candidate (in order) from 0 to its minimum where every row above it has room."""
    amps = amps.copy()
    resid_a, resid_kw = slot.residuals(amps)
    for i in candidates:
        need_a, need_kw = slot.min_a[i], slot.min_a[i] * slot.kw_per_a[i]
        phase_rows, power_rows = slot.rows.evse_phase_rows[i], slot.rows.evse_power_rows[i]
        fits_a = (resid_a[phase_rows] >= need_a - _EPS).all()
        if amps[i] == 0 and fits_a and (resid_kw[power_rows] >= need_kw - _EPS).all():
            amps[i] = need_a
            resid_a[phase_rows] -= need_a
            resid_kw[power_rows] -= need_kw
    return amps


def _water_fill(amps: FloatArray, active: npt.NDArray[np.bool_], cap: FloatArray, slot: SlotRoom) -> FloatArray:
    """Raise all `active` EVSEs by equal steps until each is capped or under a full row."""
    amps, active = amps.copy(), active & (cap - amps > _EPS)
    resid_a, resid_kw = slot.residuals(amps)
    phase_matrix, power_matrix = slot.rows.phase_matrix, slot.rows.power_matrix
    to_phase, to_power = slot.rows.phase_members, slot.rows.power_members
    while active.any():
        weight = active.astype(np.float64)
        count_a, kw_a = phase_matrix @ weight, power_matrix @ weight
        steps = [float((cap - amps)[active].min())]
        if (count_a > 0).any():
            steps.append(float((resid_a[count_a > 0] / count_a[count_a > 0]).min()))
        if (kw_a > 0).any():
            steps.append(float((resid_kw[kw_a > 0] / kw_a[kw_a > 0]).min()))
        step = max(min(steps), 0.0)
        amps[active] += step
        resid_a -= step * count_a
        resid_kw -= step * kw_a
        full_a = ((resid_a <= _EPS * np.maximum(slot.room_a, 1.0)) & (count_a > 0)).astype(np.float64)
        full_kw = ((resid_kw <= _EPS * np.maximum(slot.room_kw, 1.0)) & (kw_a > 0)).astype(np.float64)
        blocked = ((to_phase @ full_a) > 0) | ((to_power @ full_kw) > 0)
        active &= ~blocked & (cap - amps > _EPS)
    return amps


def share_slot(slot: SlotRoom, cap_a: FloatArray, order: Sequence[int] | None = None) -> FloatArray:
    """Fair share of one instant: (N,) currents, each 0 or in [min, cap], within every row's room.

    `order` decides who gets the minimum first when not everyone can; default: column order.
    """
    n, min_a = len(cap_a), slot.min_a
    wants = cap_a >= np.maximum(min_a, _EPS) - _EPS
    sequence = range(n) if order is None else order
    candidates = [i for i in sequence if wants[i] and min_a[i] > 0]
    amps = grant_minimum(np.zeros(n), candidates, slot)
    served = wants & ((amps > 0) | (min_a <= 0))
    amps = _water_fill(amps, served, cap_a, slot)
    return clip_to_rows(floor_to_step(amps, min_a), slot)


def clip_to_rows(amps: FloatArray, slot: SlotRoom) -> FloatArray:
    """Lower currents until no row is over its room: each row over by a factor scales its EVSEs down by
    it (so one pass fixes every row), then currents round down and any below its minimum goes to 0."""
    amps = amps.copy()
    rows = slot.rows
    for _ in range(8):
        load_a, load_kw = rows.phase_matrix @ amps, rows.power_matrix @ amps
        # float sums of 0.1 A steps may land 1e-15 over a round limit: that is not an overload
        over_a = np.flatnonzero(load_a > slot.room_a + _EPS)
        over_kw = np.flatnonzero(load_kw > slot.room_kw + _EPS)
        if not len(over_a) and not len(over_kw):
            return amps
        scale = np.ones(len(amps))
        for matrix, over, room, load in (
            (rows.phase_matrix, over_a, slot.room_a, load_a),
            (rows.power_matrix, over_kw, slot.room_kw, load_kw),
        ):
            for r in over:
                members = matrix.indices[matrix.indptr[r] : matrix.indptr[r + 1]]
                scale[members] = np.minimum(scale[members], room[r] / load[r] * (1 - 1e-12))
        amps = floor_to_step(amps * scale, slot.min_a)
    return np.zeros_like(amps)  # not reached: each pass fixes every row; but a fuse outranks any plan


def _energy_cap(arrays: SlotArrays, t: int, remaining_kwh: FloatArray) -> FloatArray:
    by_need = remaining_kwh / (arrays.kw_per_a * arrays.slot_h)
    cap = np.minimum(arrays.ub[:, t], by_need)
    cap[cap < arrays.min_a - _EPS] = 0.0  # the last crumb of energy below one minimum-current slot is not deliverable
    return cap


def departure_order(arrays: SlotArrays) -> list[int]:
    """EVSEs by the last slot their car is present (earliest first; cars staying past the horizon last)."""
    present = arrays.present
    last = np.where(present.any(axis=1), present.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1), present.shape[1])
    return [int(i) for i in np.lexsort((np.arange(len(last)), last))]


def greedy_schedule(tree: LimitTree, arrays: SlotArrays, *, earliest_departure_first: bool = True) -> FloatArray:
    """(N, T) currents: slot by slot, a fair share of the room among cars that still need energy."""
    order = departure_order(arrays) if earliest_departure_first else None
    remaining = arrays.need_kwh.copy()
    schedule = np.zeros_like(arrays.ub)
    for t in range(arrays.slots):
        cap = _energy_cap(arrays, t, remaining)
        amps = share_slot(SlotRoom.of(tree, arrays, t), cap, order)
        schedule[:, t] = amps
        remaining = np.maximum(remaining - arrays.slot_energy_kwh(amps), 0.0)
    return schedule


def _snap_up(planned: FloatArray) -> FloatArray:
    """An interior-point solver leaves a row at 9.99999 A when it means 10 A: snap such loads up to the step."""
    return np.maximum(planned, np.ceil(planned * _STEPS_PER_A - 1e-2) / _STEPS_PER_A)


def round_off(tree: LimitTree, arrays: SlotArrays, plan: FloatArray) -> FloatArray:
    """Turn a continuous (N, T) plan into currents an EVSE can carry, slot by slot.

    Each current is capped by the EVSE's limit and its remaining need, rounded down to 0.1 A; one below
    the minimum goes to 0; rows over their room scale down. Then EVSEs the plan wanted to serve below
    their minimum are raised to it, largest plan first, where the rows still have room. Last, the current
    the plan gave to EVSEs left at 0 is water-filled among the served ones, within each row's planned
    load, so a plan of 5 A + 5 A under a 10 A fuse becomes 10 A + 0 A, not 6 A + 0 A.
    """
    remaining = arrays.need_kwh.copy()
    result = np.zeros_like(plan)
    rows = tree.rows
    for t in range(arrays.slots):
        slot = SlotRoom.of(tree, arrays, t)
        cap = _energy_cap(arrays, t, remaining)
        wanted = np.minimum(np.maximum(plan[:, t], 0.0), cap)
        amps = clip_to_rows(floor_to_step(wanted, arrays.min_a), slot)
        short = np.flatnonzero((amps == 0) & (wanted > STEP_A / 2) & (cap >= arrays.min_a))
        ranked = [int(i) for i in short[np.argsort(-wanted[short], kind="stable")]]
        amps = grant_minimum(amps, ranked, slot)
        # what the plan meant for the cars that got nothing goes to the served ones under the same rows
        load_a, load_kw = rows.phase_matrix @ amps, rows.power_matrix @ amps
        planned_a = np.minimum(slot.room_a, _snap_up(np.maximum(rows.phase_matrix @ wanted, load_a)))
        planned_kw = np.minimum(slot.room_kw, _snap_up(np.maximum(rows.power_matrix @ wanted, load_kw)))
        if (planned_a - load_a).max(initial=0.0) >= STEP_A or (planned_kw - load_kw).max(initial=0.0) >= STEP_A:
            amps = _water_fill(amps, amps > 0, cap, replace(slot, room_a=planned_a, room_kw=planned_kw))
            amps = clip_to_rows(floor_to_step(amps, arrays.min_a), slot)
        result[:, t] = amps
        remaining = np.maximum(remaining - arrays.slot_energy_kwh(amps), 0.0)
    return result


def fair_share(
    tree: LimitTree,
    wanted_a: Mapping[str, float],
    *,
    non_ev_load_a: Mapping[str, npt.ArrayLike] | None = None,
    caps_a: Mapping[str, float] | None = None,
    caps_kw: Mapping[str, float] | None = None,
    order: Sequence[str] | None = None,
) -> dict[str, float]:
    """Fair share of one instant by name: what each EVSE gets of what it wants (A per phase).

    An EVSE not in `wanted_a` wants nothing; a wish above the EVSE's maximum counts as its maximum.
    `order` (EVSE names) decides who gets the minimum first; EVSEs it leaves out follow in the order of
    `wanted_a`.
    """
    unknown = sorted((set(wanted_a) | set(order or ())) - set(tree.evse_index))
    if unknown:
        raise ValueError(f"wanted_a or order names unknown EVSEs: {', '.join(unknown)}")
    cap = np.zeros(len(tree.evses))
    for name, wish in wanted_a.items():
        if not math.isfinite(wish) or wish < 0:
            raise ValueError(f"wanted_a of {name!r} must be a finite number >= 0, got {wish!r}")
        cap[tree.evse_index[name]] = wish
    cap = np.minimum(cap, tree.max_current_a)
    room_a, room_kw = tree.room(1, non_ev_load_a=non_ev_load_a, caps_a=caps_a, caps_kw=caps_kw)
    first = [] if order is None else list(order)
    sequence = [tree.evse_index[name] for name in [*first, *(n for n in wanted_a if n not in first)]]
    slot = SlotRoom(tree.rows, tree.min_current_a, tree.kw_per_a, room_a[:, 0], room_kw[:, 0])
    amps = share_slot(slot, cap, sequence)
    return {evse.name: float(amps[i]) for i, evse in enumerate(tree.evses)}
