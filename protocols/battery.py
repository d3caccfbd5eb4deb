"""The simulated car's traction battery: state of charge, energy bookkeeping and the charge taper.

Pure code: no clock. SoC moves only through `Battery.charge`, which the car simulator calls with the
current that actually flowed and for how long (simulated time).

EVerest's EvManager keeps the same numbers (``car_simulation.cpp::simulate_soc``: energy = current *
``ac_nominal_voltage`` * phases * time, SoC = stored / capacity) but has no efficiency (effectively 1.0)
and no taper: its car draws full current up to 100 % (everest.md §7). Here a real car's constant-current
/ taper shape is modelled so that chargers see the current drop at the end of a session, and at 100 % the
car pauses (CP B, "EV pause"), which is what an EVSE must then handle (everest.md §4, ChargingPausedEV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Battery", "Taper"]


def _check(what: str, value: float, ok: bool, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not ok:
        raise ValueError(f"invalid {what} {value!r}: expected {expected}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Taper:
    """How the car's current falls off near a full battery.

    Up to `start_soc` the car asks for its full current (constant current). From `start_soc` to 100 % the
    request falls linearly to `end_current_a`; at 100 % it is 0 and the car pauses. A car whose full
    current is already at or below `end_current_a` does not taper; it just stops at 100 %.
    """

    start_soc: float = 80.0
    """SoC in percent where the taper begins; the default is a typical lithium-ion knee."""
    end_current_a: float = 6.0
    """Current per phase just below 100 %. The default is IEC 61851-1's lowest PWM-signalled current,
    so the tapered request stays one the charger can also express."""

    def __post_init__(self) -> None:
        _check("start_soc", self.start_soc, 0 <= self.start_soc < 100, "a percentage in [0, 100)")
        _check("end_current_a", self.end_current_a, self.end_current_a >= 0, "amperes >= 0")

    def limit(self, full_current_a: float, soc_percent: float) -> float:
        """The current the car asks for at `soc_percent`, given its untapered current `full_current_a`."""
        if soc_percent >= 100:
            return 0.0
        if soc_percent <= self.start_soc or full_current_a <= self.end_current_a:
            return full_current_a
        fraction = (soc_percent - self.start_soc) / (100 - self.start_soc)
        return full_current_a - (full_current_a - self.end_current_a) * fraction


class Battery:
    """Capacity, stored energy and the grid energy that went in.

    Defaults follow EVerest's EvManager configuration (``dc_energy_capacity`` 60000 Wh, ``soc`` 30,
    ``ac_nominal_voltage`` 230 V), except `efficiency`, which EVerest does not model (it is 1.0 there).

    Args:
        capacity_kwh: usable capacity.
        soc_percent: initial state of charge.
        nominal_voltage_v: phase-to-neutral voltage that turns current into power (no voltage drop).
        efficiency: share of the grid energy that ends up stored (on-board charger and battery losses).
        taper: the end-of-charge current profile.
    """

    def __init__(
        self,
        *,
        capacity_kwh: float = 60.0,
        soc_percent: float = 30.0,
        nominal_voltage_v: float = 230.0,
        efficiency: float = 0.9,
        taper: Taper | None = None,
    ) -> None:
        _check("capacity_kwh", capacity_kwh, capacity_kwh > 0, "kWh > 0")
        _check("nominal_voltage_v", nominal_voltage_v, nominal_voltage_v > 0, "volts > 0")
        _check("efficiency", efficiency, 0 < efficiency <= 1, "a fraction in (0, 1]")
        self.capacity_wh = capacity_kwh * 1000.0
        self.nominal_voltage_v = nominal_voltage_v
        self.efficiency = efficiency
        self.taper = taper if taper is not None else Taper()
        self.energy_drawn_wh = 0.0
        """Grid-side energy drawn so far (before losses): what a meter at the connector would count."""
        self._stored_wh = 0.0
        self.set_soc(soc_percent)

    def __repr__(self) -> str:
        return f"Battery(capacity_kwh={self.capacity_wh / 1000:g}, soc_percent={self.soc_percent:.3f})"

    @property
    def soc_percent(self) -> float:
        """State of charge in percent, 0-100."""
        return self._stored_wh / self.capacity_wh * 100.0

    @property
    def stored_wh(self) -> float:
        """Energy in the battery now."""
        return self._stored_wh

    @property
    def full(self) -> bool:
        """At 100 %: the car stops drawing and pauses (CP B)."""
        return self._stored_wh >= self.capacity_wh

    def set_soc(self, percent: float) -> None:
        """Set the state of charge (the ``set_soc`` command); the grid energy drawn so far is kept."""
        _check("soc_percent", percent, 0 <= percent <= 100, "a percentage in [0, 100]")
        # Stored as energy, like EVerest's battery_charge_wh, so that "full" is an exact comparison.
        self._stored_wh = self.capacity_wh * percent / 100.0

    def requested_current_a(self, full_current_a: float) -> float:
        """What the car asks for now, per phase, given its untapered current (0 when full)."""
        return 0.0 if self.full else self.taper.limit(full_current_a, self.soc_percent)

    def charge(self, current_a: float, phases: int, seconds: float) -> float:
        """Integrate `current_a` per phase on `phases` phases for `seconds`; return the grid energy in Wh.

        Stored energy rises by grid energy * efficiency and is clamped at capacity. The car stops
        drawing at its first 250 ms tick after it is full, so the clamp loses at most one tick's energy.
        """
        grid_wh = current_a * self.nominal_voltage_v * phases * seconds / 3600.0
        self.energy_drawn_wh += grid_wh
        self._stored_wh = min(self.capacity_wh, self._stored_wh + grid_wh * self.efficiency)
        return grid_wh
