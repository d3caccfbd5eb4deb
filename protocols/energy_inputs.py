"""What the energy manager decides from, per decision: prices, PV, sessions, measured load, external caps.

`EnergyInputs` is what a caller (the energy-manager actor) fills in at each decision; `prepare` checks
it against the tree and turns it into `SlotArrays`, the per-slot numbers that the greedy share and the
optimiser both work on, so the two always see the same limits:

- `ub[i, t]`: the most EVSE i may draw in slot t (A per phase): its maximum, lowered by an external
  limit (an OCPP charging profile), and 0 when no car is there;
- `room_a`, `room_kw`: what each tree row may carry for EVs in each slot (`LimitTree.room`);
- `need_kwh[i]`: energy still wanted in the horizon (unknown need: all the EVSE could take);
- `price[t]` (per kWh imported) and `pv_kw[t]` (site PV surplus: what PV produces beyond the non-EV
  consumption, free for EVs). PV lowers the bill, never a fuse: a cloud would overload the fuse
  before the next decision.

Slot 0 starts now. A session's `departure_slot` is the first slot in which the car is gone; None means
it stays beyond the horizon (the caller may substitute an assumed dwell time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from charger.protocols.limit_tree import FloatArray, LimitTree

__all__ = ["EnergyInputs", "Session", "SlotArrays", "prepare"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A car plugged in (or expected) at one EVSE."""

    energy_need_kwh: float | None = None
    """Energy still to deliver from the grid; None: as much as the EVSE can give before departure."""
    arrival_slot: int = 0
    """First slot with the car present; 0 for a car already plugged in, later for a reservation."""
    departure_slot: int | None = None
    """First slot without the car; None: present to the end of the horizon."""

    def __post_init__(self) -> None:
        need = self.energy_need_kwh
        if need is not None and (isinstance(need, bool) or not math.isfinite(need) or need < 0):
            raise ValueError(f"energy_need_kwh must be a finite number >= 0 or None, got {need!r}")
        if isinstance(self.arrival_slot, bool) or not isinstance(self.arrival_slot, int) or self.arrival_slot < 0:
            raise ValueError(f"arrival_slot must be an int >= 0, got {self.arrival_slot!r}")
        departure = self.departure_slot
        if departure is not None and (
            isinstance(departure, bool) or not isinstance(departure, int) or departure < self.arrival_slot
        ):
            raise ValueError(f"departure_slot must be an int >= arrival_slot {self.arrival_slot}, got {departure!r}")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class EnergyInputs:
    """Everything that changes between two decisions; the tree and the horizon stay."""

    price: npt.ArrayLike
    """Price per kWh imported, one per slot (any currency; negative prices are allowed)."""
    sessions: Mapping[str, Session] = field(default_factory=dict)
    """EVSE name -> its session; an EVSE without one gets 0 A."""
    pv_surplus_kw: npt.ArrayLike = 0.0
    """Site PV surplus forecast, kW per slot (or one figure)."""
    non_ev_load_a: Mapping[str, npt.ArrayLike] = field(default_factory=dict)
    """Node -> measured non-EV current through it: (L1, L2, L3) or one triple per slot."""
    evse_limit_a: Mapping[str, npt.ArrayLike] = field(default_factory=dict)
    """EVSE -> external current limit (OCPP smart charging), A per slot or one figure."""
    node_limit_a: Mapping[str, npt.ArrayLike] = field(default_factory=dict)
    """Node -> external current cap per phase (a grid-operator signal), A per slot or one figure."""
    node_limit_kw: Mapping[str, npt.ArrayLike] = field(default_factory=dict)
    """Node -> external power cap, kW per slot or one figure."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SlotArrays:
    """The numbers of one decision, aligned with `LimitTree.evses` (rows) and slots (columns)."""

    slot_h: float
    ub: FloatArray
    """(N, T) largest current per EVSE and slot, 0 where no car is present."""
    max_a: FloatArray
    """(N,) each EVSE's own maximum, to tell its own limit from an external one."""
    present: npt.NDArray[np.bool_]
    """(N, T) a car is plugged in."""
    need_kwh: FloatArray
    """(N,) energy wanted in the horizon, already capped at what `ub` allows."""
    min_a: FloatArray
    kw_per_a: FloatArray
    room_a: FloatArray
    """(phase rows, T) EV current each (node, phase) may carry."""
    room_kw: FloatArray
    """(power rows, T) EV power each node may carry."""
    fuse_room_a: FloatArray
    """Like `room_a` without the external node caps: tells a fuse from a cap in explanations."""
    fuse_room_kw: FloatArray
    price: FloatArray
    pv_kw: FloatArray

    @property
    def slots(self) -> int:
        return int(self.ub.shape[1])

    def slot_energy_kwh(self, amps: FloatArray) -> FloatArray:
        """Energy per EVSE (rows) of currents `amps` held for one slot; `amps` is (N,) or (N, T)."""
        scale = self.kw_per_a * self.slot_h
        return amps * (scale[:, None] if amps.ndim == 2 else scale)


