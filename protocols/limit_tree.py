"""The site's tree of limits: grid connection, transformer, feeders and fuses down to the EVSEs.

Every node may carry a current limit per phase (A) and a power limit (kW); the EVSEs are the leaves.
An EVSE has a minimum and maximum current, a phase count and, when it is single-phase, the grid phase
it loads (a 1-phase EVSE on L2 puts all its current on the L2 conductor of every ancestor). A
three-phase EVSE loads every phase with the same current, whatever its rotation.

The tree is validated as a whole when it is built: every problem is reported in one `LimitTreeError`
(unknown parents, cycles, duplicate names, negative limits, min above max...), like the topology check.

The tree also turns itself into the linear rows that the greedy share and the optimiser both use: one
row per (node, phase) summing the currents of the EVSEs that load that phase, and one row per node
summing their power. `room` gives each row's limit per time slot once measured non-EV load and external
caps are taken off; `violations` checks a set of EVSE currents against every ancestor, phase by phase.

Non-EV load is given per node as the current through that node that is not drawn by its EVSEs (a meter
reading minus the EVSEs' currents). A node never carries less than the sum of its child nodes'
figures, so a meter on a feeder also counts at the transformer above it. Negative figures (local
generation) count as zero: generation can vanish before the next decision, a fuse cannot wait for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
from charger.protocols.limit_nodes import (
    PHASES,
    POWER,
    Evse,
    FloatArray,
    LimitNode,
    LimitTreeError,
    Phase,
    Violation,
    structure_problems,
)
from scipy import sparse

__all__ = [
    "PHASES",
    "POWER",
    "Evse",
    "FloatArray",
    "LimitNode",
    "LimitTree",
    "LimitTreeError",
    "Phase",
    "TreeRows",
    "Violation",
]


@dataclass(frozen=True, slots=True, eq=False)
class TreeRows:
    """The tree as linear rows over the EVSE currents (column i is `LimitTree.evses[i]`).

    `phase_matrix @ amps` gives each (node, phase) conductor's EV current; `power_matrix @ amps` each
    node's EV power in kW. Rows that no EVSE loads are left out.
    """

    phase_rows: tuple[tuple[str, int], ...]
    """(node, phase index) of each row of `phase_matrix`."""
    phase_matrix: sparse.csr_matrix
    power_rows: tuple[str, ...]
    """Node of each row of `power_matrix`."""
    power_matrix: sparse.csr_matrix
    evse_phase_rows: tuple[npt.NDArray[np.intp], ...]
    """For each EVSE, the indices of the phase rows it loads, nearest node first."""
    evse_power_rows: tuple[npt.NDArray[np.intp], ...]
    """For each EVSE, the indices of the power rows it counts in, nearest node first."""
    phase_members: sparse.csr_matrix
    """`phase_matrix` transposed: maps a value per phase row to the EVSEs under it."""
    power_members: sparse.csr_matrix
    """`power_matrix` transposed, likewise."""


class LimitTree:
    """A validated tree of `LimitNode`s with `Evse` leaves; the order of `evses` is the column order."""

    def __init__(self, nodes: Iterable[LimitNode], evses: Iterable[Evse]) -> None:
        node_list, evse_list = list(nodes), list(evses)
        problems = structure_problems(node_list, evse_list)
        if problems:
            raise LimitTreeError(problems)
        self.nodes: Mapping[str, LimitNode] = MappingProxyType({node.name: node for node in node_list})
        self.evses: tuple[Evse, ...] = tuple(evse_list)
        self.evse_index: Mapping[str, int] = MappingProxyType({evse.name: i for i, evse in enumerate(self.evses)})
        self.root: str = next(node.name for node in node_list if node.parent is None)
        self.children: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {name: tuple(n.name for n in node_list if n.parent == name) for name in self.nodes}
        )
        self._bottom_up = _bottom_up_order(self.root, self.children)
        self.rows = self._build_rows()

    def __repr__(self) -> str:
        return f"LimitTree(nodes={list(self.nodes.values())!r}, evses={list(self.evses)!r})"

    # --- structure ------------------------------------------------------------------------------

    def ancestors(self, name: str) -> tuple[str, ...]:
        """The nodes above an EVSE or node, nearest first, ending at the root."""
        if name in self.evse_index:
            parent: str | None = self.evses[self.evse_index[name]].parent
        elif name in self.nodes:
            parent = self.nodes[name].parent
        else:
            raise KeyError(f"{name!r} is neither a node nor an EVSE of this tree")
        chain: list[str] = []
        while parent is not None:
            chain.append(parent)
            parent = self.nodes[parent].parent
        return tuple(chain)

    def evses_under(self, node: str) -> tuple[str, ...]:
        if node not in self.nodes:
            raise KeyError(f"{node!r} is not a node of this tree")
        return tuple(evse.name for evse in self.evses if node in self.ancestors(evse.name))

    @property
    def max_current_a(self) -> FloatArray:
        return np.array([evse.max_current_a for evse in self.evses], dtype=np.float64)

    @property
    def min_current_a(self) -> FloatArray:
        return np.array([evse.min_current_a for evse in self.evses], dtype=np.float64)

    @property
    def kw_per_a(self) -> FloatArray:
        return np.array([evse.kw_per_a for evse in self.evses], dtype=np.float64)

    def _build_rows(self) -> TreeRows:
        n = len(self.evses)
        chains = [self.ancestors(evse.name) for evse in self.evses]  # nearest node first
        under: dict[str, list[int]] = {name: [] for name in self.nodes}
        for i, chain in enumerate(chains):
            for name in chain:
                under[name].append(i)
        phase_index: dict[tuple[str, int], int] = {}
        phase_cols: list[list[int]] = []
        for name in self.nodes:
            for phase in range(3):
                members = [i for i in under[name] if phase in self.evses[i].loaded_phases]
                if members:
                    phase_index[(name, phase)] = len(phase_cols)
                    phase_cols.append(members)
        power_rows = [name for name in self.nodes if under[name]]
        power_index = {name: r for r, name in enumerate(power_rows)}
        kw = self.kw_per_a
        phase_matrix = _rows_matrix(phase_cols, [np.ones(len(c)) for c in phase_cols], n)
        power_matrix = _rows_matrix([under[r] for r in power_rows], [kw[under[r]] for r in power_rows], n)
        return TreeRows(
            phase_rows=tuple(phase_index),
            phase_matrix=phase_matrix,
            power_rows=tuple(power_rows),
            power_matrix=power_matrix,
            phase_members=phase_matrix.T.tocsr(),
            power_members=power_matrix.T.tocsr(),
            evse_phase_rows=tuple(
                np.array([phase_index[(name, p)] for name in chain for p in self.evses[i].loaded_phases], dtype=np.intp)
                for i, chain in enumerate(chains)
            ),
            evse_power_rows=tuple(np.array([power_index[name] for name in chain], dtype=np.intp) for chain in chains),
        )

    # --- room and checks ------------------------------------------------------------------------

    def node_loads_a(self, non_ev_load_a: Mapping[str, npt.ArrayLike], slots: int) -> dict[str, FloatArray]:
        """Non-EV current through each node, shape (slots, 3): its own figure or its child nodes' sum,
        whichever is larger on each phase; negatives count as 0. Figures are (3,) or (slots, 3)."""
        unknown = sorted(set(non_ev_load_a) - set(self.nodes))
        if unknown:
            raise ValueError(f"non-EV load given for unknown nodes: {', '.join(unknown)}")
        loads: dict[str, FloatArray] = {}
        for name in self._bottom_up:
            own = np.zeros((slots, 3))
            if name in non_ev_load_a:
                own = _per_slot_phases(f"non-EV load of {name!r}", non_ev_load_a[name], slots)
            below = sum((loads[child] for child in self.children[name]), np.zeros((slots, 3)))
            loads[name] = np.maximum(np.maximum(own, below), 0.0)
        return loads

    def room(
        self,
        slots: int,
        *,
        non_ev_load_a: Mapping[str, npt.ArrayLike] | None = None,
        caps_a: Mapping[str, npt.ArrayLike] | None = None,
        caps_kw: Mapping[str, npt.ArrayLike] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """The EV current each phase row may carry and the EV power each power row may carry, per slot.

        Shapes (len(phase_rows), slots) and (len(power_rows), slots). A row's room is its node's limit,
        lowered by an external cap (`caps_a`: A per phase, `caps_kw`: kW; scalars or one figure per slot),
        minus the node's non-EV load, never below 0. A row without any limit gets the sum of its EVSEs'
        maxima, which never binds, so every figure is finite.
        """
        for what, caps in (("caps_a", caps_a), ("caps_kw", caps_kw)):
            unknown = sorted(set(caps or {}) - set(self.nodes))
            if unknown:
                raise ValueError(f"{what} given for unknown nodes: {', '.join(unknown)}")
        loads = self.node_loads_a(non_ev_load_a or {}, slots)
        rows = self.rows
        max_a = self.max_current_a
        max_row_a = rows.phase_matrix @ max_a
        room_a = np.empty((len(rows.phase_rows), slots))
        for r, (name, phase) in enumerate(rows.phase_rows):
            limit = np.full(slots, self.nodes[name].phase_limits_a[phase])
            if caps_a and name in caps_a:
                limit = np.minimum(limit, _per_slot(f"caps_a of {name!r}", caps_a[name], slots))
            room_a[r] = np.where(np.isinf(limit), float(max_row_a[r]), limit - loads[name][:, phase])
        room_kw = np.empty((len(rows.power_rows), slots))
        max_kw = rows.power_matrix @ max_a
        for r, name in enumerate(rows.power_rows):
            node = self.nodes[name]
            limit = np.full(slots, node.power_limit)
            if caps_kw and name in caps_kw:
                limit = np.minimum(limit, _per_slot(f"caps_kw of {name!r}", caps_kw[name], slots))
            non_ev_kw = loads[name].sum(axis=1) * node.voltage_v / 1000.0
            room_kw[r] = np.where(np.isinf(limit), float(max_kw[r]), limit - non_ev_kw)
        return np.maximum(room_a, 0.0), np.maximum(room_kw, 0.0)

    def violations(
        self,
        amps: Mapping[str, float],
        *,
        non_ev_load_a: Mapping[str, npt.ArrayLike] | None = None,
        caps_a: Mapping[str, float] | None = None,
        caps_kw: Mapping[str, float] | None = None,
        tolerance: float = 1e-6,
    ) -> list[Violation]:
        """Every limit that these per-EVSE currents (one instant) break, including each EVSE's own range.

        Missing EVSEs draw 0 A. Non-EV load and caps as for `room`, for this one instant.
        """
        unknown = sorted(set(amps) - set(self.evse_index))
        if unknown:
            raise ValueError(f"currents given for unknown EVSEs: {', '.join(unknown)}")
        found: list[Violation] = []
        current = np.zeros(len(self.evses))
        for name, value in amps.items():
            evse = self.evses[self.evse_index[name]]
            current[self.evse_index[name]] = value
            in_range = value == 0 or evse.min_current_a - tolerance <= value <= evse.max_current_a + tolerance
            if not math.isfinite(value) or not in_range:
                found.append(Violation(where=name, phase="range", load=value, limit=evse.max_current_a))
        room_a, room_kw = self.room(1, non_ev_load_a=non_ev_load_a, caps_a=caps_a, caps_kw=caps_kw)
        loads_a = self.rows.phase_matrix @ current
        for r, (name, phase) in enumerate(self.rows.phase_rows):
            if loads_a[r] > room_a[r, 0] + tolerance:
                found.append(Violation(where=name, phase=PHASES[phase], load=loads_a[r], limit=room_a[r, 0]))
        loads_kw = self.rows.power_matrix @ current
        for r, name in enumerate(self.rows.power_rows):
            if loads_kw[r] > room_kw[r, 0] + tolerance:
                found.append(Violation(where=name, phase=POWER, load=loads_kw[r], limit=room_kw[r, 0]))
        return found


def _rows_matrix(cols: Sequence[Sequence[int]], values: Sequence[FloatArray], n: int) -> sparse.csr_matrix:
    indptr = np.cumsum([0, *(len(c) for c in cols)])
    indices = np.array([i for c in cols for i in c], dtype=np.intp)
    data = np.concatenate([np.asarray(v, dtype=np.float64) for v in values]) if values else np.zeros(0)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(cols), n))


def _per_slot(what: str, value: npt.ArrayLike, slots: int) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(slots, float(array))
    if array.shape != (slots,):
        raise ValueError(f"{what}: expected a number or {slots} per-slot figures, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{what}: NaN is not a limit")
    return array


def _per_slot_phases(what: str, value: npt.ArrayLike, slots: int) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape == (3,):
        array = np.broadcast_to(array, (slots, 3)).copy()
    if array.shape != (slots, 3):
        raise ValueError(f"{what}: expected (L1, L2, L3) amps or one such triple per slot, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: every figure must be finite")
    return array


def _bottom_up_order(root: str, children: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    order: list[str] = []
    stack = [root]
    while stack:
        name = stack.pop()
        order.append(name)
        stack.extend(children[name])
    return tuple(reversed(order))
