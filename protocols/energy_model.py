"""The energy optimiser: charging currents for every EVSE of a site over a rolling horizon.

The model is built once per tree and horizon (default 96 slots of 15 minutes), vectorised on cvxpy
Parameters, so a decision only sets `.value`s and solves again (DPP: re-canonicalisation takes a few
ms). Variables are the currents I[i, t] (A per phase) and the grid import g[t] (kW):

    minimise   dt * price . g  -  V * energy  +  u * dt * sum_t (t / T) * power[t]     (+ QP terms)
    subject to 0 <= I <= ub                       presence x min(own max, external EVSE limit)
               A_phase @ I <= room_a              every (node, phase) conductor, after non-EV load and caps
               A_power @ I <= room_kw             every node's power
               energy_i = dt * kW/A_i * sum_t I[i, t] <= need_i
               power[t] - pv[t] <= g[t] <= power[t],  g >= 0

`V` (`energy_value_per_kwh`, default 10 per kWh) must exceed any price: the LP first delivers as much
energy as the limits allow, then makes it as cheap as it can (PV surplus is free). The small urgency
term `u` breaks ties towards earlier slots. `g <= power` keeps the LP bounded at negative prices. The
LP goes to HiGHS with `warm_start=False`: cvxpy's warm start makes HiGHS re-solves 15-30x slower
(reference A3). The QP variant adds `fairness * dt * sum(I^2)` (spread current evenly among cars) and
`smoothing * sum((I[t+1] - I[t])^2)` (fewer jumps) and goes to CLARABEL; never HiGHS for a QP.

Minimum current: an EV draws 0 or at least its minimum, which an LP cannot express (it would take a
MILP). The LP ignores minima; `greedy_share.round_off` then walks the slots in order, caps each current
by the remaining need, rounds down to 0.1 A, sends anything below the minimum to 0, scales rows back
within room if the solver overshot by its tolerance, raises the EVSEs the plan wanted to serve to their
minimum (largest plan first) where every row above still has room, and hands the current the plan
meant for EVSEs left at 0 to the served ones under the same rows. It never breaks a fuse; it may
deliver a little less than the LP planned, which the next re-solve sees as remaining need.

When the solver fails, reports anything but an optimum, or the decision exceeds its time budget, the
greedy fair share (`greedy_share.greedy_schedule`) is returned instead, saying why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import cvxpy
import numpy as np
from charger.protocols.energy_inputs import EnergyInputs, SlotArrays, prepare
from charger.protocols.energy_schedule import Schedule, explain
from charger.protocols.greedy_share import greedy_schedule, round_off
from charger.protocols.limit_tree import FloatArray, LimitTree

__all__ = ["EnergyModel", "ModelOptions", "greedy_plan"]

cp: Any = cvxpy  # cvxpy re-exports its atoms with `import *`, which mypy cannot follow

_ACCEPTED = ("optimal", "optimal_inaccurate")  # round_off makes an inaccurate optimum safe
_TIME_LIMIT_OPTION = {cp.HIGHS: "time_limit", cp.CLARABEL: "time_limit"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelOptions:
    """How the optimiser is built; fixed for the life of an `EnergyModel`."""

    slots: int = 96
    slot_h: float = 0.25
    variant: Literal["lp", "qp"] = "lp"
    solver: str | None = None
    """A cvxpy solver name; None: HIGHS for the LP, CLARABEL for the QP."""
    time_budget_s: float = 5.0
    """Longest a decision may take (data in, solve, round-off) before the greedy share is used instead."""
    energy_value_per_kwh: float = 10.0
    """What a delivered kWh is worth; slots priced above it are not used."""
    urgency_per_kwh: float = 1e-3
    """Tie-break: the same price later is worth this much less per kWh at the horizon's end."""
    fairness_weight: float = 1e-3
    """QP only: weight of sum(I^2) per slot-hour."""
    smoothing_weight: float = 1e-3
    """QP only: weight of the squared change of each current from slot to slot."""

    def __post_init__(self) -> None:
        if self.slots < 1 or self.slot_h <= 0:
            raise ValueError(f"need slots >= 1 and slot_h > 0, got {self.slots} and {self.slot_h}")
        if self.variant not in ("lp", "qp"):
            raise ValueError(f"variant must be 'lp' or 'qp', got {self.variant!r}")
        if self.time_budget_s < 0 or self.energy_value_per_kwh <= 0:
            raise ValueError("time_budget_s must be >= 0 and energy_value_per_kwh > 0")
        if min(self.urgency_per_kwh, self.fairness_weight, self.smoothing_weight) < 0:
            raise ValueError("urgency, fairness and smoothing weights must be >= 0")

    @property
    def solver_name(self) -> str:
        if self.solver is not None:
            return self.solver
        return str(cp.HIGHS if self.variant == "lp" else cp.CLARABEL)


