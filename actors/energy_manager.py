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

Inputs (`charger.protocols.energy_site` turns them into a decision's `EnergyInputs`): a daily price
and PV-surplus profile (config) or a forecast set at run time (`SetEnergyForecast`); live site meters
(`meter` connections: a grid meter, a non-EV load meter or a PV meter, placed at a node), which
correct slot 0 of the PV forecast and take the non-EV load off their node's room; each session's
energy need and departure (`SetSessionNeed`); the lowest grant of each connector's other grantors
(OCPP smart charging), read from its published `ConnectorStatus`; grid-operator caps on nodes
(config, or `SetNodeCap` until a time). It decides again on an arrival or departure, a changed
external limit, need, cap or forecast, a meter reading that moved beyond a threshold, and every
`period_s`.
"""

from __future__ import annotations

import functools
import time
from typing import Any, ClassVar

from charger.actors.charging import (
    ENERGY_MANAGER,
    EVSE_MANAGER,
    POWERMETER,
    ChargingSessionEvent,
    ConnectorStatus,
    EnergyPlan,
    GetConnectorStatus,
    GetEnergyPlan,
    GrantLimitLease,
    PowerMeterReading,
    SetEnergyForecast,
    SetNodeCap,
    SetSessionNeed,
)
from charger.actors.energy_plan_view import plan_message
from charger.actors.energy_schema import CONFIG_SCHEMA, caps_from_config, evse_from_config, node_from_config
from charger.protocols.energy_inputs import EnergyInputs, prepare
from charger.protocols.energy_model import EnergyModel, ModelOptions
from charger.protocols.energy_report import node_rows
from charger.protocols.energy_schedule import Schedule
from charger.protocols.energy_site import EvseSample, Measured, MeterPlace, MeterSample, NodeCap, SiteState, deviation
from charger.protocols.limit_tree import LimitTree

from charger.behaviour import Behaviour, handles
from charger.errors import Rejected
from charger.interfaces import Requirement
from charger.journal import Journal
from charger.lifecycle import Ack

__all__ = ["EnergyManager"]

_CAR_PILOTS = frozenset({"B", "C", "D"})  # a vehicle on the cable (IEC 61851-1)
_LIMIT_STEP_A = 0.1  # an external limit that moved by less is the same limit


class EnergyManager(Behaviour):
    description = "Optimises every EVSE's current under the site's fuses (cvxpy) and sends leases."
    provides = {"energy": ENERGY_MANAGER}
    requires = {
        "evse": Requirement(interface=EVSE_MANAGER, min_connections=1, max_connections=1024, remote=True),
        "meter": Requirement(
            interface=POWERMETER, min_connections=0, max_connections=64, description="Site meters (config.meters)."
        ),
    }
    config_schema: ClassVar = CONFIG_SCHEMA

    def init(self) -> None:
        cfg = self.config
        self.evses: list[str] = list(self.connections["evse"])
        meters: list[str] = list(self.connections.get("meter", []))
        unplaced = [name for name in self.evses if name not in cfg["evses"]]
        unplaced += [name for name in meters if name not in cfg.get("meters", {})]
        if unplaced:
            raise ValueError(f"{self.name}: config has no place in the tree for {', '.join(unplaced)}")
        nodes = [node_from_config(n) for n in cfg["nodes"]]
        evses = [evse_from_config(name, cfg["evses"][name]) for name in self.evses]
        self.tree = LimitTree(nodes, evses)  # LimitTreeError (a ValueError) fails the start with every problem
        options = ModelOptions(
            slots=cfg["horizon_slots"],
            slot_h=cfg["slot_minutes"] / 60.0,
            variant=cfg["variant"],
            time_budget_s=cfg["time_budget_s"],
            energy_value_per_kwh=cfg["energy_value_per_kwh"],
        )
        self.model = EnergyModel(self.tree, options)
        self.site = SiteState(
            self.tree,
            slot_s=cfg["slot_minutes"] * 60.0,
            slots=cfg["horizon_slots"],
            prices=cfg["prices"],
            pv_surplus_kw=cfg["pv_surplus_kw"],
            meters={
                m: MeterPlace(node=p["node"], measures=p["measures"]) for m, p in cfg["meters"].items() if m in meters
            },
            caps=caps_from_config(cfg["caps"]),
            utc_offset_s=float(time.localtime().tm_gmtoff),
        )
        self.journal = Journal(f"{self.state_dir}/{self.name}.energy.db")
        self.fence = int(self.journal.get("fence", 0)) + 1
        self.journal.put("fence", self.fence)  # durable before the first lease leaves
        self.site.restore(self.journal.get("inputs", {}), time.time())  # needs and caps given before a restart
        for cap in self.site.caps.values():
            if cap.valid_until is not None:
                self.start_timer(cap.valid_until - time.time() + 0.01, self._decide)
        self.plan: EnergyPlan | None = None
        self.deciding = False
        self.again = False  # something changed while a decision ran
        self.decided_on = Measured()
        self.in_flight: set[str] = set()
        self.pending_lease: dict[str, GrantLimitLease] = {}
        # The first decision waits until every EVSE said whether a car is plugged in (or could not say):
        # after a restart, a plan made before that would lease 0 A to a session that is charging.
        self.asking = set(self.evses)
        for name in self.evses:
            self.subscribe(name, ChargingSessionEvent, ConnectorStatus)
            answered, unanswered = functools.partial(self._first_status, name), functools.partial(self._no_status, name)
            self.call(name, GetConnectorStatus(), timeout=5.0).then(answered, unanswered)
        for name in meters:
            self.subscribe(name, PowerMeterReading)
        self.start_timer(cfg["period_s"], self._decide, repeat=True)
        self._at_next_slot()
        self._decide()

    def _first_status(self, evse: str, status: ConnectorStatus) -> None:
        self.on_status(status)
        self._no_status(evse, None)

    def _no_status(self, evse: str, _error: BaseException | None) -> None:
        # a silent EVSE may be down: its session events and status will tell when it is back
        self.asking.discard(evse)
        if not self.asking:
            self._decide()

    def _at_next_slot(self) -> None:
        """A new slot may bring a new price or PV figure: decide at every slot boundary."""
        now = time.time()
        self.start_timer(self.site.slot_start(now) + self.site.slot_s - now + 0.01, self._next_slot)

    def _next_slot(self) -> None:
        self._decide()
        self._at_next_slot()

    def terminate(self, reason: str) -> None:
        self.journal.close()

    # --- what the site tells -----------------------------------------------------------------------
    @handles(ConnectorStatus)
    def on_status(self, status: ConnectorStatus) -> None:
        name = status.connector
        if name not in self.site.tree.evse_index:
            return
        others = [amps for grantor, amps in status.leases.items() if grantor != self.name]
        external = min(others) if others else None
        before = self.site.evses.get(name, EvseSample())
        self.site.evses[name] = EvseSample(
            power_w=status.power_w if status.relays_closed else 0.0,
            energy_wh=status.energy_wh,
            session_id=status.session_id,
            external_a=external,
        )
        if _limit_changed(before.external_a, external):
            self.log.info("%s: external limit of %s is now %s A", self.name, name, external)
            self._decide()  # a limit change: the plan must not count on current the connector will not use
        self._car(name, status.pilot in _CAR_PILOTS)
        self._check_deviation()

    def peer_changed(self, name: str, up: bool) -> None:
        # An EVSE that restarts, or whose host of the park is lost, is planned without until it is back.
        if name not in self.evses:
            return
        if up:
            self.call(name, GetConnectorStatus(), timeout=5.0).then(self.on_status, _ignore)
        else:
            self._car(name, False)

    @handles(ChargingSessionEvent)
    def on_session_event(self, event: ChargingSessionEvent) -> None:
        if event.kind in ("SessionStarted", "SessionFinished"):
            if event.kind == "SessionFinished":
                self.site.session_ended(event.connector)
                self._keep_inputs()
            self._car(event.connector, event.kind == "SessionStarted")

    @handles(PowerMeterReading)
    def on_meter(self, reading: PowerMeterReading) -> None:
        if self.sender not in self.site.meter_places:
            return
        self.site.meters[self.sender] = MeterSample(power_w=reading.power_w, currents_a=reading.currents_a)
        self._check_deviation()

    def _car(self, evse: str, present: bool) -> None:
        cars = self.site.cars
        if present != (evse in cars):
            (cars.add if present else cars.discard)(evse)
            self._decide()  # an arrival or departure changes every share: do not wait for the period

    def _check_deviation(self) -> None:
        amps, kw = deviation(self.site.measured(), self.decided_on)
        if amps > self.config["resolve_deviation_a"] or kw > self.config["resolve_deviation_kw"]:
            self._decide()

    # --- what people and other systems tell ---------------------------------------------------------
    @handles(SetSessionNeed)
    def on_need(self, req: SetSessionNeed) -> Ack:
        try:
            self.site.set_need(req.evse, req.energy_kwh, req.departure)
        except ValueError as exc:
            raise Rejected(str(exc)) from None
        self._keep_inputs()
        self._decide()
        return Ack()

    @handles(SetNodeCap)
    def on_cap(self, req: SetNodeCap) -> Ack:
        if req.valid_until is not None and req.valid_until <= time.time():
            raise Rejected(f"valid_until {req.valid_until} is in the past")
        try:
            self.site.set_cap(
                req.node, NodeCap(amps=req.amps, kw=req.kw, valid_until=req.valid_until, source=req.source)
            )
        except ValueError as exc:
            raise Rejected(str(exc)) from None
        self.log.info(
            "%s: cap on %s: %s A, %s kW until %s (%s)",
            self.name,
            req.node,
            req.amps,
            req.kw,
            req.valid_until,
            req.source,
        )
        self._keep_inputs()
        if req.valid_until is not None:
            self.start_timer(req.valid_until - time.time() + 0.01, self._decide)  # the cap ends: room again
        self._decide()
        return Ack()

    @handles(SetEnergyForecast)
    def on_forecast(self, req: SetEnergyForecast) -> Ack:
        try:
            self.site.set_forecast(req.starts_at, req.prices, req.pv_surplus_kw)
        except ValueError as exc:
            raise Rejected(str(exc)) from None
        self._decide()
        return Ack()

    def _keep_inputs(self) -> None:
        self.journal.put("inputs", self.site.snapshot())  # before the Ack: a restart keeps what was accepted

    # --- deciding -------------------------------------------------------------------------------
    def _decide(self) -> None:
        if self.asking:
            return  # the last answer decides
        if self.deciding:
            self.again = True
            return
        self.deciding, self.again = True, False
        self.run_task(self._decision())

    def _decision(self) -> Any:
        try:
            now = time.time()
            self.decided_on = self.site.measured()
            inputs = self.site.inputs(now, self.decided_on)
            schedule, rows = yield self.run_io(self._solve, inputs)  # seconds of CPU: off the actor's thread
            self._apply(schedule, inputs, rows, now)
        finally:
            self.deciding = False
        if self.again:
            self._decide()

    def _solve(self, inputs: EnergyInputs) -> tuple[Schedule, list[Any]]:
        schedule = self.model.solve(inputs)
        options = self.model.options
        arrays = prepare(self.tree, inputs, slots=options.slots, slot_h=options.slot_h)
        return schedule, node_rows(self.tree, inputs, arrays, schedule.currents_a)

    def _apply(self, schedule: Schedule, inputs: EnergyInputs, rows: list[Any], now: float) -> None:
        if schedule.fallback_reason:
            self.log.warning("%s: greedy share used: %s", self.name, schedule.fallback_reason)
        valid_until = now + self.config["period_s"] * self.config["lease_periods"]
        for name, planned in schedule.lease_a().items():
            amps = max(planned, 0.0)  # the planners never go below 0; a lease never may
            self._send(name, GrantLimitLease(valid_until=valid_until, amps=amps, grantor=self.name, fence=self.fence))
        self.plan = plan_message(self.site, schedule, inputs, rows, now)
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


def _limit_changed(before: float | None, after: float | None) -> bool:
    if before is None or after is None:
        return before is not after
    return abs(before - after) >= _LIMIT_STEP_A


def _ignore(_: object) -> None:
    pass
