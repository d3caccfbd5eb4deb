"""EnergyManager: sets every EVSE's current from a site-wide plan, under a tree of fuses and limits.

At every decision it plans the next horizon (by default 24 h in 15-minute slots) with the optimiser
of `charger.protocols.energy_model` (an LP on HiGHS, or a QP on CLARABEL for fairness), and sends
each EVSE slot 0 of its plan as a current lease. It decides again when a car arrives or leaves and
every `period_s`. When the solver fails or misses its time budget the greedy fair share is used
instead, and the reason is logged and published. No plan ever exceeds an ancestor's fuse, and a
lease that is not renewed lapses to the EVSE's own failsafe current (DESIGN §7).

Its leases carry a fence: a counter kept in its journal and raised at every start. An EVSE refuses
leases from an older instance, so after a restart (or a leader change in a park) a superseded
energy manager can no longer drive any EVSE (DESIGN §8).

One lease at most is in flight to each EVSE: a slow EVSE never holds back the others, and Thespian
never stalls this actor behind it (DESIGN §4). `GetEnergyPlan` answers with the last decision and,
per EVSE, why it got what it got.

This first version plans for the cars that are plugged in, with unknown energy need and departure,
at a configured price per slot; PV, meters and OCPP external limits come with the park work.
"""

from __future__ import annotations

import functools
import time
from typing import Any, ClassVar

from charger.actors.charging import (
    ENERGY_MANAGER,
    EVSE_MANAGER,
    ChargingSessionEvent,
    ConnectorStatus,
    EnergyPlan,
    EvseAllocation,
    GetConnectorStatus,
    GetEnergyPlan,
    GrantLimitLease,
)
from charger.protocols.energy_inputs import EnergyInputs, Session
from charger.protocols.energy_model import EnergyModel, ModelOptions
from charger.protocols.energy_schedule import Schedule
from charger.protocols.limit_tree import Evse, LimitNode, LimitTree

from charger.behaviour import Behaviour, handles
from charger.interfaces import Requirement
from charger.journal import Journal

__all__ = ["EnergyManager"]

_CAR_PILOTS = frozenset({"B", "C", "D"})  # a vehicle on the cable (IEC 61851-1)


_LIMIT = {
    "oneOf": [
        {"type": "number", "minimum": 0},
        {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 3, "maxItems": 3},
    ]
}