class EnergyModel:
    """The optimiser for one tree and horizon: build once, `solve` at every decision."""

    def __init__(self, tree: LimitTree, options: ModelOptions | None = None) -> None:
        if not tree.evses:
            raise ValueError("a tree without EVSEs has nothing to optimise")
        started = time.perf_counter()
        self.tree, self.options = tree, options or ModelOptions()
        n, slots, dt = len(tree.evses), self.options.slots, self.options.slot_h
        rows = tree.rows
        self._amps = cp.Variable((n, slots), nonneg=True, name="amps")
        grid = cp.Variable(slots, nonneg=True, name="grid_kw")
        self._ub = cp.Parameter((n, slots), nonneg=True, name="ub")
        self._room_a = cp.Parameter((len(rows.phase_rows), slots), nonneg=True, name="room_a")
        self._room_kw = cp.Parameter((len(rows.power_rows), slots), nonneg=True, name="room_kw")
        self._need = cp.Parameter(n, nonneg=True, name="need_kwh")
        self._price = cp.Parameter(slots, name="price")
        self._pv = cp.Parameter(slots, nonneg=True, name="pv_kw")
        kw_per_a = tree.kw_per_a
        power = kw_per_a @ self._amps
        energy = cp.multiply(kw_per_a * dt, cp.sum(self._amps, axis=1))
        lateness = np.arange(slots) / slots
        objective = (
            dt * (self._price @ grid)
            - self.options.energy_value_per_kwh * cp.sum(energy)
            + self.options.urgency_per_kwh * dt * (power @ lateness)
        )
        if self.options.variant == "qp":
            objective += self.options.fairness_weight * dt * cp.sum_squares(self._amps)
            if slots > 1:
                objective += self.options.smoothing_weight * cp.sum_squares(cp.diff(self._amps, axis=1))
        constraints = [
            self._amps <= self._ub,
            rows.phase_matrix @ self._amps <= self._room_a,
            rows.power_matrix @ self._amps <= self._room_kw,
            energy <= self._need,
            grid >= power - self._pv,
            grid <= power,
        ]
        self.problem = cp.Problem(cp.Minimize(objective), constraints)
        self.build_s = time.perf_counter() - started
        """Time to build the cvxpy problem (the first solve also compiles it)."""

    @property
    def plan_a(self) -> FloatArray | None:
        """The solver's continuous (N, T) currents of the last solve, before round-off; None before any."""
        value = self._amps.value
        return None if value is None else np.asarray(value, dtype=np.float64)

    def solve(self, inputs: EnergyInputs) -> Schedule:
        """Plan the horizon for `inputs`; the greedy share with its reason when the solver lets us down."""
        started = time.perf_counter()
        arrays = prepare(self.tree, inputs, slots=self.options.slots, slot_h=self.options.slot_h)
        self._ub.value, self._need.value = arrays.ub, arrays.need_kwh
        self._room_a.value, self._room_kw.value = arrays.room_a, arrays.room_kw
        self._price.value, self._pv.value = arrays.price, arrays.pv_kw
        budget, solver = self.options.time_budget_s, self.options.solver_name
        options: dict[str, Any] = {}
        if solver in _TIME_LIMIT_OPTION:
            options[_TIME_LIMIT_OPTION[solver]] = max(budget - (time.perf_counter() - started), 1e-3)
        try:
            self.problem.solve(solver=solver, warm_start=False, **options)
        except (cp.error.SolverError, ValueError) as exc:
            return greedy_plan(self.tree, arrays, started, f"solver {solver} failed: {exc}")
        status, plan = self.problem.status, self._amps.value
        if status not in _ACCEPTED or plan is None:
            return greedy_plan(self.tree, arrays, started, f"solver {solver} returned status {status!r}")
        currents = round_off(self.tree, arrays, np.asarray(plan, dtype=np.float64))
        elapsed = time.perf_counter() - started
        if elapsed > budget:
            return greedy_plan(
                self.tree, arrays, started, f"solver {solver} took {elapsed:.3f} s, over the {budget:g} s budget"
            )
        return Schedule(
            evses=tuple(evse.name for evse in self.tree.evses),
            currents_a=currents,
            slot_h=arrays.slot_h,
            planner=solver,
            status=status,
            fallback_reason=None,
            solve_s=time.perf_counter() - started,
            explanations=explain(self.tree, arrays, currents, np.asarray(plan, dtype=np.float64)),
            objective=float(self.problem.value),
        )


def greedy_plan(
    tree: LimitTree, arrays: SlotArrays, started: float | None = None, fallback_reason: str | None = None
) -> Schedule:
    """The greedy fair share as a `Schedule`: the fallback (with its reason) and the baseline (without)."""
    started = time.perf_counter() if started is None else started
    currents: FloatArray = greedy_schedule(tree, arrays)
    asked = currents.copy()  # greedy asks, in slot 0, for all the car can take
    asked[:, 0] = np.minimum(arrays.ub[:, 0], arrays.need_kwh / (arrays.kw_per_a * arrays.slot_h))
    return Schedule(
        evses=tuple(evse.name for evse in tree.evses),
        currents_a=currents,
        slot_h=arrays.slot_h,
        planner="greedy",
        status="fallback" if fallback_reason else "greedy",
        fallback_reason=fallback_reason,
        solve_s=time.perf_counter() - started,
        explanations=explain(tree, arrays, currents, asked),
    )
