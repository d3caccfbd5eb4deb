"""Property-based: any sequence of inputs keeps the relay invariant (DESIGN §7), and a machine restored
from a snapshot mid-sequence behaves exactly like the original on the rest of it.

The checks rebuild relay, PWM and lock state from the emitted actions alone (a shadow of what the
board would do), so they do not trust the machine's own bookkeeping."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from charger.protocols.evse_events import (
    Action,
    Authorized,
    CableRatingDetected,
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
    SetPwm,
    SetStateF,
    Severity,
    StaleLease,
    StopReason,
    StopRequested,
    Tick,
    UnlockConnector,
    UnlockRequested,
)
from charger.protocols.evse_session import ConnectorConfig, ConnectorMachine
from charger.protocols.iec61851 import IecTiming, Pilot, current_for_duty, ev_requests_power, relays_may_close
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocols.evse_helpers import CFG

CONFIGS = [
    CFG,
    dataclasses.replace(CFG, failsafe_current_a=0.0, has_ventilation=True),
    dataclasses.replace(CFG, lock_connector_in_state_b=False, timing=IecTiming(c1_power_off_s=0.0)),
    dataclasses.replace(CFG, hardware_max_current_a=80.0, cable_max_current_a=13.0, connection_timeout_s=5.0),
]


def weighted(*choices: tuple[int, st.SearchStrategy[Event]]) -> st.SearchStrategy[Event]:
    """Pick a strategy with the given relative weight. Plain `one_of` weighs a fault like a plug-in (and
    merges repeated branches), so the machine would hardly ever reach Charging."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


GRANTORS = st.sampled_from(["", "energy-manager", "ocpp"])
FENCES = st.sampled_from([0, 0, 0, 1, 2])
events = weighted(
    (10, st.builds(PilotChanged, pilot=st.sampled_from([Pilot.A, Pilot.B, Pilot.B, Pilot.C, Pilot.C, Pilot.D]))),
    (1, st.builds(PilotChanged, pilot=st.sampled_from([Pilot.E, Pilot.F, Pilot.DISABLED]))),
    (4, st.builds(Authorized, token_id=st.sampled_from(["a", "b"]))),
    (4, st.just(Tick())),
    (
        4,
        st.builds(
            LimitLease,
            amps=st.sampled_from([0.0, 5.9, 6.0, 16.0, 32.0, 100.0]) | st.floats(0.0, 100.0),
            valid_until=st.floats(0.0, 800.0),
            grantor=GRANTORS,
            fence=FENCES,
            released_when_lapsed=st.booleans(),
        ),
    ),
    (1, st.builds(LimitReleased, grantor=GRANTORS, fence=FENCES)),
    (1, st.builds(CableRatingDetected, max_current_a=st.sampled_from([0.0, 13.0, 20.0, 32.0, 63.0]))),
    (1, st.builds(MeterValue, energy_wh=st.floats(0.0, 1e6))),
    (1, st.builds(FaultRaised, fault=st.sampled_from(list(Fault)), severity=st.none() | st.sampled_from(Severity))),
    (2, st.builds(FaultCleared, fault=st.sampled_from(list(Fault)))),
    (1, st.just(PauseRequested())),
    (1, st.just(ResumeRequested())),
    (1, st.builds(StopRequested, reason=st.sampled_from(list(StopReason)))),
    (1, st.builds(RelayFeedback, closed=st.booleans())),
    (1, st.just(Deauthorized())),
    (2, st.just(EnableRequested())),
    (1, st.builds(DisableRequested, reason=st.sampled_from(list(StopReason)))),
    (1, st.just(UnlockRequested())),
)
gaps = st.sampled_from([0.0, 0.05, 0.1, 1.0, 2.0, 5.999, 6.0, 61.0]) | st.floats(0.0, 8.0)
CHARGE: list[tuple[float, Event]] = [
    (0.0, PilotChanged(pilot=Pilot.B)),
    (0.5, Authorized(token_id="a")),
    (0.5, PilotChanged(pilot=Pilot.C)),
]
# Sequences start from Idle, from Charging (as far as the config allows) or just after an EVSE pause
# with the EV still in C (inside the seq 10.2 grace), so that what follows often hits Charging, the
# pauses and the grace; hypothesis favours short lists, so long ones are added on purpose.
PREFIXES = [[], CHARGE, [*CHARGE, (1.0, PauseRequested())]]
sequences = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(PREFIXES),
    st.lists(st.tuples(gaps, events), max_size=57) | st.lists(st.tuples(gaps, events), min_size=30, max_size=57),
)


