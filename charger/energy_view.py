"""The energy manager's plan as text lines, for `charger.ctl plan` and the status view.

Works on the plan as the control API returns it (a dict, `dataclasses.asdict` of an `EnergyPlan`), so
both callers show exactly the same thing: how the plan was made, the limits per node in slot 0 (rating,
external cap, non-EV load, planned EV load, headroom), the caps in force, why each EVSE got what it got,
and the schedule ahead.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["SCHEDULE_COLUMNS", "plan_lines"]

SCHEDULE_COLUMNS = 12
"""Slots of the schedule shown: three hours of 15-minute slots."""


def plan_lines(plan: dict[str, Any], *, schedule_columns: int = SCHEDULE_COLUMNS) -> list[str]:
    how = f"{plan['planner'] or '-'} ({plan['status']}), decided in {plan['solve_s'] * 1000:.0f} ms"
    if plan.get("decided_at"):
        how += f" at {_clock(plan['decided_at'], seconds=True)}"
    if plan["fallback_reason"]:
        how += f"; greedy share because {plan['fallback_reason']}"
    lines = [how]
    lines += [f"  {line}" for line in _allocation_lines(plan["allocations"])]
    nodes = plan.get("nodes") or []
    if nodes:
        lines.append(f"  {'limits now':<16} {'limit':>8} {'cap':>8} {'non-EV':>8} {'planned':>8} {'headroom':>8}")
        for n in nodes:
            unit = n["unit"]
            lines.append(
                f"  {n['node'] + ' ' + n['phase']:<16} {_num(n['limit'], unit):>8} {_num(n['cap'], unit):>8} "
                f"{n['non_ev']:>8.1f} {n['planned']:>8.1f} {n['headroom']:>8.1f}"
            )
    for cap in plan.get("caps") or []:
        amounts = [f"{cap['amps']:g} A" for _ in [0] if cap["amps"] is not None]
        amounts += [f"{cap['kw']:g} kW" for _ in [0] if cap["kw"] is not None]
        until = f" until {_clock(cap['valid_until'])}" if cap["valid_until"] is not None else ""
        lines.append(f"  cap on {cap['node']}: {' and '.join(amounts)}{until} ({cap['source']})")
    lines += _schedule_lines(plan, schedule_columns)
    return lines


def _allocation_lines(allocations: list[dict[str, Any]]) -> list[str]:
    out = []
    for a in allocations:
        extra = []
        if a.get("need_kwh") is not None:
            extra.append(f"needs {a['need_kwh']:.2f} kWh")
        if a.get("departure") is not None:
            extra.append(f"leaves {_clock(a['departure'])}")
        if a.get("external_limit_a") is not None:
            extra.append(f"external limit {a['external_limit_a']:g} A")
        tail = f" [{', '.join(extra)}]" if extra else ""
        out.append(f"{a['evse']:<12} {a['amps']:5.1f} A  {a['reason']:<18} {a['detail']}{tail}")
    return out


def _schedule_lines(plan: dict[str, Any], columns: int) -> list[str]:
    schedule: dict[str, list[float]] = plan.get("schedule") or {}
    if not schedule or not plan.get("slot_start"):
        return []
    shown = min(columns, max(len(v) for v in schedule.values()))
    step = plan["slot_minutes"] * 60.0
    head = " ".join(f"{_clock(plan['slot_start'] + k * step):>5}" for k in range(shown))
    lines = [f"  {'schedule (A)':<12} {head}"]
    if plan.get("price"):
        lines.append(f"  {'price':<12} " + " ".join(f"{p:5.2f}" for p in plan["price"][:shown]))
    if any(plan.get("pv_surplus_kw") or ()):
        lines.append(f"  {'PV kW':<12} " + " ".join(f"{p:5.1f}" for p in plan["pv_surplus_kw"][:shown]))
    for name, amps in schedule.items():
        lines.append(f"  {name:<12} " + " ".join(f"{a:5.1f}" for a in amps[:shown]))
    return lines


def _num(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.1f} {unit}"


def _clock(at: float, *, seconds: bool = False) -> str:
    return time.strftime("%H:%M:%S" if seconds else "%H:%M", time.localtime(at))
