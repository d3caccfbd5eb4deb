"""The charging logic of one AC connector as a pure state machine (EVerest EvseManager, basic charging).

`ConnectorMachine.handle(event, now)` takes one input (`charger.protocols.evse_events`) and the time
in seconds, and returns the actions to carry out, in order. No I/O, threads, actors or clock: the
EVSE-manager actor feeds board, auth, energy and meter events in and executes what comes out.

Each step runs in four phases: the handler records the input (opening the relays at once if the
input makes closed relays unsafe); timeouts due at `now` fire; the state settles through as many
transitions as the facts allow, each state's entry emitting its session events and outputs; last,
`check_invariant()` verifies the relay invariant (DESIGN §7) and raises `SafetyViolation` on a bug.

Transitions follow everest.md §4. Plug-in (A -> B) starts a session and asks for authorization;
authorization starts the transaction and offers PWM from the effective current; the EV asking for
power (C, or D with ventilation) closes the relays; B pauses (EV), a limit below 6 A or a user pause
pauses (EVSE); unplug ends everything at once; a blocking fault or a pilot reading E, F or Disabled
makes the connector Inoperative until it clears (some faults only on unplug).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from charger.protocols.evse_core import GRACE_STATES, ConnectorConfig, ConnectorCore, Facts
from charger.protocols.evse_events import (
    Action,
    Authorized,
    CableRatingDetected,
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
    SessionEventKind,
    SetPwm,
    SetStateF,
    StaleLease,
    StopReason,
    StopRequested,
    Tick,
    UnlockConnector,
    UnlockRequested,
)
from charger.protocols.evse_snapshot import SNAPSHOT_VERSION, facts_from_native, facts_to_native
from charger.protocols.iec61851 import Pilot, SafetyViolation

from charger.interfaces import Severity

__all__ = ["SNAPSHOT_VERSION", "ConnectorConfig", "ConnectorMachine"]

S = EvseState
K = SessionEventKind


class ConnectorMachine(ConnectorCore):
    """One connector's charging logic. Not thread-safe; one actor owns it."""

    # --- read-only view ------------------------------------------------------------------------

    @property
    def state(self) -> EvseState:
        return self._f.state

    @property
    def pilot(self) -> Pilot:
        return self._f.pilot

    @property
    def session_id(self) -> str | None:
        return self._f.session_id

    @property
    def token_id(self) -> str | None:
        return self._f.token_id

    @property
    def authorized(self) -> bool:
        return self._f.authorized

    @property
    def transaction_active(self) -> bool:
        return self._f.transaction_active

    @property
    def relays_closed(self) -> bool:
        """The relays as commanded (see `relay_feedback` for what the board reports)."""
        return self._f.relays_closed

    @property
    def relay_feedback(self) -> bool | None:
        return self._f.relay_feedback

    @property
    def pwm_duty(self) -> float | None:
        """The duty cycle being generated, None when PWM is off (x1 or F)."""
        return self._f.pwm_duty

    @property
    def locked(self) -> bool:
        return self._f.locked

    @property
    def lease_until(self) -> float | None:
        """When the first of the current leases lapses (None: no grantor holds one)."""
        return min(self._f.lease_until.values(), default=None)

    @property
    def leases(self) -> Mapping[str, tuple[float, float]]:
        """Per grantor: (amps, valid_until) of its latest lease, lapsed or not."""
        f = self._f
        return MappingProxyType({g: (a, f.lease_until[g]) for g, a in f.lease_a.items()})

    @property
    def active_faults(self) -> Mapping[Fault, Severity]:
        return MappingProxyType(self._f.faults)

    @property
    def energy_wh(self) -> float | None:
        """Energy of the current (or last) transaction, from the meter readings."""
        f = self._f
        return None if f.energy_wh is None or f.meter_start_wh is None else f.energy_wh - f.meter_start_wh

    def next_deadline(self) -> float | None:
        """When to send the next `Tick` at the latest (None: nothing pending). A lease lapses only
        strictly after its `valid_until`, so tick a little after that one."""
        f = self._f
        due = [t for t in (f.auth_deadline, *f.lease_until.values()) if t is not None and t >= f.now]
        if f.relays_closed and f.state in GRACE_STATES and f.pwm_stopped_at is not None:
            due.append(f.pwm_stopped_at + self.config.timing.c1_power_off_s)
        return min(due, default=None)

    # --- inputs --------------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one input at time `now` (seconds; wall-clock if snapshots must survive a reboot)."""
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"not a connector event: {event!r}")
        if not math.isfinite(now):
            raise ValueError(f"now must be finite, got {now!r}")
        self._out = []
        self._f.now = float(now)
        handler(self, event)
        self._expire_connection_timeout()
        self._settle()
        self.check_invariant()
        out, self._out = self._out, []
        return out

    def resync(self) -> list[Action]:
        """Actions that re-assert every output: after start-up, `restore()` or a board restart.

        Relays are re-closed only if `relays_may_close` holds now; otherwise they are commanded open
        (a restore in the 6 s grace opens them)."""
        f = self._f
        self._out = []
        keep_closed = f.relays_closed and f.state is S.CHARGING and self._may_close()
        if not keep_closed:
            self._open_relays()
        if f.state_f:
            self._emit(SetStateF())
        else:
            self._emit(PwmOff() if f.pwm_duty is None else SetPwm(duty_percent=f.pwm_duty))
        self._emit(LockConnector() if f.locked else UnlockConnector())
        if keep_closed:
            self._close_relays()
        self.check_invariant()
        out, self._out = self._out, []
        return out

    def snapshot(self) -> dict[str, Any]:
        """Every fact as msgpack-native values, for the actor's journal."""
        return facts_to_native(self._f)

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Resume from `snapshot()` output (same config). ValueError if it is malformed or unsafe.
        Follow with `resync()`: the board may have changed its outputs meanwhile."""
        previous = self._f
        self._f = facts_from_native(Facts, _upgraded(snapshot))
        try:
            self.check_invariant()
        except SafetyViolation as exc:
            self._f = previous
            raise ValueError(f"snapshot violates the relay invariant: {exc}") from None

    # --- handlers: record the input; open the relays at once if it made them unsafe ----------

    def _on_pilot(self, event: PilotChanged) -> None:
        f = self._f
        if event.pilot is Pilot.F and f.state is S.DISABLED:
            return  # our own state F output, not a reading of the vehicle
        f.pilot = event.pilot
        if event.pilot is Pilot.A:
            self._clear_latched_faults()  # "cleared on unplug" means: pilot A seen
            if f.vehicle_connected:
                self._unplugged()
        elif event.pilot is Pilot.E:
            self._add_fault(Fault.PILOT_ERROR_E, Severity.HIGH)
            f.latched.add(Fault.PILOT_ERROR_E)  # no source clears it: only unplug does
        elif event.pilot in (Pilot.B, Pilot.C, Pilot.D) and not f.vehicle_connected:
            f.vehicle_connected = True
            if f.authorized:
                f.auth_deadline = None  # token first: plugged in within the connection timeout
        self._open_relays_if_unsafe()  # Table A.6 seq 8.1: C -> B opens within 100 ms: this step

    def _on_authorized(self, event: Authorized) -> None:
        f = self._f
        if not f.enabled or f.authorized or f.transaction_active or f.finished:
            return
        if f.session_id is None:
            self._start_session()  # token first: the session starts with the authorization
        f.authorized, f.token_id = True, event.token_id
        self._session_event(K.AUTHORIZED)
        f.auth_deadline = None if f.vehicle_connected else f.now + self.config.connection_timeout_s

    def _on_deauthorized(self, _event: Deauthorized) -> None:
        f = self._f
        if not f.authorized:
            return
        f.authorized = False
        self._open_relays_if_unsafe()
        self._session_event(K.DEAUTHORIZED)
        if f.transaction_active:
            f.stop_reason = f.stop_reason or StopReason.DE_AUTHORIZED
        elif not f.vehicle_connected:
            self._end_session()
        else:
            f.auth_deadline = None  # a new wait for authorization starts when the state resumes

    def _on_lease(self, event: LimitLease) -> None:
        f = self._take_fence(event.grantor, event.fence)
        f.lease_a[event.grantor], f.lease_until[event.grantor] = float(event.amps), float(event.valid_until)
        (f.lease_released_when_lapsed.add if event.released_when_lapsed else f.lease_released_when_lapsed.discard)(
            event.grantor
        )

    def _on_lease_released(self, event: LimitReleased) -> None:
        f = self._take_fence(event.grantor, event.fence)
        f.lease_a.pop(event.grantor, None)
        f.lease_until.pop(event.grantor, None)
        f.lease_released_when_lapsed.discard(event.grantor)

    def _take_fence(self, grantor: str, fence: int) -> Facts:
        f = self._f
        taken = f.lease_fence.get(grantor, fence)
        if fence < taken:
            raise StaleLease(f"{grantor or 'the grantor'} is superseded: fence {fence} < {taken} already taken")
        f.lease_fence[grantor] = fence
        return f

    def _on_cable(self, event: CableRatingDetected) -> None:
        self._f.cable_max_a = float(event.max_current_a)

    def _on_meter(self, event: MeterValue) -> None:
        self._f.energy_wh = float(event.energy_wh)

    def _on_fault_raised(self, event: FaultRaised) -> None:
        self._add_fault(event.fault, event.severity or event.fault.default_severity)
        self._f.latched.discard(event.fault)
        self._open_relays_if_unsafe()

    def _on_fault_cleared(self, event: FaultCleared) -> None:
        f = self._f
        if event.fault not in f.faults:
            return
        if event.fault.clears_on_unplug and f.vehicle_connected:
            f.latched.add(event.fault)
        else:
            del f.faults[event.fault]
            f.latched.discard(event.fault)

    def _on_pause(self, _event: PauseRequested) -> None:
        if self._f.transaction_active and self._f.stop_reason is None:
            self._f.user_paused = True

    def _on_resume(self, _event: ResumeRequested) -> None:
        self._f.user_paused = False

    def _on_stop(self, event: StopRequested) -> None:
        if self._f.transaction_active and self._f.stop_reason is None:
            self._f.stop_reason = event.reason

    def _on_unlock(self, _event: UnlockRequested) -> None:
        f = self._f
        if f.transaction_active or f.session_id is None or f.finished:
            return  # a transaction stops first; outside a waiting session the plug is not held
        f.auth_deadline = None
        if f.authorized:
            f.authorized = False
            self._session_event(K.DEAUTHORIZED)
        if f.vehicle_connected:
            f.finished = True  # Finished, unlocked, until unplug (settled below)
        else:
            self._end_session()

    def _on_relay_feedback(self, event: RelayFeedback) -> None:
        self._f.relay_feedback = event.closed
        if event.closed and not self._f.relays_closed:
            self._emit(OpenRelays(emergency=self._emergency()))  # closed against our command: late or welded

    def _on_enable(self, _event: EnableRequested) -> None:
        if not self._f.enabled:
            self._f.enabled = True
            self._session_event(K.ENABLED)

    def _on_disable(self, event: DisableRequested) -> None:
        f = self._f
        if not f.enabled:
            return
        f.enabled = False
        if f.relays_closed:
            self._open_relays()
        if f.transaction_active:
            f.stop_reason = f.stop_reason or event.reason
        elif f.session_id is not None:
            if f.authorized:
                f.authorized = False
                self._session_event(K.DEAUTHORIZED)
            if f.vehicle_connected:
                f.finished, f.auth_deadline = True, None
            else:
                self._end_session()

    def _on_tick(self, _event: Tick) -> None:
        pass

    # --- timers ----------------------------------------------------------------------------------

    def _expire_connection_timeout(self) -> None:
        f = self._f
        if f.auth_deadline is None or f.now < f.auth_deadline:
            return
        f.auth_deadline = None
        if f.session_id is None or f.transaction_active or f.finished:
            return
        if f.vehicle_connected and not f.authorized:  # plugged in, nobody authorized in time
            self._session_event(K.DEAUTHORIZED)
            self._session_event(K.PLUGIN_TIMEOUT)
            f.finished = True
        elif not f.vehicle_connected and f.authorized:  # authorized, nobody plugged in in time
            f.authorized = False
            self._session_event(K.DEAUTHORIZED)
            self._session_event(K.PLUGIN_TIMEOUT)
            self._end_session()


_HANDLERS: dict[type, Callable[[ConnectorMachine, Any], None]] = {
    PilotChanged: ConnectorMachine._on_pilot,
    Authorized: ConnectorMachine._on_authorized,
    Deauthorized: ConnectorMachine._on_deauthorized,
    LimitLease: ConnectorMachine._on_lease,
    LimitReleased: ConnectorMachine._on_lease_released,
    CableRatingDetected: ConnectorMachine._on_cable,
    MeterValue: ConnectorMachine._on_meter,
    FaultRaised: ConnectorMachine._on_fault_raised,
    FaultCleared: ConnectorMachine._on_fault_cleared,
    PauseRequested: ConnectorMachine._on_pause,
    ResumeRequested: ConnectorMachine._on_resume,
    StopRequested: ConnectorMachine._on_stop,
    UnlockRequested: ConnectorMachine._on_unlock,
    RelayFeedback: ConnectorMachine._on_relay_feedback,
    EnableRequested: ConnectorMachine._on_enable,
    DisableRequested: ConnectorMachine._on_disable,
    Tick: ConnectorMachine._on_tick,
}


def _upgraded(snapshot: Mapping[str, Any]) -> Mapping[str, Any]:
    """A version 1 snapshot held one lease without a grantor: it becomes grantor "" at fence 0."""
    if not isinstance(snapshot, Mapping) or snapshot.get("version") != 1:
        return snapshot
    old = dict(snapshot)
    amps, until = old.pop("lease_a", None), old.pop("lease_until", None)
    held = amps is not None and until is not None
    return {
        **old,
        "version": 2,
        "lease_a": {"": amps} if held else {},
        "lease_until": {"": until} if held else {},
        "lease_fence": {"": 0} if held else {},
        "lease_released_when_lapsed": [],
    }