def prepare(tree: LimitTree, inputs: EnergyInputs, *, slots: int, slot_h: float) -> SlotArrays:
    """Check `inputs` against the tree and horizon and compute the arrays both planners use."""
    if slots < 1 or not math.isfinite(slot_h) or slot_h <= 0:
        raise ValueError(f"need slots >= 1 and slot_h > 0, got {slots} and {slot_h}")
    _known("sessions", inputs.sessions, tree.evse_index)
    _known("evse_limit_a", inputs.evse_limit_a, tree.evse_index)
    price = _series("price", inputs.price, slots, finite=True)
    pv_kw = np.maximum(_series("pv_surplus_kw", inputs.pv_surplus_kw, slots, finite=True), 0.0)
    n = len(tree.evses)
    max_a = tree.max_current_a
    present = np.zeros((n, slots), dtype=bool)
    for name, session in inputs.sessions.items():
        end = slots if session.departure_slot is None else min(session.departure_slot, slots)
        present[tree.evse_index[name], min(session.arrival_slot, slots) : end] = True
    limit_a = np.repeat(max_a[:, None], slots, axis=1)
    for name, value in inputs.evse_limit_a.items():
        external = np.maximum(_series(f"evse_limit_a of {name!r}", value, slots), 0.0)
        i = tree.evse_index[name]
        limit_a[i] = np.minimum(limit_a[i], external)
    ub = np.where(present, limit_a, 0.0)
    kw_per_a = tree.kw_per_a
    most_kwh = ub.sum(axis=1) * kw_per_a * slot_h
    need = most_kwh.copy()
    for name, session in inputs.sessions.items():
        if session.energy_need_kwh is not None:
            i = tree.evse_index[name]
            need[i] = min(session.energy_need_kwh, most_kwh[i])
    room_a, room_kw = tree.room(
        slots, non_ev_load_a=inputs.non_ev_load_a, caps_a=inputs.node_limit_a, caps_kw=inputs.node_limit_kw
    )
    fuse_room_a, fuse_room_kw = tree.room(slots, non_ev_load_a=inputs.non_ev_load_a)
    return SlotArrays(
        slot_h=slot_h,
        ub=ub,
        max_a=max_a,
        present=present,
        need_kwh=need,
        min_a=tree.min_current_a,
        kw_per_a=kw_per_a,
        room_a=room_a,
        room_kw=room_kw,
        fuse_room_a=fuse_room_a,
        fuse_room_kw=fuse_room_kw,
        price=price,
        pv_kw=pv_kw,
    )


def _known(what: str, names: Mapping[str, object], known: Mapping[str, int]) -> None:
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"{what} given for unknown EVSEs: {', '.join(unknown)}")


def _series(what: str, value: npt.ArrayLike, slots: int, *, finite: bool = False) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(slots, float(array))
    if array.shape != (slots,):
        raise ValueError(f"{what}: expected a number or {slots} per-slot figures, got shape {array.shape}")
    if np.isnan(array).any() or (finite and not np.isfinite(array).all()):
        raise ValueError(f"{what}: every figure must be {'finite' if finite else 'a number'}")
    return array
