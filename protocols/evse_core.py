"""Transitions and outputs of the connector machine: the part of `ConnectorMachine` that turns facts
into states and actions. `charger.protocols.evse_session` adds the inputs and the public API.

Settling: after an input is recorded, `_settle` first opens the relays if they became unsafe, then
moves through states while the facts call for another one (EVerest's `run_state_machine` loop),
each entry emitting its session events and then syncing the outputs: PWM from the state and the
effective current, relays opened when `relays_may_stay_closed` fails, lock. Relays are closed in
exactly one place, `_enter_charging`, after `relays_may_close` is checked again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from charger.protocols.evse_events import (
    Action,
    CloseRelays,
    EvseState,
    Fault,
    LockConnector,
    OpenRelays,
    PwmOff,
    SessionEvent,
    SessionEventKind,
    SetPwm,
    SetStateF,
    StopReason,
    UnlockConnector,
)
from charger.protocols.iec61851 import (
    DEFAULT_TIMING,
    MAX_PWM_CURRENT_A,
    MIN_PWM_CURRENT_A,
    IecTiming,
    Pilot,
    SafetyViolation,
    duty_cycle_for_current,
    ev_requests_power,
    relays_may_close,
    relays_may_stay_closed,
)

from charger.interfaces import Severity

__all__ = ["GRACE_STATES", "ConnectorConfig", "ConnectorCore", "Facts"]

S = EvseState
K = SessionEventKind
_TRANSACTION_STATES = frozenset({S.PREPARE_CHARGING, S.CHARGING, S.CHARGING_PAUSED_EV, S.CHARGING_PAUSED_EVSE})
_SESSION_STATES = _TRANSACTION_STATES | {S.WAITING_FOR_AUTHENTICATION, S.STOPPING_CHARGING}
_PWM_STATES = frozenset({S.PREPARE_CHARGING, S.CHARGING, S.CHARGING_PAUSED_EV})
GRACE_STATES = frozenset({S.CHARGING_PAUSED_EVSE, S.STOPPING_CHARGING})  # Table A.6 seq 10: EVSE-initiated
_NO_VEHICLE_READING = frozenset({Pilot.E, Pilot.F, Pilot.DISABLED})
_SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2}
_MAX_PASSES = 12  # the longest chain (Inoperative -> Idle -> Waiting -> Prepare -> Charging) needs 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorConfig:
    """Per-connector settings (from the topology); validated on construction."""

    name: str = "connector"
    """Prefix of the default session ids (`name-1`, `name-2`, ...)."""
    hardware_max_current_a: float = 32.0
    """Rating of the supply and contactor, per phase; 6..80 A (the range PWM can signal)."""
    failsafe_current_a: float = 6.0
    """Current offered while no lease is valid (never unlimited, DESIGN §7); 0 pauses instead."""
    cable_max_current_a: float | None = None
    """Rating of a tethered cable; a socket reports its cable with `CableRatingDetected` instead."""
    connection_timeout_s: float = 60.0
    """Authorization and plug-in must both happen within this long of the first of them."""
    has_ventilation: bool = False
    """Whether the site ventilates, so that state D may be energised."""
    lock_connector_in_state_b: bool = True
    """Lock already in B (EVerest's option of the same name); C and D always lock."""
    timing: IecTiming = DEFAULT_TIMING

    def __post_init__(self) -> None:
        if not MIN_PWM_CURRENT_A <= self.hardware_max_current_a <= MAX_PWM_CURRENT_A:
            raise ValueError(f"hardware_max_current_a {self.hardware_max_current_a!r} outside 6..80 A")
        for name in ("failsafe_current_a", "cable_max_current_a"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (math.isfinite(self.connection_timeout_s) and self.connection_timeout_s > 0):
            raise ValueError(f"connection_timeout_s must be > 0, got {self.connection_timeout_s!r}")


@dataclass(slots=True, kw_only=True)
class Facts:
    """Everything a connector machine knows; its snapshot is exactly these fields (`evse_snapshot`)."""

    state: EvseState = EvseState.IDLE
    now: float = 0.0  # time of the last step
    enabled: bool = True
    pilot: Pilot = Pilot.A
    vehicle_connected: bool = False  # B/C/D seen since the last A
    sessions_started: int = 0
    session_id: str | None = None
    token_id: str | None = None
    authorized: bool = False
    auth_deadline: float | None = None  # connection timeout: plug-in without auth, or auth without plug-in
    transaction_active: bool = False
    charging_started: bool = False  # ChargingStarted sent in this transaction (later entries are resumes)
    finished: bool = False  # the session waits for unplug
    stop_reason: StopReason | None = None  # a stop is in progress
    user_paused: bool = False
    meter_start_wh: float | None = None
    energy_wh: float | None = None
    lease_a: dict[str, float] = field(default_factory=dict)  # per grantor; see `LimitLease`
    lease_until: dict[str, float] = field(default_factory=dict)
    lease_fence: dict[str, int] = field(default_factory=dict)  # highest fence taken, kept after a release
    lease_released_when_lapsed: set[str] = field(default_factory=set)
    cable_max_a: float | None = None
    faults: dict[Fault, Severity] = field(default_factory=dict)  # active, including latched ones
    latched: set[Fault] = field(default_factory=set)  # cleared by their source, held until unplug
    pwm_duty: float | None = None  # outputs as commanded: None = no PWM
    state_f: bool = False
    pwm_stopped_at: float | None = None
    relays_closed: bool = False
    relay_feedback: bool | None = None
    locked: bool = False


class ConnectorCore:
    """Facts, transitions and outputs; `ConnectorMachine` is the public face."""

    def __init__(self, config: ConnectorConfig | None = None, *, new_session_id: Callable[[int], str] | None = None):
        """`new_session_id(n)` names the n-th session (default `f"{config.name}-{n}"`; n is journaled)."""
        self.config = config or ConnectorConfig()
        self._new_session_id = new_session_id or (lambda n: f"{self.config.name}-{n}")
        self._f = Facts()
        self._out: list[Action] = []

    def effective_current_a(self, now: float) -> float:
        """min(every grantor's grant, failsafe without any lease, hardware max, cable max). May be
        below 6 A."""
        f, cfg = self._f, self.config
        limits = [min(self.granted_a(now).values(), default=cfg.failsafe_current_a), cfg.hardware_max_current_a]
        limits.extend(c for c in (f.cable_max_a, cfg.cable_max_current_a) if c is not None)
        return min(limits)

    def granted_a(self, now: float) -> dict[str, float]:
        """Per grantor: its lease's current, or the failsafe current once that lease lapsed (nothing
        for a lease that is released when it lapses)."""
        f, failsafe = self._f, self.config.failsafe_current_a
        return {
            g: a if now <= f.lease_until[g] else failsafe
            for g, a in f.lease_a.items()
            if now <= f.lease_until[g] or g not in f.lease_released_when_lapsed
        }

    def check_invariant(self) -> None:
        """Raise `SafetyViolation` if the relays are closed while DESIGN §7 (with the Table A.6
        seq 10 grace of `relays_may_stay_closed`) does not allow it."""
        f = self._f
        if f.relays_closed and not (f.state in (S.CHARGING, *GRACE_STATES) and self._relays_may_stay()):
            raise SafetyViolation(
                f"relays closed in {f.state.value}: pilot {f.pilot.value}, pwm {f.pwm_duty}, "
                f"authorized {f.authorized}, faults {sorted(k.value for k in f.faults)}"
            )

    # --- settling: transitions until nothing changes -------------------------------------------

    def _settle(self) -> None:
        self._open_relays_if_unsafe()
        for _ in range(_MAX_PASSES):
            target = self._next_state()
            if target is not self._f.state:
                self._enter(target)
            elif self._must_finish_in_place():
                self._finish_transaction(self._f.stop_reason or StopReason.OTHER)
            else:
                break
        else:
            raise RuntimeError(f"connector state did not settle (last {self._f.state.value})")
        self._sync_outputs()

    def _next_state(self) -> EvseState:
        f = self._f
        if not f.enabled:
            return S.DISABLED
        if f.faults or f.pilot in _NO_VEHICLE_READING:
            return S.INOPERATIVE
        if f.state in (S.DISABLED, S.INOPERATIVE):
            return self._resume_state()
        return self._next_session_state() if f.vehicle_connected else S.IDLE

    def _resume_state(self) -> EvseState:
        """Where to go when Disabled or Inoperative ends."""
        f = self._f
        if not f.vehicle_connected or f.session_id is None:
            return S.IDLE
        if f.transaction_active:
            return S.STOPPING_CHARGING if f.stop_reason else S.PREPARE_CHARGING
        return S.FINISHED if f.finished else S.WAITING_FOR_AUTHENTICATION

    def _next_session_state(self) -> EvseState:
        f, state = self._f, self._f.state
        if state is S.IDLE:
            return S.WAITING_FOR_AUTHENTICATION  # plug-in
        if state is S.WAITING_FOR_AUTHENTICATION:
            return S.FINISHED if f.finished else S.PREPARE_CHARGING if f.authorized else state
        if state is S.FINISHED or not f.transaction_active:
            return S.FINISHED
        if f.stop_reason is not None:
            return S.STOPPING_CHARGING  # and stays until the relays are open (`_must_finish_in_place`)
        if f.user_paused or self._offered_current() is None:
            return S.CHARGING_PAUSED_EVSE  # Table A.8 has no duty below 6 A: stop offering
        return self._next_power_state()

    def _next_power_state(self) -> EvseState:
        """Transaction running and power on offer: follow the EV's request."""
        state = self._f.state
        if state is S.CHARGING_PAUSED_EVSE:
            return S.PREPARE_CHARGING  # power is back: offer PWM again, whatever the EV does
        if not ev_requests_power(self._f.pilot, has_ventilation=self.config.has_ventilation):
            return S.CHARGING_PAUSED_EV if state is S.CHARGING else state  # B, or D without ventilation
        if state is S.PREPARE_CHARGING:
            return S.CHARGING if self._may_close() else state
        return S.CHARGING if state is S.CHARGING else S.PREPARE_CHARGING  # PausedEV: via PrepareCharging

    def _must_finish_in_place(self) -> bool:
        f = self._f
        return (
            f.transaction_active
            and f.stop_reason is not None
            and not f.relays_closed
            and f.state in (S.STOPPING_CHARGING, S.INOPERATIVE, S.DISABLED)
        )

    def _enter(self, state: EvseState) -> None:
        """Switch state and run its entry actions (session events first, then outputs)."""
        self._f.state = state
        entry = _ENTRY.get(state)
        if entry is not None:
            entry(self)
        self._sync_outputs()

    def _enter_waiting(self) -> None:
        f = self._f
        if f.session_id is None:
            self._start_session()
        if not f.authorized:
            self._session_event(K.AUTH_REQUIRED)
            if f.auth_deadline is None:
                f.auth_deadline = f.now + self.config.connection_timeout_s

    def _enter_prepare(self) -> None:
        f = self._f
        if not f.transaction_active:  # TransactionStarted "when auth is accepted, just before leaving" Waiting
            f.transaction_active, f.meter_start_wh, f.charging_started = True, f.energy_wh, False
            self._session_event(K.TRANSACTION_STARTED, meter_wh=f.meter_start_wh)
        self._session_event(K.PREPARE_CHARGING)

    def _enter_charging(self) -> None:
        f = self._f
        self._sync_outputs()  # lock before closing
        if not f.relays_closed:  # still closed when resumed within the seq 10.2 grace
            self._close_relays()  # Table A.6 seq 4: switch on within 3 s of B2 -> C2: this step
        self._session_event(K.CHARGING_RESUMED if f.charging_started else K.CHARGING_STARTED)
        f.charging_started = True

    def _enter_finished(self) -> None:
        f = self._f
        if f.transaction_active:
            self._finish_transaction(f.stop_reason or StopReason.OTHER)
        f.finished = True

    # --- outputs ---------------------------------------------------------------------------------

    def _sync_outputs(self) -> None:
        self._sync_pwm()
        self._open_relays_if_unsafe()  # e.g. PWM just stopped and the grace is 0
        self._sync_lock()

    def _sync_pwm(self) -> None:
        f = self._f
        state_f = f.state is S.DISABLED
        amps = self._offered_current() if f.state in _PWM_STATES else None
        duty = None if amps is None else duty_cycle_for_current(amps)
        if (duty, state_f) == (f.pwm_duty, f.state_f):
            return
        if f.pwm_duty is not None and duty is None:
            f.pwm_stopped_at = f.now  # starts the Table A.6 seq 10.2 grace
        elif duty is not None:
            f.pwm_stopped_at = None
        f.pwm_duty, f.state_f = duty, state_f
        if state_f:
            self._emit(SetStateF())
        else:
            self._emit(PwmOff() if duty is None else SetPwm(duty_percent=duty))

    def _sync_lock(self) -> None:
        f = self._f
        holds_vehicle = f.state in _SESSION_STATES or (f.state is S.INOPERATIVE and f.transaction_active)
        want = f.relays_closed or (
            holds_vehicle
            and (f.pilot in (Pilot.C, Pilot.D) or (f.pilot is Pilot.B and self.config.lock_connector_in_state_b))
        )
        if want != f.locked:
            f.locked = want
            self._emit(LockConnector() if want else UnlockConnector())

    def _offered_current(self) -> float | None:
        amps = self.effective_current_a(self._f.now)
        return min(amps, MAX_PWM_CURRENT_A) if amps >= MIN_PWM_CURRENT_A else None

    def _may_close(self) -> bool:
        f = self._f
        return relays_may_close(
            pilot=f.pilot,
            pwm_running=f.pwm_duty is not None,
            authorized=f.authorized,
            blocking_fault=bool(f.faults),
            has_ventilation=self.config.has_ventilation,
        )

    def _relays_may_stay(self) -> bool:
        f = self._f
        if f.state in (S.PREPARE_CHARGING, S.CHARGING):
            return self._may_close()
        if f.state not in GRACE_STATES:
            return False
        return relays_may_stay_closed(
            pilot=f.pilot,
            pwm_running=f.pwm_duty is not None,
            authorized=f.authorized,
            blocking_fault=bool(f.faults),
            has_ventilation=self.config.has_ventilation,
            pwm_off_for_s=None if f.pwm_stopped_at is None else f.now - f.pwm_stopped_at,
            timing=self.config.timing,
        )

    def _open_relays_if_unsafe(self) -> None:
        if self._f.relays_closed and not self._relays_may_stay():
            self._open_relays()

    def _open_relays(self) -> None:
        self._f.relays_closed = False
        self._emit(OpenRelays(emergency=self._emergency()))

    def _emergency(self) -> bool:
        """A High-severity fault is active: EVerest's EmergencyShutdown (else ErrorShutdown)."""
        return any(s is Severity.HIGH for s in self._f.faults.values())

    def _close_relays(self) -> None:
        if not self._may_close():  # DESIGN §7, checked before every close
            f = self._f
            raise SafetyViolation(f"refusing to close relays in {f.state.value} with pilot {f.pilot.value}")
        self._f.relays_closed = True
        self._emit(CloseRelays())

    # --- sessions and faults ---------------------------------------------------------------------

    def _start_session(self) -> None:
        f = self._f
        f.sessions_started += 1
        f.session_id = self._new_session_id(f.sessions_started)
        self._session_event(K.SESSION_STARTED)

    def _finish_transaction(self, reason: StopReason) -> None:
        f = self._f
        self._session_event(K.CHARGING_FINISHED)
        self._session_event(K.TRANSACTION_FINISHED, reason=reason, meter_wh=f.energy_wh)
        f.transaction_active = f.authorized = f.user_paused = f.charging_started = False
        f.stop_reason, f.finished = None, True

    def _unplugged(self) -> None:
        f = self._f
        f.vehicle_connected, f.cable_max_a = False, None
        if f.relays_closed:
            self._open_relays()  # Table A.6 seq 2.2: unplug in C/D
        if f.transaction_active:
            self._finish_transaction(StopReason.EV_DISCONNECTED)
        if f.session_id is not None:
            self._end_session()

    def _end_session(self) -> None:
        f = self._f
        self._session_event(K.SESSION_FINISHED)
        f.session_id = f.token_id = f.stop_reason = f.auth_deadline = None
        f.authorized = f.finished = f.user_paused = False

    def _add_fault(self, fault: Fault, severity: Severity) -> None:
        old = self._f.faults.get(fault)
        if old is None or _SEVERITY_RANK[severity] > _SEVERITY_RANK[old]:
            self._f.faults[fault] = severity

    def _clear_latched_faults(self) -> None:
        f = self._f
        for fault in f.latched:
            f.faults.pop(fault, None)
        f.latched.clear()

    def _session_event(
        self, kind: SessionEventKind, *, reason: StopReason | None = None, meter_wh: float | None = None
    ) -> None:
        f = self._f
        meter = f.energy_wh if meter_wh is None else meter_wh
        self._emit(SessionEvent(kind=kind, session_id=f.session_id, token_id=f.token_id, reason=reason, meter_wh=meter))

    def _emit(self, action: Action) -> None:
        self._out.append(action)


def _announce(kind: SessionEventKind) -> Callable[[ConnectorCore], None]:
    return lambda machine: machine._session_event(kind)


_ENTRY: dict[EvseState, Callable[[ConnectorCore], None]] = {
    S.WAITING_FOR_AUTHENTICATION: ConnectorCore._enter_waiting,
    S.PREPARE_CHARGING: ConnectorCore._enter_prepare,
    S.CHARGING: ConnectorCore._enter_charging,
    S.CHARGING_PAUSED_EV: _announce(K.CHARGING_PAUSED_EV),
    S.CHARGING_PAUSED_EVSE: _announce(K.CHARGING_PAUSED_EVSE),
    S.STOPPING_CHARGING: _announce(K.STOPPING_CHARGING),
    S.FINISHED: ConnectorCore._enter_finished,
    S.DISABLED: _announce(K.DISABLED),
}
