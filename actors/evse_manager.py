"""EVSE manager: one connector's charging logic, driving its board and billing from its meter.

The logic is the pure `ConnectorMachine` (``charger.protocols.evse_session``); this actor feeds it what
the board and the meter publish, turns its actions into board outputs and session events, and
journals its snapshot after every step (SQLite, WAL) before anything leaves the actor. A restarted
EVSE manager restores the snapshot and carries on with the same session: the meter register keeps
counting while the actor is down, so no energy is lost.

Billing is exact: a finished transaction is closed only once the relays are open and two meter
reads agree, and `SessionCompleted.energy_wh` is the stop register minus the start register.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator
from typing import Any, ClassVar

from charger.actors.charging import (
    BOARD,
    EVSE_MANAGER,
    POWERMETER,
    AuthorizeSession,
    BoardState,
    ChargingSessionEvent,
    ConnectorStatus,
    GetConnectorStatus,
    GetSessionHistory,
    GrantLimitLease,
    PauseCharging,
    PowerMeterReading,
    ReadMeterNow,
    ReleaseLimitLease,
    ResumeCharging,
    SessionCompleted,
    SessionHistory,
    SetAvailability,
    SetBoardOutputs,
    StopCharging,
    UnlockConnectorNow,
    WithdrawAuthorization,
)
from charger.actors.evse_reservations import ReservationHolder
from charger.protocols.evse_events import (
    Action,
    Authorized,
    CloseRelays,
    Deauthorized,
    DisableRequested,
    EnableRequested,
    Event,
    EvseState,
    Fault,
    FaultCleared,
    FaultRaised,
    LimitLease,
    LimitReleased,
    LockConnector,
    MeterValue,
    OpenRelays,
    PauseRequested,
    PilotChanged,
    PwmOff,
    RelayFeedback,
    ResumeRequested,
    SessionEvent,
    SessionEventKind,
    SetPwm,
    SetStateF,
    StopReason,
    StopRequested,
    Tick,
    UnlockConnector,
    UnlockRequested,
)
from charger.protocols.evse_session import ConnectorConfig, ConnectorMachine
from charger.protocols.iec61851 import IecTiming, Pilot, duty_permille

from charger.behaviour import Pending, Timer, handles
from charger.errors import CallError, Rejected
from charger.interfaces import Requirement
from charger.journal import Journal
from charger.lifecycle import Ack

__all__ = ["EvseManager"]

_METER_SETTLE_S = 0.5  # between the two agreeing reads that close a transaction's bill
_METER_SETTLE_TRIES = 10
_BOARD_FAULTS = {"rcd_tripped": Fault.RCD, "diode_fault": Fault.DIODE_FAILURE}


class EvseManager(ReservationHolder):
    description = "One connector: IEC 61851-1 charging, sessions journaled, limits as leases."
    provides = {"evse": EVSE_MANAGER}
    requires = {
        "board": Requirement(interface=BOARD),
        "meter": Requirement(interface=POWERMETER, min_connections=0, max_connections=1),
    }
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "connector_id": {"type": "integer", "minimum": 1, "default": 1, "description": "OCPP connector number."},
            "hardware_max_current_a": {"type": "number", "minimum": 6, "maximum": 80, "default": 32},
            "failsafe_current_a": {
                "type": "number",
                "minimum": 0,
                "maximum": 80,
                "default": 6,
                "description": "Offered while no lease is valid; 0 pauses instead. Never unlimited.",
            },
            "cable_max_current_a": {"type": ["number", "null"], "minimum": 0, "default": None},
            "phases": {"type": "integer", "enum": [1, 3], "default": 3},
            "nominal_voltage_v": {"type": "number", "exclusiveMinimum": 0, "default": 230},
            "connection_timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 60},
            "has_ventilation": {"type": "boolean", "default": False},
            "lock_connector_in_state_b": {"type": "boolean", "default": True},
            "has_lock": {
                "type": "boolean",
                "default": True,
                "description": "False for a tethered cable: the lock is never commanded nor checked.",
            },
            "c1_power_off_s": {
                "type": "number",
                "minimum": 0,
                "default": 6,
                "description": "Grace for the EV to leave C after PWM stops (Table A.6 seq 10.2).",
            },
            "status_period_s": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
            "board_stale_s": {"type": "number", "exclusiveMinimum": 0, "default": 3.0},
            "lock_timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 2.0},
        },
    }

    def init(self) -> None:
        cfg = self.config
        self.machine = ConnectorMachine(
            ConnectorConfig(
                name=self.name,
                hardware_max_current_a=cfg["hardware_max_current_a"],
                failsafe_current_a=cfg["failsafe_current_a"],
                cable_max_current_a=cfg["cable_max_current_a"],
                connection_timeout_s=cfg["connection_timeout_s"],
                has_ventilation=cfg["has_ventilation"],
                lock_connector_in_state_b=cfg["lock_connector_in_state_b"],
                timing=IecTiming(c1_power_off_s=cfg["c1_power_off_s"]),
            )
        )
        self.journal = Journal(f"{self.state_dir}/{self.name}.sessions.db")
        self.init_reservations()
        self.board_name = self.connections["board"][0]
        meters = self.connections.get("meter") or []
        self.meter_name: str | None = meters[0] if meters else None
        self.transaction: dict[str, Any] | None = self.journal.get("transaction")
        self.closing: list[dict[str, Any]] = self.journal.get("closing", [])
        self.last_event: str | None = self.journal.get("last_event")
        self.sessions_completed = self.journal.count("session")  # kept here: status is built every second
        self.energy_total_wh = float(self.journal.get("energy_total_wh", 0.0))
        self.board: BoardState | None = None
        self.board_seen_at = time.monotonic()
        self.meter: PowerMeterReading | None = None
        self.lock_mismatch_since: float | None = None
        self.outputs: SetBoardOutputs | None = None
        self.outputs_busy = self.outputs_dirty = False
        self.deadline_timer: Timer | None = None
        self.published: ConnectorStatus | None = None
        self.journaled: dict[str, Any] | None = None
        snapshot = self.journal.get("machine")
        if snapshot is not None:
            self.machine.restore(snapshot)  # ValueError (corrupt or unsafe) is a crash: never guess a session
            self.log.info("%s: resumed in %s, session %s", self.name, self.machine.state.value, self.machine.session_id)
        self._apply(self.machine.resync())
        if self.meter_name and self.machine.snapshot()["energy_wh"] is None:
            # Never energise before the billing meter has answered once: a session must have a start value.
            self._feed(FaultRaised(fault=Fault.METER_OFFLINE))
        self.subscribe(self.board_name, BoardState)
        if self.meter_name:
            self.run_task(self._read_meter_now())  # before subscribing: a call waits for the lookup it starts
            self.subscribe(self.meter_name, PowerMeterReading)
        self.start_timer(cfg["status_period_s"], self._periodic, repeat=True)
        for record in self.closing:
            self.run_task(self._close_bill(record))

    def terminate(self, reason: str) -> None:
        self.journal.close()

    # --- inputs from the devices -----------------------------------------------------------------

    @handles(BoardState)
    def on_board(self, state: BoardState) -> None:
        previous, self.board, self.board_seen_at = self.board, state, time.monotonic()
        was_online = previous is not None and previous.online
        if not state.online:
            self._feed(FaultRaised(fault=Fault.BOARD_OFFLINE))
            return
        if not was_online:
            self._feed(FaultCleared(fault=Fault.BOARD_OFFLINE))
        if previous is None or not previous.online or state.pilot != previous.pilot:
            self._feed(PilotChanged(pilot=Pilot(state.pilot)))
        for attr, fault in _BOARD_FAULTS.items():
            active = getattr(state, attr)
            if previous is None or active != getattr(previous, attr) or not was_online:
                self._feed(FaultRaised(fault=fault) if active else FaultCleared(fault=fault))
        if previous is None or state.relays_closed != previous.relays_closed:
            self._feed(RelayFeedback(closed=state.relays_closed))
        self._check_lock()

    @handles(PowerMeterReading)
    def on_meter(self, reading: PowerMeterReading) -> None:
        was_online = self.meter is None or self.meter.online
        self.meter = reading
        if not reading.online:
            self._feed(FaultRaised(fault=Fault.METER_OFFLINE))
            return
        if reading.energy_wh is not None:
            self._feed(MeterValue(energy_wh=reading.energy_wh))
        if not was_online or Fault.METER_OFFLINE in self.machine.active_faults:
            self._feed(FaultCleared(fault=Fault.METER_OFFLINE))

    def _read_meter_now(self) -> Generator[Pending, Any, None]:
        """A (re)started manager reads the meter at once instead of waiting up to a poll period for its
        next publication: until then it could not report the power of a session it resumed, nor start
        one (no start value)."""
        assert self.meter_name is not None
        try:
            reading = yield self.call(self.meter_name, ReadMeterNow(), timeout=3.0)
        except CallError:
            return  # the subscription brings the next poll
        if self.meter is None:  # a publication that came first is as fresh
            self.on_meter(reading)

    # --- commands -------------------------------------------------------------------------------

    @handles(AuthorizeSession)
    def on_authorize(self, req: AuthorizeSession) -> Ack:
        m = self.machine
        if m.state in (EvseState.DISABLED, EvseState.INOPERATIVE, EvseState.FINISHED):
            raise Rejected(f"{self.name} cannot take an authorization while {m.state.value}")
        if m.authorized or m.transaction_active:
            raise Rejected(f"{self.name} is already authorized (session {m.session_id})")
        reserved = self.reservation_refusal(req.token_id, req.parent_id_tag)
        if reserved is not None:
            raise Rejected(reserved)
        self._feed(Authorized(token_id=req.token_id))
        return Ack()

    @handles(WithdrawAuthorization)
    def on_withdraw(self, req: WithdrawAuthorization) -> Ack:
        self._feed(Deauthorized())
        return Ack()

    @handles(PauseCharging)
    def on_pause(self, req: PauseCharging) -> Ack:
        self._require_transaction()
        self._feed(PauseRequested())
        return Ack()

    @handles(ResumeCharging)
    def on_resume(self, req: ResumeCharging) -> Ack:
        self._require_transaction()
        self._feed(ResumeRequested())
        return Ack()

    @handles(StopCharging)
    def on_stop(self, req: StopCharging) -> Ack:
        try:
            reason = StopReason(req.reason)
        except ValueError:
            raise Rejected(f"unknown stop reason {req.reason!r}; one of {[r.value for r in StopReason]}") from None
        self._require_transaction()
        self._feed(StopRequested(reason=reason))
        return Ack()

    @handles(UnlockConnectorNow)
    def on_unlock(self, req: UnlockConnectorNow) -> Ack:
        if self.machine.transaction_active:
            raise Rejected(f"{self.name} runs a transaction: stop it first, its end releases the lock")
        self._feed(UnlockRequested())
        if self.machine.locked:  # cannot happen without a transaction; a caller must not hear "unlocked"
            raise Rejected(f"{self.name} still holds the plug ({self.machine.state.value})")
        return Ack()

    @handles(SetAvailability)
    def on_availability(self, req: SetAvailability) -> Ack:
        if req.available:
            self._feed(EnableRequested())
            return Ack()
        try:
            reason = StopReason(req.reason)
        except ValueError:
            raise Rejected(f"unknown stop reason {req.reason!r}; one of {[r.value for r in StopReason]}") from None
        self._feed(DisableRequested(reason=reason))
        return Ack()

    @handles(GrantLimitLease)
    def on_lease(self, req: GrantLimitLease) -> Ack:
        if (req.amps is None) == (req.watts is None):
            raise Rejected("a lease sets exactly one of amps and watts")
        per_watt = 1.0 / (self.config["nominal_voltage_v"] * self.config["phases"])
        amps = req.amps if req.amps is not None else (req.watts or 0.0) * per_watt
        try:
            lease = LimitLease(
                amps=amps,
                valid_until=req.valid_until,
                grantor=req.grantor,
                fence=req.fence,
                released_when_lapsed=req.released_when_lapsed,
            )
            self._feed(lease)
        except ValueError as exc:  # including StaleLease: a superseded grantor instance
            raise Rejected(str(exc)) from None
        return Ack()

    @handles(ReleaseLimitLease)
    def on_release(self, req: ReleaseLimitLease) -> Ack:
        try:
            self._feed(LimitReleased(grantor=req.grantor, fence=req.fence))
        except ValueError as exc:
            raise Rejected(str(exc)) from None
        return Ack()

    @handles(GetConnectorStatus)
    def on_get_status(self, req: GetConnectorStatus) -> ConnectorStatus:
        self._feed(Tick())  # a lease may have lapsed since the last step: answer with the outputs of now
        return self._status()

    @handles(GetSessionHistory)
    def on_history(self, req: GetSessionHistory) -> SessionHistory:
        return SessionHistory(sessions=[SessionCompleted(**s) for s in self.journal.entries("session", req.limit)])

    def _require_transaction(self) -> None:
        if not self.machine.transaction_active:
            raise Rejected(f"{self.name} has no running transaction")

    # --- the machine ----------------------------------------------------------------------------

    def _feed(self, event: Event) -> None:
        actions = self.machine.handle(event, time.time())
        self._apply(actions)

    def _apply(self, actions: list[Action]) -> None:
        """Journal first, then tell the world: an event or output never gets ahead of the journal."""
        events = [a for a in actions if isinstance(a, SessionEvent)]
        for event in events:
            self._track_transaction(event)
        snapshot = self.machine.snapshot()
        moment = snapshot.pop("now")
        if snapshot != self.journaled:  # a Tick that changed nothing is not worth an fsync
            self.journal.put("machine", {**snapshot, "now": moment})
            self.journaled = snapshot
        if events:
            self.journal.put("transaction", self.transaction)
            self.journal.put("closing", self.closing)
            self.journal.put("last_event", self.last_event)
        self._set_outputs(actions)
        for event in events:
            self.publish(
                ChargingSessionEvent(
                    connector=self.name,
                    kind=event.kind.value,
                    session_id=event.session_id,
                    token_id=event.token_id,
                    reason=event.reason.value if event.reason else None,
                    meter_wh=event.meter_wh,
                    at=time.time(),
                )
            )
            if event.kind is SessionEventKind.TRANSACTION_FINISHED:
                self.run_task(self._close_bill(self.closing[-1]))
        self._rearm_deadline()
        self._publish_status(only_if_changed=True)

    def _track_transaction(self, event: SessionEvent) -> None:
        self.last_event = event.kind.value
        if event.kind is SessionEventKind.TRANSACTION_STARTED:
            self.transaction = {
                "session_id": event.session_id,
                "token_id": event.token_id,
                "meter_start_wh": event.meter_wh,
                "started_at": time.time(),
            }
        elif event.kind is SessionEventKind.TRANSACTION_FINISHED and self.transaction is not None:
            reason = event.reason.value if event.reason else StopReason.OTHER.value
            self.closing.append({**self.transaction, "stop_reason": reason, "stopped_at": time.time()})
            self.transaction = None

    def _set_outputs(self, actions: list[Action]) -> None:
        out = self.outputs or SetBoardOutputs(pwm_permille=None, relays_closed=False, locked=False)
        for a in actions:
            if isinstance(a, SetPwm):
                out = dataclasses.replace(out, pwm_permille=duty_permille(a.duty_percent))
            elif isinstance(a, PwmOff):
                out = dataclasses.replace(out, pwm_permille=None)
            elif isinstance(a, SetStateF):
                out = dataclasses.replace(out, pwm_permille=0)
            elif isinstance(a, CloseRelays | OpenRelays):
                out = dataclasses.replace(out, relays_closed=isinstance(a, CloseRelays))
            elif isinstance(a, LockConnector | UnlockConnector) and self.config["has_lock"]:
                out = dataclasses.replace(out, locked=isinstance(a, LockConnector))
        if out != self.outputs:
            self.outputs = out
            self._push_outputs()

    def _push_outputs(self) -> None:
        """At most one SetBoardOutputs in flight; the newest wish wins."""
        if self.outputs is None:
            return
        if self.outputs_busy:
            self.outputs_dirty = True
            return
        self.outputs_busy, self.outputs_dirty = True, False

        def done(_: Any) -> None:
            self.outputs_busy = False
            if self.outputs_dirty:
                self._push_outputs()

        def failed(exc: BaseException) -> None:
            self.log.debug("%s: board did not take outputs: %s", self.name, exc)
            done(None)

        self.call(self.board_name, self.outputs, timeout=1.0).then(done, failed)

    def _rearm_deadline(self) -> None:
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
        due = self.machine.next_deadline()
        if due is not None:
            self.deadline_timer = self.start_timer(max(0.0, due - time.time()) + 0.01, lambda: self._feed(Tick()))

    # --- periodic: lease expiry, staleness, resend, status --------------------------------------

    def _periodic(self) -> None:
        stale = time.monotonic() - self.board_seen_at > self.config["board_stale_s"]
        if stale and Fault.BOARD_OFFLINE not in self.machine.active_faults:
            self.log.warning("%s: no status from board %s", self.name, self.board_name)
            self._feed(FaultRaised(fault=Fault.BOARD_OFFLINE))
        self._check_lock()
        self._feed(Tick())
        if self._board_disagrees():  # e.g. a restarted board driver or board: teach it our outputs again
            self._push_outputs()
        self._publish_status(only_if_changed=False)

    def _board_disagrees(self) -> bool:
        board, out = self.board, self.outputs
        if board is None or out is None or not board.online:
            return False
        lock_differs = self.config["has_lock"] and board.locked != out.locked
        return board.pwm_permille != out.pwm_permille or board.relays_closed != out.relays_closed or lock_differs

    def _check_lock(self) -> None:
        if self.board is None or not self.board.online or self.outputs is None or not self.config["has_lock"]:
            return
        now = time.monotonic()
        if self.board.locked == self.outputs.locked:
            self.lock_mismatch_since = None
            if Fault.LOCK_FAILURE in self.machine.active_faults:
                self._feed(FaultCleared(fault=Fault.LOCK_FAILURE))
        elif self.lock_mismatch_since is None:
            self.lock_mismatch_since = now
        elif (
            now - self.lock_mismatch_since > self.config["lock_timeout_s"]
            and Fault.LOCK_FAILURE not in self.machine.active_faults
        ):
            self.log.warning("%s: lock does not follow its command", self.name)
            self._feed(FaultRaised(fault=Fault.LOCK_FAILURE))

    def _status(self) -> ConnectorStatus:
        m, now = self.machine, time.time()
        return ConnectorStatus(
            connector=self.name,
            connector_id=self.config["connector_id"],
            state=m.state.value,
            pilot=m.pilot.value,
            pwm_duty_percent=m.pwm_duty,
            current_limit_a=m.effective_current_a(now),
            lease_until=m.lease_until,
            power_w=self.meter.power_w if self.meter is not None and self.meter.online else None,
            energy_wh=m.energy_wh,
            session_id=m.session_id,
            token_id=m.token_id,
            relays_closed=m.relays_closed,
            faults=sorted(f.value for f in m.active_faults),
            last_event=self.last_event,
            sessions_completed=self.sessions_completed,
            energy_total_wh=self.energy_total_wh,
            leases=m.granted_a(now),
            meter_start_wh=None if self.transaction is None else self.transaction["meter_start_wh"],
            transaction_started_at=None if self.transaction is None else self.transaction["started_at"],
            reservations=self.reservations_now(now),
        )

    def _publish_status(self, *, only_if_changed: bool) -> None:
        status = self._status()
        if only_if_changed and status == self.published:
            return
        self.published = status
        self.publish(status)

    # --- billing --------------------------------------------------------------------------------

    def _close_bill(self, record: dict[str, Any]) -> Generator[Pending, Any, None]:
        """Wait for the relays to open and the meter to settle, then book the session exactly once."""
        stop = record.get("meter_stop_wh")
        if self.meter_name:
            previous: float | None = None
            for _ in range(_METER_SETTLE_TRIES):
                yield self.sleep(_METER_SETTLE_S)
                if self.board is not None and self.board.online and self.board.relays_closed:
                    continue  # energy still flows: not yet
                try:
                    reading = yield self.call(self.meter_name, ReadMeterNow(), timeout=3.0)
                except CallError:
                    continue
                if reading.online and reading.energy_wh is not None:
                    if previous is not None and reading.energy_wh == previous:
                        break
                    previous = reading.energy_wh
            stop = previous if previous is not None else (self.meter.energy_wh if self.meter else None)
        start = record.get("meter_start_wh")
        energy = None if start is None or stop is None else stop - start
        done = SessionCompleted(connector=self.name, **{**record, "meter_stop_wh": stop, "energy_wh": energy})
        self.closing = [r for r in self.closing if r["session_id"] != record["session_id"]]
        total = self.energy_total_wh + (energy or 0.0)
        self.journal.append(
            "session",
            {f.name: getattr(done, f.name) for f in dataclasses.fields(done)},
            also_put={"closing": self.closing, "energy_total_wh": total},
        )
        self.sessions_completed, self.energy_total_wh = self.sessions_completed + 1, total
        self.log.info("%s: session %s billed %.3f Wh (%s)", self.name, done.session_id, energy or 0.0, done.stop_reason)
        self.publish(done)
        self._publish_status(only_if_changed=True)