@dataclasses.dataclass
class Shadow:
    """The board as the actions leave it, and the limits as the inputs set them."""

    relays: bool = False
    pwm: float | None = None
    pwm_stopped_at: float | None = None
    locked: bool = False
    leases: dict[str, LimitLease] = dataclasses.field(default_factory=dict)
    fences: dict[str, int] = dataclasses.field(default_factory=dict)
    cable_a: float | None = None
    plugged: bool = False
    pause_asked: bool = False  # the last of Pause/Resume was a Pause

    def stale(self, event: Event) -> bool:
        """Whether the machine must refuse `event` as coming from a superseded grantor."""
        match event:
            case LimitLease(grantor=g, fence=fence) | LimitReleased(grantor=g, fence=fence):
                return fence < self.fences.get(g, fence)
        return False

    def note(self, event: Event) -> None:
        match event:
            case LimitLease(grantor=g, fence=fence):
                self.leases[g], self.fences[g] = event, fence
            case LimitReleased(grantor=g, fence=fence):
                self.leases.pop(g, None)
                self.fences[g] = fence
            case CableRatingDetected(max_current_a=amps):
                self.cable_a = amps
            case PilotChanged(pilot=Pilot.B | Pilot.C | Pilot.D):
                self.plugged = True
            case PilotChanged(pilot=Pilot.A):
                if self.plugged:
                    self.cable_a = None  # a cable rating lasts until unplug
                self.plugged = False
            case PauseRequested() | ResumeRequested():
                self.pause_asked = isinstance(event, PauseRequested)

    def limit_a(self, cfg: ConnectorConfig, now: float) -> float:
        granted = [
            x.amps if now <= x.valid_until else cfg.failsafe_current_a
            for x in self.leases.values()
            if now <= x.valid_until or not x.released_when_lapsed
        ]
        limits = [min(granted, default=cfg.failsafe_current_a), cfg.hardware_max_current_a]
        return min(limits + [c for c in (self.cable_a, cfg.cable_max_current_a) if c is not None])

    def apply(self, action: Action, now: float) -> None:
        match action:
            case CloseRelays():
                self.relays = True
            case OpenRelays():
                self.relays = False
            case SetPwm(duty_percent=duty):
                self.pwm, self.pwm_stopped_at = duty, None
            case PwmOff() | SetStateF():
                if self.pwm is not None:
                    self.pwm_stopped_at = now
                self.pwm = None
            case LockConnector():
                self.locked = True
            case UnlockConnector():
                self.locked = False


def check_step(m: ConnectorMachine, cfg: ConnectorConfig, shadow: Shadow, actions: list[Action], now: float) -> None:
    for action in actions:
        shadow.apply(action, now)
    assert (shadow.relays, shadow.pwm, shadow.locked) == (m.relays_closed, m.pwm_duty, m.locked)
    may_close = relays_may_close(
        pilot=m.pilot,
        pwm_running=shadow.pwm is not None,
        authorized=m.authorized,
        blocking_fault=bool(m.active_faults),
        has_ventilation=cfg.has_ventilation,
    )
    if shadow.pwm is not None:  # never offers more than lease-or-failsafe, hardware and cable allow
        offered = current_for_duty(shadow.pwm)
        assert offered is not None and 6.0 <= offered <= shadow.limit_a(cfg, now) + 1e-9
    if m.state is EvseState.CHARGING:  # Charging means energy may flow; anything else is a stuck state
        assert shadow.relays and shadow.pwm is not None
    if m.state is EvseState.CHARGING_PAUSED_EVSE and not shadow.pause_asked:  # paused only for want of power
        assert shadow.limit_a(cfg, now) < 6.0
    relay_actions = [a for a in actions if isinstance(a, OpenRelays | CloseRelays)]
    if any(isinstance(a, CloseRelays) for a in relay_actions):
        # a close is the step's last relay action and the invariant holds when the step ends
        assert isinstance(relay_actions[-1], CloseRelays) and may_close, actions
    if shadow.relays:
        assert shadow.locked  # never unlocked under load
        if not may_close:  # only the Table A.6 seq 10.2 grace may keep them closed
            assert m.state in (EvseState.CHARGING_PAUSED_EVSE, EvseState.STOPPING_CHARGING)
            assert shadow.pwm is None and shadow.pwm_stopped_at is not None
            assert now - shadow.pwm_stopped_at < cfg.timing.c1_power_off_s
            assert ev_requests_power(m.pilot, has_ventilation=cfg.has_ventilation)
            assert m.authorized and not m.active_faults
    if any(s is Severity.HIGH for s in m.active_faults.values()):
        assert all(a.emergency for a in actions if isinstance(a, OpenRelays))
    m.check_invariant()


@settings(max_examples=500, deadline=None)
@given(
    config=st.sampled_from(CONFIGS),
    steps=sequences,
    split=st.integers(min_value=0, max_value=60),
    start=st.floats(0.0, 1e9),
)
def test_random_inputs_keep_the_invariant_and_restore_is_exact(
    config: ConnectorConfig, steps: list[tuple[float, Event]], split: int, start: float
) -> None:
    m = ConnectorMachine(config)
    shadow = Shadow()
    now = start
    restored: ConnectorMachine | None = None
    for index, (gap, event) in enumerate(steps):
        if index == split:
            restored = ConnectorMachine(config)
            restored.restore(msgpack.unpackb(msgpack.packb(m.snapshot())))
        now += gap
        if shadow.stale(event):
            with pytest.raises(StaleLease):
                m.handle(event, now)
            if restored is not None:
                with pytest.raises(StaleLease):
                    restored.handle(event, now)
            continue
        shadow.note(event)
        in_transaction = m.transaction_active
        actions = m.handle(event, now)
        check_step(m, config, shadow, actions, now)
        if isinstance(event, UnlockRequested):
            # unlocked outside a transaction; a transaction goes on, still holding the plug if it did
            assert m.transaction_active if in_transaction else not shadow.locked
            assert m.state is not EvseState.WAITING_FOR_AUTHENTICATION
        if restored is not None:
            assert restored.handle(event, now) == actions
            assert restored.snapshot() == m.snapshot()
