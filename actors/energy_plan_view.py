"""The `EnergyPlan` message of one decision: allocations with their reasons, limits per node, schedule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from charger.actors.energy_messages import EnergyPlan, EvseAllocation, NodeCapView, NodeLoad
from charger.protocols.energy_inputs import EnergyInputs
from charger.protocols.energy_report import NodeRow
from charger.protocols.energy_schedule import Schedule
from charger.protocols.energy_site import SiteState

__all__ = ["SCHEDULE_FIGURES", "plan_message"]

SCHEDULE_FIGURES = 20_000
"""Most per-slot currents a plan carries (EVSEs x slots): a large site sees the first slots only, so the
message stays far below the frame limit."""


def plan_message(
    site: SiteState, schedule: Schedule, inputs: EnergyInputs, rows: Sequence[NodeRow], now: float
) -> EnergyPlan:
    n, slots = schedule.currents_a.shape
    shown = max(1, min(slots, SCHEDULE_FIGURES // max(n, 1)))
    external = site.external_limits()
    allocations = []
    for name in schedule.evses:
        e = schedule.explanations[name]
        need = site.needs.get(name)
        allocations.append(
            EvseAllocation(
                evse=e.evse,
                amps=e.amps,
                reason=str(e.reason),
                detail=e.detail,
                node=e.node,
                external_limit_a=external.get(name),
                need_kwh=_round(site.remaining_need(name), 3),
                departure=need.departure if need is not None else None,
            )
        )
    return EnergyPlan(
        planner=schedule.planner,
        status=schedule.status,
        fallback_reason=schedule.fallback_reason,
        solve_s=round(schedule.solve_s, 4),
        decided_at=now,
        allocations=allocations,
        nodes=[
            NodeLoad(
                node=r.node,
                phase=r.phase,
                unit=r.unit,
                limit=r.limit,
                cap=r.cap,
                non_ev=round(r.non_ev, 2),
                planned=round(r.planned, 2),
                headroom=round(r.headroom, 2),
            )
            for r in rows
        ],
        caps=[
            NodeCapView(node=node, amps=c.amps, kw=c.kw, valid_until=c.valid_until, source=c.source)
            for node, c in sorted(site.caps.items())
        ],
        slot_start=site.slot_start(now),
        slot_minutes=site.slot_s / 60.0,
        schedule={
            name: [round(float(a), 1) for a in schedule.currents_a[i, :shown]] for i, name in enumerate(schedule.evses)
        },
        price=[round(float(p), 4) for p in np.asarray(inputs.price, dtype=np.float64)[:shown]],
        pv_surplus_kw=[round(float(p), 3) for p in np.asarray(inputs.pv_surplus_kw, dtype=np.float64)[:shown]],
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