class EnergyManager(Behaviour):
    description = "Optimises every EVSE's current under the site's fuses (cvxpy) and sends leases."
    provides = {"energy": ENERGY_MANAGER}
    requires = {"evse": Requirement(interface=EVSE_MANAGER, min_connections=1, max_connections=1024, remote=True)}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "required": ["nodes", "evses"],
        "properties": {
            "nodes": {
                "type": "array",
                "minItems": 1,
                "description": "The supply tree, root first: grid connection, transformers, feeders, fuses.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "parent": {"type": "string"},
                        "current_limit_a": {**_LIMIT, "description": "A per phase: one figure or [L1, L2, L3]."},
                        "power_limit_kw": {"type": "number", "minimum": 0},
                    },
                },
            },
            "evses": {
                "type": "object",
                "description": "EVSE manager name -> where it hangs in the tree and what it can draw.",
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["node"],
                    "properties": {
                        "node": {"type": "string", "minLength": 1},
                        "phases": {"enum": [1, 3], "default": 3},
                        "grid_phase": {"enum": ["L1", "L2", "L3"], "default": "L1"},
                        "min_current_a": {"type": "number", "minimum": 0, "default": 6},
                        "max_current_a": {"type": "number", "minimum": 0, "default": 32},
                    },
                },
            },
            "slot_minutes": {"type": "number", "exclusiveMinimum": 0, "default": 15},
            "horizon_slots": {"type": "integer", "minimum": 1, "maximum": 672, "default": 96},
            "prices": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 1,
                "default": [0.3],
                "description": "Price per kWh per slot, repeated over the horizon (one figure: flat).",
            },
            "variant": {"enum": ["lp", "qp"], "default": "lp"},
            "time_budget_s": {"type": "number", "minimum": 0, "default": 2.0},
            "period_s": {"type": "number", "exclusiveMinimum": 0, "default": 60},
            "lease_periods": {"type": "number", "minimum": 1, "default": 3, "description": "Lease validity."},
        },
    }

    def init(self) -> None:
        cfg = self.config
        self.evses: list[str] = list(self.connections["evse"])
        unplaced = [name for name in self.evses if name not in cfg["evses"]]
        if unplaced:
            raise ValueError(f"{self.name}: config.evses has no place in the tree for {', '.join(unplaced)}")
        nodes = [
            LimitNode(
                name=n["name"],
                parent=n.get("parent"),
                current_limit_a=_phase_limits(n.get("current_limit_a")),
                power_limit_kw=n.get("power_limit_kw"),
            )
            for n in cfg["nodes"]
        ]
        evses = [_evse(name, cfg["evses"][name]) for name in self.evses]
        self.tree = LimitTree(nodes, evses)  # LimitTreeError (a ValueError) fails the start with every problem
        options = ModelOptions(
            slots=cfg["horizon_slots"],
            slot_h=cfg["slot_minutes"] / 60.0,
            variant=cfg["variant"],
            time_budget_s=cfg["time_budget_s"],
        )
        self.model = EnergyModel(self.tree, options)
        journal = Journal(f"{self.state_dir}/{self.name}.energy.db")
        self.fence = int(journal.get("fence", 0)) + 1
        journal.put("fence", self.fence)  # durable before the first lease leaves
        journal.close()
        self.cars: set[str] = set()
        self.plan: EnergyPlan | None = None
        self.deciding = False
        self.again = False  # something changed while a decision ran
        self.in_flight: set[str] = set()
        self.pending_lease: dict[str, GrantLimitLease] = {}
        for name in self.evses:
            self.subscribe(name, ChargingSessionEvent)
            self.call(name, GetConnectorStatus(), timeout=5.0).then(self._learn, _ignore)  # after a restart
        self.start_timer(cfg["period_s"], self._decide, repeat=True)
        self._decide()

    # --- what is plugged in ---------------------------------------------------------------------
    def _learn(self, status: ConnectorStatus) -> None:
        self._car(status.connector, status.pilot in _CAR_PILOTS)

    def peer_changed(self, name: str, up: bool) -> None:
        # An EVSE that restarts, or whose host of the park is lost, is planned without until it is back.
        if name not in self.evses:
            return
        if up:
            self.call(name, GetConnectorStatus(), timeout=5.0).then(self._learn, _ignore)
        else:
            self._car(name, False)

    @handles(ChargingSessionEvent)
    def on_session_event(self, event: ChargingSessionEvent) -> None:
        if event.kind in ("SessionStarted", "SessionFinished"):
            self._car(event.connector, event.kind == "SessionStarted")

    def _car(self, evse: str, present: bool) -> None:
        if present != (evse in self.cars):
            (self.cars.add if present else self.cars.discard)(evse)
            self._decide()  # an arrival or departure changes every share: do not wait for the period

    # --- deciding -------------------------------------------------------------------------------
    def _decide(self) -> None:
        if self.deciding:
            self.again = True
            return
        self.deciding, self.again = True, False
        self.run_task(self._decision())

    def _decision(self) -> Any:
        try:
            inputs = self._inputs()
            schedule = yield self.run_io(self.model.solve, inputs)  # seconds of CPU: off the actor's thread
            self._apply(schedule)
        finally:
            self.deciding = False
        if self.again:
            self._decide()

    def _inputs(self) -> EnergyInputs:
        prices = self.config["prices"]
        slots = self.config["horizon_slots"]
        price = [prices[t % len(prices)] for t in range(slots)]
        return EnergyInputs(price=price, sessions={name: Session() for name in self.cars})

    def _apply(self, schedule: Schedule) -> None:
        if schedule.fallback_reason:
            self.log.warning("%s: greedy share used: %s", self.name, schedule.fallback_reason)
        now = time.time()
        valid_until = now + self.config["period_s"] * self.config["lease_periods"]
        for name, amps in schedule.lease_a().items():
            self._send(name, GrantLimitLease(valid_until=valid_until, amps=amps, grantor=self.name, fence=self.fence))
        self.plan = EnergyPlan(
            planner=schedule.planner,
            status=schedule.status,
            fallback_reason=schedule.fallback_reason,
            solve_s=round(schedule.solve_s, 4),
            decided_at=now,
            allocations=[
                EvseAllocation(evse=e.evse, amps=e.amps, reason=str(e.reason), detail=e.detail, node=e.node)
                for e in (schedule.explanations[name] for name in schedule.evses)
            ],
        )
        self.publish(self.plan)

    def _send(self, evse: str, lease: GrantLimitLease) -> None:
        if evse in self.in_flight:  # one at a time per EVSE: the newest waits, older ones are dropped
            self.pending_lease[evse] = lease
            return
        self.in_flight.add(evse)
        done = functools.partial(self._lease_done, evse)
        self.call(evse, lease, timeout=2.0).then(lambda _: done(None), done)

    def _lease_done(self, evse: str, error: BaseException | None) -> None:
        self.in_flight.discard(evse)
        if error is not None:
            self.log.debug("%s: lease to %s not taken: %s", self.name, evse, error)
        queued = self.pending_lease.pop(evse, None)
        if queued is not None:
            self._send(evse, queued)

    @handles(GetEnergyPlan)
    def on_get_plan(self, req: GetEnergyPlan) -> EnergyPlan:
        if self.plan is None:
            return EnergyPlan(
                planner="", status="deciding", fallback_reason=None, solve_s=0.0, decided_at=0.0, allocations=[]
            )
        return self.plan


def _phase_limits(value: float | list[float] | None) -> float | tuple[float, float, float] | None:
    if isinstance(value, list):
        return (value[0], value[1], value[2])
    return value


def _evse(name: str, entry: dict[str, Any]) -> Evse:
    return Evse(
        name=name,
        parent=entry["node"],
        phases=entry.get("phases", 3),
        grid_phase=entry.get("grid_phase", "L1"),
        min_current_a=entry.get("min_current_a", 6.0),
        max_current_a=entry.get("max_current_a", 32.0),
    )


def _ignore(_: object) -> None:
    pass
