"""OCPP 1.6 meter values: the sampled values of one connector for the configured measurands, and the
times of clock-aligned readings (pure).

A measurand list (MeterValuesSampledData, MeterValuesAlignedData; OCPP 1.6 §9.1) names measurands,
each optionally with a phase (``Current.Import.L2``). A measurand without a phase is reported for
every phase the meter delivers (§3.16.3: "report every configured location and phase"); what the
connector cannot deliver at this moment (a meter that is offline, a value the meter lacks) is left
out rather than invented. Values are strings in the measurand's unit (Wh, W, A, V).

Clock-aligned readings fall on multiples of ClockAlignedDataInterval counted from midnight UTC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from charger.protocols.ocpp_config_keys import Measurand, Phase

__all__ = [
    "MeterSnapshot",
    "meter_value",
    "next_aligned",
    "ocpp_time",
    "sampled_values",
    "supported_measurands",
]

_PHASES = (Phase.L1, Phase.L2, Phase.L3)
_TO_NEUTRAL = (Phase.L1_N, Phase.L2_N, Phase.L3_N)
_UNITS = {
    Measurand.ENERGY_ACTIVE_IMPORT_REGISTER: "Wh",
    Measurand.POWER_ACTIVE_IMPORT: "W",
    Measurand.CURRENT_IMPORT: "A",
    Measurand.CURRENT_OFFERED: "A",
    Measurand.VOLTAGE: "V",
}


def supported_measurands(*, with_meter: bool) -> frozenset[Measurand]:
    """What a connector can report: the EVSE manager alone knows the energy register during a
    transaction, the power and the current on offer; a meter wired to the link adds phase currents,
    voltages, and the register outside transactions."""
    base = {Measurand.ENERGY_ACTIVE_IMPORT_REGISTER, Measurand.POWER_ACTIVE_IMPORT, Measurand.CURRENT_OFFERED}
    if with_meter:
        base |= {Measurand.CURRENT_IMPORT, Measurand.VOLTAGE}
    return frozenset(base)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSnapshot:
    """What is known about one connector's meter right now; None: not known."""

    energy_wh: float | None = None
    """The import register."""
    power_w: float | None = None
    currents_a: tuple[float | None, ...] = ()
    """Per phase, L1 first."""
    voltages_v: tuple[float | None, ...] = ()
    """Per phase to neutral, L1 first."""
    current_offered_a: float | None = None
    """The current per phase the EVSE offers the car now."""


def ocpp_time(at: float) -> str:
    """An OCPP dateTime in UTC with milliseconds, e.g. ``2024-05-01T12:00:00.250Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _value(measurand: Measurand, value: float, context: str, phase: Phase | None) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "value": _number(value),
        "context": context,
        "format": "Raw",
        "measurand": measurand.value,
        "location": "Outlet",
        "unit": _UNITS[measurand],
    }
    if phase is not None:
        sample["phase"] = phase.value
    return sample


def _parse_member(member: str) -> tuple[Measurand, Phase | None] | None:
    try:
        return Measurand(member), None
    except ValueError:
        name, _, suffix = member.rpartition(".")
        try:
            return Measurand(name), Phase(suffix)
        except ValueError:
            return None


def _per_phase(values: tuple[float | None, ...], names: tuple[Phase, ...]) -> list[tuple[Phase, float]]:
    return [(p, v) for p, v in zip(names, values, strict=False) if v is not None and math.isfinite(v)]


def sampled_values(measurands: Sequence[str], snapshot: MeterSnapshot, context: str) -> list[dict[str, Any]]:
    """SampledValue objects (camelCase, as on the wire) for the configured `measurands`."""
    out: list[dict[str, Any]] = []
    for member in measurands:
        parsed = _parse_member(member)
        if parsed is None:
            continue
        measurand, wanted = parsed
        for phase, value in _readings(measurand, snapshot):
            if wanted is None or phase == wanted:
                out.append(_value(measurand, value, context, phase))
    return out


def _readings(measurand: Measurand, snap: MeterSnapshot) -> list[tuple[Phase | None, float]]:
    single: float | None = None
    if measurand is Measurand.ENERGY_ACTIVE_IMPORT_REGISTER:
        single = snap.energy_wh
    elif measurand is Measurand.POWER_ACTIVE_IMPORT:
        single = snap.power_w
    elif measurand is Measurand.CURRENT_OFFERED:
        single = snap.current_offered_a
    elif measurand is Measurand.CURRENT_IMPORT:
        return list(_per_phase(snap.currents_a, _PHASES))
    elif measurand is Measurand.VOLTAGE:
        return list(_per_phase(snap.voltages_v, _TO_NEUTRAL))
    return [] if single is None or not math.isfinite(single) else [(None, single)]


def meter_value(at: float, sampled: list[dict[str, Any]]) -> dict[str, Any]:
    """One MeterValue object: a timestamp and its sampled values."""
    return {"timestamp": ocpp_time(at), "sampledValue": sampled}


def next_aligned(now: float, interval_s: int) -> float:
    """The first clock-aligned instant after `now` for ClockAlignedDataInterval `interval_s` (> 0)."""
    if interval_s <= 0:
        raise ValueError("a clock-aligned interval is positive")
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    steps = math.floor((now - day) / interval_s) + 1
    candidate = day + steps * interval_s
    return min(candidate, day + 86400.0)  # the day's last interval may be shorter: midnight always aligns
