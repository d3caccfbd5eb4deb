"""What the energy manager knows about its site between decisions, turned into `EnergyInputs` at each one.

The energy-manager actor feeds `SiteState` with what it hears (connector statuses, meter readings, needs
and caps from the control API, forecasts) and asks it for the inputs of a decision at time `now`. No I/O
and no clock here, so every rule below is testable on its own:

- Slots are aligned to the clock: slot 0 is the slot (of `slot_s`) that contains `now`. A configured
  price or PV profile is a daily profile: entry k is the k-th slot after local midnight, repeated. A
  forecast set at run time (`set_forecast`) replaces the profile for the slots it covers.
- PV surplus: the forecast, with slot 0 replaced by the live figure when a meter gives one. With a
  grid meter at the root, surplus = EV power - grid import (export shows up as surplus); otherwise
  with PV meters, surplus = PV production - the load meters' power.
- Non-EV load per node (A per phase): a `load` meter measures non-EV consumers only; a `grid` meter
  measures everything through its node, so the EVs' own metered power (spread over the phases they
  load) is taken off. Phase currents carry no sign: while a grid meter exports (power < 0) its currents
  are generation, counted as no load. Offline meters keep their last good values.
- External EVSE limits: the lowest grant among the connector's other grantors (OCPP smart charging, a
  manual override), as its `ConnectorStatus.leases` reports them.
- Needs: the energy a session still wants is the need given minus what the connector metered since;
  a departure in the past means unknown again (the car stayed longer than announced).
- Caps: a node cap applies to the slots that start before its `valid_until`; expired caps are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from charger.protocols.energy_inputs import EnergyInputs, Session
from charger.protocols.limit_tree import FloatArray, LimitTree

__all__ = [
    "EvseSample",
    "Measured",
    "MeterPlace",
    "MeterSample",
    "Need",
    "NodeCap",
    "SiteState",
    "deviation",
]

Measures = Literal["grid", "load", "pv"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterPlace:
    """Where a site meter sits and what it measures."""

    node: str
    measures: Measures
    """"grid": everything through the node, EVs included; "load": non-EV consumers; "pv": production."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSample:
    power_w: float | None
    currents_a: tuple[float | None, float | None, float | None] = (None, None, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvseSample:
    """One connector as its last status showed it."""

    power_w: float | None = None
    energy_wh: float | None = None
    session_id: str | None = None
    external_a: float | None = None


@dataclass(slots=True, kw_only=True)
class Need:
    energy_kwh: float | None
    departure: float | None
    session_id: str | None
    """The session it was given for; None: the next one."""
    baseline_wh: float = 0.0
    """The session's metered energy when the need was given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCap:
    amps: float | None = None
    kw: float | None = None
    valid_until: float | None = None
    source: str = "config"


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """The live figures of one moment: what a meter deviation is judged against."""

    non_ev_a: Mapping[str, FloatArray] = field(default_factory=dict)
    """Node -> (3,) non-EV current per phase."""
    pv_kw: float | None = None


def deviation(a: Measured, b: Measured) -> tuple[float, float]:
    """The largest change in non-EV current (A, any node and phase) and in live PV surplus (kW)."""
    zero = np.zeros(3)
    amps = max(
        (float(np.abs(a.non_ev_a.get(n, zero) - b.non_ev_a.get(n, zero)).max()) for n in {*a.non_ev_a, *b.non_ev_a}),
        default=0.0,
    )
    kw = 0.0 if a.pv_kw is None and b.pv_kw is None else abs((a.pv_kw or 0.0) - (b.pv_kw or 0.0))
    return amps, kw


@dataclass(slots=True)
class _Series:
    starts_at: float
    values: FloatArray


class SiteState:
    """Live knowledge of one site; `inputs(now)` gives a decision's `EnergyInputs`."""

    def __init__(
        self,
        tree: LimitTree,
        *,
        slot_s: float,
        slots: int,
        prices: Sequence[float],
        pv_surplus_kw: Sequence[float] = (0.0,),
        meters: Mapping[str, MeterPlace] | None = None,
        caps: Mapping[str, NodeCap] | None = None,
        utc_offset_s: float = 0.0,
    ) -> None:
        if slot_s <= 0 or slots < 1 or not prices or not pv_surplus_kw:
            raise ValueError("need slot_s > 0, slots >= 1 and at least one price and one PV figure")
        self.tree, self.slot_s, self.slots, self.utc_offset_s = tree, slot_s, slots, utc_offset_s
        self.price_profile = np.asarray(prices, dtype=np.float64)
        self.pv_profile = np.maximum(np.asarray(pv_surplus_kw, dtype=np.float64), 0.0)
        self.meter_places: dict[str, MeterPlace] = dict(meters or {})
        for name, place in self.meter_places.items():
            if place.node not in tree.nodes:
                raise ValueError(f"meter {name!r} is placed at unknown node {place.node!r}")
        self.cars: set[str] = set()
        self.evses: dict[str, EvseSample] = {}
        self.meters: dict[str, MeterSample] = {}
        self.needs: dict[str, Need] = {}
        self.caps: dict[str, NodeCap] = {}
        for node, cap in (caps or {}).items():
            self.set_cap(node, cap)
        self.price_override: _Series | None = None
        self.pv_override: _Series | None = None
        self._under = {node: tree.evses_under(node) for node in tree.nodes}  # asked at every status

    # --- what the actor hears ----------------------------------------------------------------------

    def set_cap(self, node: str, cap: NodeCap | None) -> None:
        if node not in self.tree.nodes:
            raise ValueError(f"no node {node!r} in the tree; nodes: {', '.join(self.tree.nodes)}")
        if cap is None or (cap.amps is None and cap.kw is None):
            self.caps.pop(node, None)
            return
        for value in (cap.amps, cap.kw):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"a cap must be a finite number >= 0, got {value!r}")
        self.caps[node] = cap

    def expire_caps(self, now: float) -> list[str]:
        """Drop caps that ended; returns their nodes."""
        gone = [n for n, c in self.caps.items() if c.valid_until is not None and c.valid_until <= now]
        for node in gone:
            del self.caps[node]
        return gone

    def set_need(self, evse: str, energy_kwh: float | None, departure: float | None) -> None:
        if evse not in self.tree.evse_index:
            raise ValueError(f"no EVSE {evse!r} in the tree")
        if energy_kwh is not None and (not math.isfinite(energy_kwh) or energy_kwh < 0):
            raise ValueError(f"energy need must be a finite number >= 0 kWh, got {energy_kwh!r}")
        if energy_kwh is None and departure is None:
            self.needs.pop(evse, None)
            return
        sample = self.evses.get(evse, EvseSample())
        baseline = (sample.energy_wh or 0.0) if sample.session_id is not None else 0.0
        self.needs[evse] = Need(
            energy_kwh=energy_kwh, departure=departure, session_id=sample.session_id, baseline_wh=baseline
        )

    def session_ended(self, evse: str) -> None:
        need = self.needs.get(evse)
        if need is not None and need.session_id is not None:
            del self.needs[evse]

    def set_forecast(self, starts_at: float, prices: Sequence[float] | None, pv_kw: Sequence[float] | None) -> None:
        for what, values in (("prices", prices), ("pv_surplus_kw", pv_kw)):
            if values is not None and (not values or not all(math.isfinite(v) for v in values)):
                raise ValueError(f"{what}: at least one figure, all finite")
        if prices is not None:
            self.price_override = _Series(starts_at, np.asarray(prices, dtype=np.float64))
        if pv_kw is not None:
            self.pv_override = _Series(starts_at, np.maximum(np.asarray(pv_kw, dtype=np.float64), 0.0))

    def external_limits(self) -> dict[str, float]:
        return {name: s.external_a for name, s in self.evses.items() if s.external_a is not None}

    def snapshot(self) -> dict[str, Any]:
        """What must survive a restart (msgpack-able): the needs given and the caps set at run time."""
        return {
            "needs": {e: [n.energy_kwh, n.departure, n.session_id, n.baseline_wh] for e, n in self.needs.items()},
            "caps": {
                node: [c.amps, c.kw, c.valid_until, c.source] for node, c in self.caps.items() if c.source != "config"
            },
        }

    def restore(self, snapshot: Mapping[str, Any], now: float) -> None:
        """Take back a `snapshot`, skipping what no longer fits the tree and caps that ended."""
        for evse, (kwh, departure, session_id, baseline) in snapshot.get("needs", {}).items():
            if evse in self.tree.evse_index:
                self.needs[evse] = Need(
                    energy_kwh=kwh, departure=departure, session_id=session_id, baseline_wh=baseline
                )
        for node, (amps, kw, until, source) in snapshot.get("caps", {}).items():
            if node in self.tree.nodes and (until is None or until > now):
                self.caps[node] = NodeCap(amps=amps, kw=kw, valid_until=until, source=source)

    # --- a decision's inputs -----------------------------------------------------------------------

    def slot_start(self, now: float) -> float:
        return math.floor(now / self.slot_s) * self.slot_s

    def price(self, now: float) -> FloatArray:
        return self._series(now, self.price_profile, self.price_override)

    def pv_forecast(self, now: float) -> FloatArray:
        return self._series(now, self.pv_profile, self.pv_override)

    def remaining_need(self, evse: str) -> float | None:
        need = self.needs.get(evse)
        if need is None or need.energy_kwh is None:
            return None
        sample = self.evses.get(evse, EvseSample())
        if need.session_id is None and sample.session_id is not None:  # given before the session began
            need.session_id, need.baseline_wh = sample.session_id, 0.0
        delivered = 0.0
        if sample.session_id is not None and sample.session_id == need.session_id:
            delivered = max((sample.energy_wh or 0.0) - need.baseline_wh, 0.0) / 1000.0
        return max(need.energy_kwh - delivered, 0.0)

    def departure_slot(self, evse: str, now: float) -> int | None:
        need = self.needs.get(evse)
        if need is None or need.departure is None or need.departure <= now:
            return None  # unknown, or the car stayed beyond it: plan as if unknown
        return max(1, math.floor((need.departure - self.slot_start(now)) / self.slot_s))

    def measured(self) -> Measured:
        """Non-EV current per metered node and the live PV surplus, from the last readings."""
        non_ev: dict[str, FloatArray] = {}
        ev_kw_total = sum((s.power_w or 0.0) for s in self.evses.values()) / 1000.0
        grid_kw: float | None = None
        pv_kw, load_kw, any_pv = 0.0, 0.0, False
        for name, place in self.meter_places.items():
            sample = self.meters.get(name)
            if sample is None or sample.power_w is None:
                continue
            if place.measures == "pv":
                pv_kw, any_pv = pv_kw + abs(sample.power_w) / 1000.0, True
                continue
            if place.measures == "load":
                load_kw += sample.power_w / 1000.0
                amps = self._meter_currents(sample)
            else:
                if place.node == self.tree.root:
                    grid_kw = (grid_kw or 0.0) + sample.power_w / 1000.0
                amps = np.zeros(3) if sample.power_w < 0 else self._meter_currents(sample)
                amps = amps - self._ev_currents(place.node)
            non_ev[place.node] = non_ev.get(place.node, np.zeros(3)) + np.maximum(amps, 0.0)
        live_pv: float | None = None
        if grid_kw is not None:
            live_pv = max(ev_kw_total - grid_kw, 0.0)
        elif any_pv:
            live_pv = max(pv_kw - load_kw, 0.0)
        return Measured(non_ev_a=non_ev, pv_kw=live_pv)

    def inputs(self, now: float, measured: Measured | None = None) -> EnergyInputs:
        measured = self.measured() if measured is None else measured
        self.expire_caps(now)
        sessions = {}
        for name in sorted(self.cars):
            sessions[name] = Session(
                energy_need_kwh=self.remaining_need(name), departure_slot=self.departure_slot(name, now)
            )
        pv = self.pv_forecast(now)
        if measured.pv_kw is not None:
            pv[0] = measured.pv_kw
        starts = self.slot_start(now) + self.slot_s * np.arange(self.slots)
        caps_a, caps_kw = {}, {}
        for node, cap in self.caps.items():
            active = np.ones(self.slots, dtype=bool) if cap.valid_until is None else starts < cap.valid_until
            if cap.amps is not None:
                caps_a[node] = np.where(active, cap.amps, np.inf)
            if cap.kw is not None:
                caps_kw[node] = np.where(active, cap.kw, np.inf)
        return EnergyInputs(
            price=self.price(now),
            sessions=sessions,
            pv_surplus_kw=pv,
            non_ev_load_a=dict(measured.non_ev_a),
            evse_limit_a=self.external_limits(),
            node_limit_a=caps_a,
            node_limit_kw=caps_kw,
        )

    # --- helpers -------------------------------------------------------------------------------------

    def _series(self, now: float, profile: FloatArray, override: _Series | None) -> FloatArray:
        first = round((self.slot_start(now) + self.utc_offset_s) / self.slot_s)
        day = round(86400 / self.slot_s)
        index = (first + np.arange(self.slots)) % day
        values = profile[index % len(profile)]
        if override is not None:
            offset = round((self.slot_start(now) - self.slot_start(override.starts_at)) / self.slot_s)
            k = offset + np.arange(self.slots)  # a forecast starting mid-slot covers that whole slot
            covered = (k >= 0) & (k < len(override.values))
            values = np.where(covered, override.values[np.clip(k, 0, len(override.values) - 1)], values)
        return np.asarray(values, dtype=np.float64)

    def _meter_currents(self, sample: MeterSample) -> FloatArray:
        if all(c is not None for c in sample.currents_a):
            return np.array([float(c or 0.0) for c in sample.currents_a])
        per_phase = (sample.power_w or 0.0) / (3 * 230.0)  # no phase currents: spread the power evenly
        return np.full(3, max(per_phase, 0.0))

    def _ev_currents(self, node: str) -> FloatArray:
        """The metered current per phase of the EVSEs under `node`."""
        amps = np.zeros(3)
        for name in self._under[node]:
            power = self.evses.get(name, EvseSample()).power_w
            if not power or power <= 0:
                continue
            evse = self.tree.evses[self.tree.evse_index[name]]
            amps[list(evse.loaded_phases)] += power / (evse.voltage_v * evse.phases)
        return amps
