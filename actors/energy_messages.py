"""What the energy manager says and is told: its plan, per-session needs and grid-operator caps.

Re-exported by `charger.actors.charging`, where the rest of the charging vocabulary lives. Times are
Unix seconds, currents A per phase, power kW.
"""

from __future__ import annotations

from dataclasses import field

from charger.interfaces import Command, Interface
from charger.lifecycle import Ack
from charger.messages import message

__all__ = [
    "ENERGY_MANAGER",
    "EnergyPlan",
    "EvseAllocation",
    "GetEnergyPlan",
    "NodeCapView",
    "NodeLoad",
    "SetEnergyForecast",
    "SetNodeCap",
    "SetSessionNeed",
]


@message
class GetEnergyPlan:
    """Answered with an `EnergyPlan`."""


@message
class EvseAllocation:
    """What one EVSE is given now, and why."""

    evse: str
    amps: float
    reason: str
    """``Reason`` value of `charger.protocols.energy_schedule`: fuse, own_max, price, no_session..."""
    detail: str
    node: str | None
    external_limit_a: float | None = None
    """The lowest grant of the EVSE's other grantors (OCPP smart charging, a manual override)."""
    need_kwh: float | None = None
    """Energy still wanted by the session, when known."""
    departure: float | None = None
    """When the car leaves, when known."""


@message
class NodeLoad:
    """One limit of one node in slot 0: a phase conductor (A) or the node's power (kW)."""

    node: str
    phase: str
    """"L1".."L3", or "power"."""
    unit: str
    """"A" or "kW"."""
    limit: float | None
    """The node's own rating (fuse, transformer, contract); None: unlimited."""
    cap: float | None
    """An external cap below the rating (a grid operator), when one holds now."""
    non_ev: float
    """Measured load through the node that is not an EV's."""
    planned: float
    """What the plan gives the EVs under the node."""
    headroom: float
    """What is left for EVs: min(limit, cap) - non_ev - planned."""


@message
class NodeCapView:
    node: str
    amps: float | None
    kw: float | None
    valid_until: float | None
    source: str


@message
class EnergyPlan:
    """The last decision: its planner, how long it took, each EVSE's allocation, the limits per node
    and the schedule ahead (the first slots of the horizon, for a display)."""

    planner: str
    status: str
    fallback_reason: str | None
    solve_s: float
    decided_at: float
    allocations: list[EvseAllocation]
    nodes: list[NodeLoad] = field(default_factory=list)
    caps: list[NodeCapView] = field(default_factory=list)
    slot_start: float = 0.0
    """Start of slot 0 (Unix seconds); slots follow every `slot_minutes`."""
    slot_minutes: float = 15.0
    schedule: dict[str, list[float]] = field(default_factory=dict)
    """EVSE -> planned current per slot from slot 0 (A)."""
    price: list[float] = field(default_factory=list)
    pv_surplus_kw: list[float] = field(default_factory=list)
    """PV surplus per slot, slot 0 corrected by the live meters."""


@message
class SetSessionNeed:
    """The energy the car at `evse` still wants and when it leaves (None: unknown). Holds for the running
    session, or the next one when none runs; the delivered energy is counted off as it charges."""

    evse: str
    energy_kwh: float | None = None
    departure: float | None = None


@message
class SetNodeCap:
    """An external cap on a node (a grid-operator signal) until `valid_until` (None: until replaced).
    Both `amps` (per phase) and `kw` None: the cap is lifted."""

    node: str
    amps: float | None = None
    kw: float | None = None
    valid_until: float | None = None
    source: str = "api"


@message
class SetEnergyForecast:
    """Prices per kWh and/or PV surplus (kW) per slot from `starts_at`, replacing the configured daily
    profile for the slots they cover (a day-ahead tariff, a weather-based PV forecast)."""

    starts_at: float
    prices: list[float] | None = None
    pv_surplus_kw: list[float] | None = None


ENERGY_MANAGER = Interface(
    name="energy_manager",
    description="Plans the site's charging currents under its fuses and sends them as leases.",
    commands=(
        Command(GetEnergyPlan, EnergyPlan),
        Command(SetSessionNeed, Ack),
        Command(SetNodeCap, Ack),
        Command(SetEnergyForecast, Ack),
    ),
    vars=(EnergyPlan,),
)
