"""The limits per node in slot 0 of a plan: rating, external cap, non-EV load, planned EV load, headroom.

For the status view and `charger.ctl plan`: one row per (node, phase) with a current rating or cap and
one per node with a power rating or cap; rows without any limit tell nothing and are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from charger.protocols.energy_inputs import EnergyInputs, SlotArrays
from charger.protocols.limit_tree import PHASES, POWER, FloatArray, LimitTree

__all__ = ["NodeRow", "node_rows"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRow:
    node: str
    phase: str
    unit: str
    limit: float | None
    cap: float | None
    non_ev: float
    planned: float
    headroom: float


def node_rows(tree: LimitTree, inputs: EnergyInputs, arrays: SlotArrays, currents: FloatArray) -> list[NodeRow]:
    """Rows for slot 0 of `currents` ((N, T) A); `arrays` are the prepared `inputs`."""
    rows = tree.rows
    now = currents[:, 0] if currents.size else np.zeros(len(tree.evses))
    loads = tree.node_loads_a(inputs.non_ev_load_a, arrays.slots)
    planned_a = rows.phase_matrix @ now
    planned_kw = rows.power_matrix @ now
    out: list[NodeRow] = []
    for r, (name, phase) in enumerate(rows.phase_rows):
        limit = tree.nodes[name].phase_limits_a[phase]
        cap = _cap(inputs.node_limit_a.get(name))
        if math.isinf(limit) and cap is None:
            continue
        out.append(
            NodeRow(
                node=name,
                phase=PHASES[phase],
                unit="A",
                limit=None if math.isinf(limit) else limit,
                cap=cap if cap is not None and cap < limit else None,
                non_ev=float(loads[name][0, phase]),
                planned=float(planned_a[r]),
                headroom=float(arrays.room_a[r, 0] - planned_a[r]),
            )
        )
    for r, name in enumerate(rows.power_rows):
        node = tree.nodes[name]
        limit = node.power_limit
        cap = _cap(inputs.node_limit_kw.get(name))
        if math.isinf(limit) and cap is None:
            continue
        out.append(
            NodeRow(
                node=name,
                phase=POWER,
                unit="kW",
                limit=None if math.isinf(limit) else limit,
                cap=cap if cap is not None and cap < limit else None,
                non_ev=float(loads[name][0].sum() * node.voltage_v / 1000.0),
                planned=float(planned_kw[r]),
                headroom=float(arrays.room_kw[r, 0] - planned_kw[r]),
            )
        )
    return sorted(out, key=lambda row: (list(tree.nodes).index(row.node), row.phase))


def _cap(value: object) -> float | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64)
    first = float(array.flat[0])
    return None if math.isinf(first) else first
