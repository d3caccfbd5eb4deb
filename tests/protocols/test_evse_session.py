"""Connector machine, table-driven: from a start state, each event at an explicit time gives exactly
these actions and this state. Then snapshot/restore, resync, deadlines and configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgpack
import pytest
from charger.protocols.evse_events import (
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
    MeterValue,
    PauseRequested,
    RelayFeedback,
    ResumeRequested,
    SessionEvent,
    SessionEventKind,
    Severity,
    StaleLease,
    StopReason,
    StopRequested,
    UnlockRequested,
)
from charger.protocols.evse_session import SNAPSHOT_VERSION, ConnectorConfig, ConnectorMachine
from charger.protocols.iec61851 import IecTiming, Pilot

from tests.protocols.evse_helpers import AUTH, CFG, TICK, describe, lease, pilot

S = EvseState
# Prefixes that reach a start state; their actions are checked by the cases that start from Idle.
Steps = Sequence[tuple[float, Event]]
CHARGING: Steps = [(0.0, pilot("B")), (1.0, AUTH), (2.0, pilot("C"))]
PAUSED_EV: Steps = [*CHARGING, (50.0, pilot("B"))]
WAITING: Steps = [(0.0, pilot("B"))]
PLUG_IN_ACTIONS = ["SessionStarted", "AuthRequired", "lock"]
START_TX = ["Authorized", "TransactionStarted", "PrepareCharging", "PWM 26.7%"]
UNPLUG_TX = ["ChargingFinished", "TransactionFinished(EVDisconnected)", "SessionFinished"]
UNLOCK = UnlockRequested()
RESUME_16A = ["PrepareCharging", "PWM 26.7%", "close", "ChargingResumed"]


@dataclass
class Case:
    name: str
    start: Steps
    start_state: EvseState
    steps: Sequence[tuple[float, Event, EvseState, list[str]]]
    config: ConnectorConfig = field(default_factory=lambda: CFG)


CASES = [
    Case("plug-in first", [], S.IDLE, [
        (0.0, pilot("B"), S.WAITING_FOR_AUTHENTICATION, PLUG_IN_ACTIONS),
        (5.0, AUTH, S.PREPARE_CHARGING, START_TX),
        (6.0, pilot("C"), S.CHARGING, ["close", "ChargingStarted"]),
        (3600.0, pilot("B"), S.CHARGING_PAUSED_EV, ["open", "ChargingPausedEV"]),
        (3700.0, pilot("A"), S.IDLE, [*UNPLUG_TX, "PWM off", "unlock"]),
    ]),
    Case("token first, then plug-in", [], S.IDLE, [
        (0.0, AUTH, S.IDLE, ["SessionStarted", "Authorized"]),
        (30.0, pilot("B"), S.PREPARE_CHARGING, ["lock", "TransactionStarted", "PrepareCharging", "PWM 26.7%"]),
        (31.0, pilot("C"), S.CHARGING, ["close", "ChargingStarted"]),
        (90.0, TICK, S.CHARGING, []),  # plugged in within the connection timeout: no timeout later
    ]),
    Case("token first, nobody plugs in", [], S.IDLE, [
        (0.0, AUTH, S.IDLE, ["SessionStarted", "Authorized"]),
        (59.9, TICK, S.IDLE, []),
        (60.0, TICK, S.IDLE, ["Deauthorized", "PluginTimeout", "SessionFinished"]),
        (61.0, pilot("B"), S.WAITING_FOR_AUTHENTICATION, PLUG_IN_ACTIONS),  # a new session
    ]),
    Case("authorization timeout after plug-in", WAITING, S.WAITING_FOR_AUTHENTICATION, [
        (59.9, TICK, S.WAITING_FOR_AUTHENTICATION, []),
        (60.0, TICK, S.FINISHED, ["Deauthorized", "PluginTimeout", "unlock"]),
        (70.0, AUTH, S.FINISHED, []),  # too late: replug first
        (80.0, pilot("A"), S.IDLE, ["SessionFinished"]),
    ]),
    Case("unlock while waiting for authorization: Finished until unplug", WAITING, S.WAITING_FOR_AUTHENTICATION, [
        (10.0, UNLOCK, S.FINISHED, ["unlock"]),
        (60.0, TICK, S.FINISHED, []),  # no connection timeout any more
        (70.0, AUTH, S.FINISHED, []),  # replug first
        (80.0, pilot("A"), S.IDLE, ["SessionFinished"]),
        (81.0, pilot("B"), S.WAITING_FOR_AUTHENTICATION, PLUG_IN_ACTIONS),  # a new session
    ]),
    Case("unlock with a token waiting for the plug ends that session", [], S.IDLE, [
        (0.0, AUTH, S.IDLE, ["SessionStarted", "Authorized"]),
        (1.0, UNLOCK, S.IDLE, ["Deauthorized", "SessionFinished"]),
    ]),
    Case("unlock during a transaction changes nothing", CHARGING, S.CHARGING, [
        (10.0, UNLOCK, S.CHARGING, []),  # still locked: the transaction must stop first
        (11.0, pilot("B"), S.CHARGING_PAUSED_EV, ["open", "ChargingPausedEV"]),
        (12.0, UNLOCK, S.CHARGING_PAUSED_EV, []),
    ]),
    Case("unlock without a session changes nothing", [], S.IDLE, [
        (0.0, UNLOCK, S.IDLE, []),
    ]),
    Case("simplified mode: plug straight into C", [], S.IDLE, [
        (0.0, pilot("C"), S.WAITING_FOR_AUTHENTICATION, PLUG_IN_ACTIONS),
        (1.0, AUTH, S.CHARGING, [*START_TX, "close", "ChargingStarted"]),
    ]),
    Case("pause by EV and resume", CHARGING, S.CHARGING, [
        (100.0, pilot("B"), S.CHARGING_PAUSED_EV, ["open", "ChargingPausedEV"]),  # seq 8.1: same step
        (200.0, pilot("C"), S.CHARGING, ["PrepareCharging", "close", "ChargingResumed"]),
    ]),
    Case("pause by EVSE (limit 0), EV goes to B", CHARGING, S.CHARGING, [
        (100.0, lease(0.0), S.CHARGING_PAUSED_EVSE, ["ChargingPausedEVSE", "PWM off"]),
        (101.5, pilot("B"), S.CHARGING_PAUSED_EVSE, ["open"]),  # seq 8.2
        (200.0, lease(16.0), S.PREPARE_CHARGING, ["PrepareCharging", "PWM 26.7%"]),
        (201.0, pilot("C"), S.CHARGING, ["close", "ChargingResumed"]),
    ]),
    Case("pause by EVSE, EV stays in C: forced power-off after 6 s", CHARGING, S.CHARGING, [
        (100.0, lease(0.0), S.CHARGING_PAUSED_EVSE, ["ChargingPausedEVSE", "PWM off"]),
        (105.999, TICK, S.CHARGING_PAUSED_EVSE, []),
        (106.0, TICK, S.CHARGING_PAUSED_EVSE, ["open"]),  # seq 10.2
        (200.0, lease(10.0), S.CHARGING, ["PrepareCharging", "PWM 16.7%", "close", "ChargingResumed"]),
    ]),
    Case("limit back within the grace: relays never opened", CHARGING, S.CHARGING, [
        (100.0, lease(0.0), S.CHARGING_PAUSED_EVSE, ["ChargingPausedEVSE", "PWM off"]),
        (103.0, lease(16.0), S.CHARGING, ["PrepareCharging", "PWM 26.7%", "ChargingResumed"]),
    ]),
    Case("a limit below 6 A cannot be signalled: pause", CHARGING, S.CHARGING, [
        (100.0, lease(5.9), S.CHARGING_PAUSED_EVSE, ["ChargingPausedEVSE", "PWM off"]),
        (101.0, lease(6.0), S.CHARGING, ["PrepareCharging", "PWM 10.0%", "ChargingResumed"]),
    ]),
    Case("user pause and resume", CHARGING, S.CHARGING, [
        (100.0, PauseRequested(), S.CHARGING_PAUSED_EVSE, ["ChargingPausedEVSE", "PWM off"]),
        (101.0, pilot("B"), S.CHARGING_PAUSED_EVSE, ["open"]),
        (102.0, lease(32.0), S.CHARGING_PAUSED_EVSE, []),  # a lease does not undo a user pause
        (150.0, ResumeRequested(), S.PREPARE_CHARGING, ["PrepareCharging", "PWM 53.3%"]),
        (151.0, pilot("C"), S.CHARGING, ["close", "ChargingResumed"]),
    ]),
    Case("lease lapses to the failsafe current", [(0.0, lease(32.0, until=100.0))], S.IDLE, [
        (1.0, pilot("B"), S.WAITING_FOR_AUTHENTICATION, PLUG_IN_ACTIONS),
        (2.0, AUTH, S.PREPARE_CHARGING, ["Authorized", "TransactionStarted", "PrepareCharging", "PWM 53.3%"]),
        (3.0, pilot("C"), S.CHARGING, ["close", "ChargingStarted"]),
        (100.0, TICK, S.CHARGING, []),  # valid up to and including valid_until
        (100.5, TICK, S.CHARGING, ["PWM 26.7%"]),  # failsafe 16 A
        (110.0, lease(20.0, until=200.0), S.CHARGING, ["PWM 33.3%"]),
    ]),
    Case("lease lapses, failsafe 0 pauses", [(0.0, lease(16.0, until=100.0)), *CHARGING], S.CHARGING, [
        (100.5, TICK, S.CHARGING_PAUSED_EVSE, ["ChargingPausedEVSE", "PWM off"]),
        (106.4, TICK, S.CHARGING_PAUSED_EVSE, []),
        (106.5, TICK, S.CHARGING_PAUSED_EVSE, ["open"]),
        (107.0, lease(16.0, until=300.0), S.CHARGING, RESUME_16A),
    ], config=dataclasses.replace(CFG, failsafe_current_a=0.0)),
    Case("current = min(lease, hardware, cable)", [(0.0, lease(63.0))], S.IDLE, [
        (1.0, pilot("B"), S.WAITING_FOR_AUTHENTICATION, PLUG_IN_ACTIONS),
        (2.0, AUTH, S.PREPARE_CHARGING, ["Authorized", "TransactionStarted", "PrepareCharging", "PWM 53.3%"]),
        (3.0, CableRatingDetected(max_current_a=20.0), S.PREPARE_CHARGING, ["PWM 33.3%"]),
        (4.0, pilot("A"), S.IDLE, [*UNPLUG_TX, "PWM off", "unlock"]),
    ]),
    Case("RCD trip while charging: latched until unplug", CHARGING, S.CHARGING, [
        (100.0, FaultRaised(fault=Fault.RCD), S.INOPERATIVE, ["open!", "PWM off"]),  # emergency, same step
        (101.0, FaultCleared(fault=Fault.RCD), S.INOPERATIVE, []),
        (102.0, pilot("B"), S.INOPERATIVE, []),
        (110.0, pilot("A"), S.IDLE, [*UNPLUG_TX, "unlock"]),
    ]),
    Case("RCD: unplugged before its source clears", CHARGING, S.CHARGING, [
        (100.0, FaultRaised(fault=Fault.RCD), S.INOPERATIVE, ["open!", "PWM off"]),
        (110.0, pilot("A"), S.INOPERATIVE, [*UNPLUG_TX, "unlock"]),
        (120.0, FaultCleared(fault=Fault.RCD), S.IDLE, []),
    ]),
    Case("meter offline: inoperative until cleared, then resumes", CHARGING, S.CHARGING, [
        (100.0, FaultRaised(fault=Fault.METER_OFFLINE), S.INOPERATIVE, ["open", "PWM off"]),
        (130.0, FaultCleared(fault=Fault.METER_OFFLINE), S.CHARGING, RESUME_16A),
    ]),
    Case("fault before authorization", WAITING, S.WAITING_FOR_AUTHENTICATION, [
        (1.0, FaultRaised(fault=Fault.METER_OFFLINE, severity=Severity.LOW), S.INOPERATIVE, ["unlock"]),
        (2.0, AUTH, S.INOPERATIVE, ["Authorized"]),
        (3.0, FaultCleared(fault=Fault.METER_OFFLINE), S.PREPARE_CHARGING, ["lock", *START_TX[1:]]),
    ]),
    Case("fault while idle", [], S.IDLE, [
        (0.0, FaultRaised(fault=Fault.BOARD_OFFLINE), S.INOPERATIVE, []),
        (1.0, pilot("B"), S.INOPERATIVE, []),
        (2.0, FaultCleared(fault=Fault.BOARD_OFFLINE), S.WAITING_FOR_AUTHENTICATION, PLUG_IN_ACTIONS),
    ]),
    Case("unplug while charging", CHARGING, S.CHARGING, [
        (100.0, pilot("A"), S.IDLE, ["open", *UNPLUG_TX, "PWM off", "unlock"]),  # seq 2.2
    ]),
    Case("stop requested, EV goes to B", CHARGING, S.CHARGING, [
        (100.0, StopRequested(reason=StopReason.REMOTE), S.STOPPING_CHARGING, ["StoppingCharging", "PWM off"]),
        (101.0, pilot("B"), S.FINISHED, ["open", "ChargingFinished", "TransactionFinished(Remote)", "unlock"]),
        (110.0, AUTH, S.FINISHED, []),
        (120.0, pilot("A"), S.IDLE, ["SessionFinished"]),
    ]),
    Case("stop requested, EV stays in C", CHARGING, S.CHARGING, [
        (100.0, StopRequested(), S.STOPPING_CHARGING, ["StoppingCharging", "PWM off"]),
        (106.0, TICK, S.FINISHED, ["open", "ChargingFinished", "TransactionFinished(Local)", "unlock"]),
    ]),
    Case("stop requested while paused by the EV", PAUSED_EV, S.CHARGING_PAUSED_EV, [
        (100.0, StopRequested(), S.FINISHED,
         ["StoppingCharging", "PWM off", "ChargingFinished", "TransactionFinished(Local)", "unlock"]),
    ]),
    Case("deauthorized while charging: no grace", CHARGING, S.CHARGING, [
        (100.0, Deauthorized(), S.FINISHED, ["open", "Deauthorized", "StoppingCharging", "PWM off",
                                             "ChargingFinished", "TransactionFinished(DeAuthorized)", "unlock"]),
    ]),
    Case("D with ventilation charges", WAITING, S.WAITING_FOR_AUTHENTICATION, [
        (1.0, AUTH, S.PREPARE_CHARGING, START_TX),
        (2.0, pilot("D"), S.CHARGING, ["close", "ChargingStarted"]),
    ], config=dataclasses.replace(CFG, has_ventilation=True)),
    Case("D without ventilation never energises", WAITING, S.WAITING_FOR_AUTHENTICATION, [
        (1.0, AUTH, S.PREPARE_CHARGING, START_TX),
        (2.0, pilot("D"), S.PREPARE_CHARGING, []),
        (3.0, pilot("C"), S.CHARGING, ["close", "ChargingStarted"]),
        (4.0, pilot("D"), S.CHARGING_PAUSED_EV, ["open", "ChargingPausedEV"]),
    ]),
    Case("E while charging: latched until unplug", CHARGING, S.CHARGING, [
        (100.0, pilot("E"), S.INOPERATIVE, ["open!", "PWM off", "unlock"]),
        (101.0, pilot("B"), S.INOPERATIVE, ["lock"]),
        (110.0, pilot("A"), S.IDLE, [*UNPLUG_TX, "unlock"]),
    ]),
    Case("F while charging: inoperative while it lasts", CHARGING, S.CHARGING, [
        (100.0, pilot("F"), S.INOPERATIVE, ["open", "PWM off", "unlock"]),
        (101.0, pilot("C"), S.CHARGING, ["PrepareCharging", "PWM 26.7%", "lock", "close", "ChargingResumed"]),
    ]),
    Case("disable while charging, enable again", CHARGING, S.CHARGING, [
        (100.0, DisableRequested(), S.DISABLED,
         ["open", "Disabled", "state F", "unlock", "ChargingFinished", "TransactionFinished(Other)"]),
        (100.1, pilot("F"), S.DISABLED, []),  # our own -12 V, not a reading of the EV
        (110.0, EnableRequested(), S.FINISHED, ["Enabled", "PWM off"]),
        (120.0, pilot("A"), S.IDLE, ["SessionFinished"]),
    ]),
    Case("disabled while idle refuses authorization", [], S.IDLE, [
        (0.0, DisableRequested(), S.DISABLED, ["Disabled", "state F"]),
        (1.0, AUTH, S.DISABLED, []),
        (2.0, EnableRequested(), S.IDLE, ["Enabled", "PWM off"]),
    ]),
    Case("relay feedback against the command is answered with open", CHARGING, S.CHARGING, [
        (3.0, RelayFeedback(closed=True), S.CHARGING, []),
        (50.0, pilot("B"), S.CHARGING_PAUSED_EV, ["open", "ChargingPausedEV"]),
        (50.05, RelayFeedback(closed=True), S.CHARGING_PAUSED_EV, ["open"]),
        (50.1, RelayFeedback(closed=False), S.CHARGING_PAUSED_EV, []),
    ]),
    Case("no lock in B when so configured", [], S.IDLE, [
        (0.0, pilot("B"), S.WAITING_FOR_AUTHENTICATION, ["SessionStarted", "AuthRequired"]),
        (1.0, AUTH, S.PREPARE_CHARGING, START_TX),
        (2.0, pilot("C"), S.CHARGING, ["lock", "close", "ChargingStarted"]),
        (3.0, pilot("B"), S.CHARGING_PAUSED_EV, ["open", "ChargingPausedEV", "unlock"]),
    ], config=dataclasses.replace(CFG, lock_connector_in_state_b=False)),
    Case("strict mode (grace 0): relays open with the PWM stop", CHARGING, S.CHARGING, [
        (100.0, lease(0.0), S.CHARGING_PAUSED_EVSE, ["ChargingPausedEVSE", "PWM off", "open"]),
    ], config=dataclasses.replace(CFG, timing=IecTiming(c1_power_off_s=0.0))),
]  # fmt: skip


def run(machine: ConnectorMachine, steps: Steps) -> list[list[str]]:
    return [[describe(a) for a in machine.handle(event, now)] for now, event in steps]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_transitions(case: Case) -> None:
    machine = ConnectorMachine(case.config)
    run(machine, case.start)
    assert machine.state is case.start_state
    for now, event, state, actions in case.steps:
        got = [describe(a) for a in machine.handle(event, now)]
        assert (now, got, machine.state) == (now, actions, state), event


def test_session_events_carry_session_token_and_meter() -> None:
    m = ConnectorMachine(CFG)
    m.handle(MeterValue(energy_wh=1000.0), 0.0)
    events = [a for now, e in CHARGING for a in m.handle(e, now) if isinstance(a, SessionEvent)]
    m.handle(MeterValue(energy_wh=8400.0), 3000.0)
    events += [a for a in m.handle(pilot("A"), 3001.0) if isinstance(a, SessionEvent)]
    assert {e.session_id for e in events} == {"c1-1"}
    started = next(e for e in events if e.kind is SessionEventKind.TRANSACTION_STARTED)
    finished = next(e for e in events if e.kind is SessionEventKind.TRANSACTION_FINISHED)
    assert (started.token_id, started.meter_wh) == ("tok", 1000.0)
    assert (finished.token_id, finished.meter_wh, finished.reason) == ("tok", 8400.0, StopReason.EV_DISCONNECTED)
    assert m.energy_wh == 7400.0
    run(m, [(4000.0, pilot("B"))])
    assert m.session_id == "c1-2"


def test_custom_session_ids() -> None:
    m = ConnectorMachine(CFG, new_session_id=lambda n: f"evse7/{n:04d}")
    run(m, WAITING)
    assert m.session_id == "evse7/0001"


def test_fault_severity_and_catalogue() -> None:
    assert {f: (f.default_severity, f.clears_on_unplug) for f in Fault} == {
        Fault.RCD: (Severity.HIGH, True),
        Fault.LOCK_FAILURE: (Severity.MEDIUM, True),
        Fault.METER_OFFLINE: (Severity.MEDIUM, False),
        Fault.BOARD_OFFLINE: (Severity.HIGH, False),
        Fault.PILOT_ERROR_E: (Severity.HIGH, True),
        Fault.DIODE_FAILURE: (Severity.HIGH, True),
        Fault.OVER_CURRENT: (Severity.HIGH, True),
    }
    m = ConnectorMachine(CFG)
    run(m, CHARGING)  # a Low override turns RCD's emergency shutdown into an error shutdown
    actions = m.handle(FaultRaised(fault=Fault.RCD, severity=Severity.LOW), 9.0)
    assert [describe(a) for a in actions] == ["open", "PWM off"]
    m.handle(FaultRaised(fault=Fault.RCD), 10.0)  # raising again keeps the worse severity
    assert m.active_faults == {Fault.RCD: Severity.HIGH}


def test_next_deadline() -> None:
    m = ConnectorMachine(CFG)
    assert m.next_deadline() is None
    m.handle(pilot("B"), 10.0)
    assert m.next_deadline() == 70.0  # connection timeout
    m.handle(lease(16.0, until=40.0), 11.0)
    assert m.next_deadline() == 40.0
    run(m, [(12.0, AUTH), (13.0, pilot("C")), (41.0, TICK), (50.0, lease(0.0, until=500.0))])
    assert m.next_deadline() == 56.0  # end of the seq 10.2 grace


# --- several grantors, fencing -----------------------------------------------------------------------


def grant(grantor: str, amps: float, until: float = 1e6, fence: int = 0) -> LimitLease:
    return LimitLease(amps=amps, valid_until=until, grantor=grantor, fence=fence)


def test_the_lowest_grant_of_all_grantors_wins_and_a_lapsed_one_counts_as_failsafe() -> None:
    m = ConnectorMachine(CFG)  # failsafe 16 A, hardware 32 A
    m.handle(grant("energy-manager", 25.0, until=100.0), 0.0)
    m.handle(grant("ocpp", 20.0, until=200.0), 0.0)
    assert m.effective_current_a(50.0) == 20.0
    m.handle(grant("ocpp", 30.0, until=200.0), 60.0)  # a grantor's new lease replaces its old one
    assert m.effective_current_a(60.0) == 25.0
    assert m.granted_a(150.0) == {"energy-manager": 16.0, "ocpp": 30.0}  # the manager's lapsed
    assert m.effective_current_a(150.0) == 16.0
    assert m.lease_until == 100.0


def test_a_released_grantor_no_longer_limits() -> None:
    m = ConnectorMachine(CFG)
    m.handle(grant("ocpp", 8.0), 0.0)
    m.handle(grant("energy-manager", 30.0), 0.0)
    assert m.effective_current_a(1.0) == 8.0
    m.handle(LimitReleased(grantor="ocpp"), 2.0)
    assert m.effective_current_a(3.0) == 30.0
    m.handle(LimitReleased(grantor="energy-manager"), 4.0)
    assert m.effective_current_a(5.0) == CFG.failsafe_current_a  # no lease at all: failsafe
    assert m.lease_until is None


def test_an_override_released_when_it_lapses_leaves_the_others_in_charge() -> None:
    m = ConnectorMachine(CFG)  # failsafe 16 A
    m.handle(grant("energy-manager", 28.0), 0.0)
    m.handle(LimitLease(amps=10.0, valid_until=60.0, grantor="api", released_when_lapsed=True), 1.0)
    assert m.effective_current_a(30.0) == 10.0
    assert m.granted_a(61.0) == {"energy-manager": 28.0} and m.effective_current_a(61.0) == 28.0
    m.handle(grant("api", 20.0, until=100.0), 62.0)  # the same grantor, now an ordinary lease
    assert m.granted_a(101.0) == {"energy-manager": 28.0, "api": 16.0}


def test_a_superseded_grantor_instance_is_refused_and_changes_nothing() -> None:
    m = ConnectorMachine(CFG)
    m.handle(grant("energy-manager", 10.0, fence=3), 0.0)
    before = {k: v for k, v in m.snapshot().items() if k != "now"}
    with pytest.raises(StaleLease, match="fence 2 < 3"):
        m.handle(grant("energy-manager", 32.0, fence=2), 1.0)
    with pytest.raises(StaleLease):
        m.handle(LimitReleased(grantor="energy-manager", fence=2), 1.0)
    assert {k: v for k, v in m.snapshot().items() if k != "now"} == before
    m.handle(grant("ocpp", 20.0, fence=0), 2.0)  # fences are per grantor
    m.handle(grant("energy-manager", 12.0, fence=4), 3.0)  # a newer instance takes over
    assert m.effective_current_a(3.0) == 12.0
    with pytest.raises(StaleLease):
        m.handle(grant("energy-manager", 32.0, fence=3), 4.0)


def test_the_fence_survives_a_release_and_a_restore() -> None:
    m = ConnectorMachine(CFG)
    m.handle(grant("energy-manager", 10.0, fence=5), 0.0)
    m.handle(LimitReleased(grantor="energy-manager", fence=5), 1.0)
    restored = ConnectorMachine(CFG)
    restored.restore(msgpack.unpackb(msgpack.packb(m.snapshot())))
    with pytest.raises(StaleLease):
        restored.handle(grant("energy-manager", 32.0, fence=4), 2.0)


@pytest.mark.parametrize("fence", [-1, 1.5, True])
def test_a_fence_is_a_non_negative_integer(fence: object) -> None:
    with pytest.raises(ValueError, match="fence"):
        LimitLease(amps=6.0, valid_until=1.0, fence=fence)  # type: ignore[arg-type]


def test_a_version_1_snapshot_keeps_its_single_lease() -> None:
    m = ConnectorMachine(CFG)
    run(m, CHARGING)
    snap = m.snapshot()
    old = {**snap, "version": 1, "lease_a": 20.0, "lease_until": 500.0}
    del old["lease_fence"], old["lease_released_when_lapsed"]
    restored = ConnectorMachine(CFG)
    restored.restore(old)
    assert restored.leases == {"": (20.0, 500.0)} and restored.effective_current_a(100.0) == 20.0
    unleased = ConnectorMachine(CFG)
    unleased.restore({**old, "lease_a": None, "lease_until": None})
    assert unleased.leases == {} and unleased.effective_current_a(100.0) == CFG.failsafe_current_a


# --- snapshot, restore, resync ---------------------------------------------------------------------


def test_snapshot_is_msgpack_native_and_round_trips() -> None:
    m = ConnectorMachine(CFG)
    run(m, [*CHARGING, (5.0, MeterValue(energy_wh=12.5)), (6.0, FaultRaised(fault=Fault.RCD))])
    snap = m.snapshot()
    assert snap["version"] == SNAPSHOT_VERSION and snap["faults"] == {"rcd": "high"}
    assert msgpack.unpackb(msgpack.packb(snap)) == snap
    m2 = ConnectorMachine(CFG)
    m2.restore(msgpack.unpackb(msgpack.packb(snap)))
    assert m2.snapshot() == snap
    later: Steps = [(7.0, FaultCleared(fault=Fault.RCD)), (8.0, pilot("A")), (9.0, pilot("B"))]
    assert run(m2, later) == run(m, later)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": 99}, "version"),
        ({"bogus": 1}, "unknown"),
        ({"state": None}, "state"),
        ({"state": "Bogus"}, "state"),
        ({"relays_closed": 1}, "relays_closed"),
        ({"sessions_started": True}, "sessions_started"),
        ({"now": "soon"}, "now"),
        ({"now": float("nan")}, "now"),
        ({"faults": {"rcd": "dreadful"}}, "faults"),
        ({"faults": [1]}, "faults"),
        ({"latched": "rcd"}, "latched"),
        ({"relays_closed": True}, "invariant"),  # closed relays in Idle: refused
    ],
)
def test_restore_rejects_bad_snapshots(change: dict[str, object], match: str) -> None:
    m = ConnectorMachine(CFG)
    run(m, WAITING)
    before = m.snapshot()
    bad = {**ConnectorMachine(CFG).snapshot(), **change}
    with pytest.raises(ValueError, match=match):
        m.restore(bad)
    assert m.snapshot() == before


def test_restore_rejects_missing_keys_and_non_mappings() -> None:
    snap = ConnectorMachine(CFG).snapshot()
    del snap["pilot"]
    with pytest.raises(ValueError, match="missing"):
        ConnectorMachine(CFG).restore(snap)
    with pytest.raises(ValueError, match="mapping"):
        ConnectorMachine(CFG).restore([1, 2])  # type: ignore[arg-type]


def test_resync_reasserts_outputs() -> None:
    m = ConnectorMachine(CFG)
    assert [describe(a) for a in m.resync()] == ["open", "PWM off", "unlock"]
    run(m, CHARGING)
    assert [describe(a) for a in m.resync()] == ["PWM 26.7%", "lock", "close"]
    run(m, [(100.0, lease(0.0))])  # in the grace, relays still closed
    restored = ConnectorMachine(CFG)
    restored.restore(m.snapshot())
    assert [describe(a) for a in restored.resync()] == ["open", "PWM off", "lock"]
    assert not restored.relays_closed


def test_unknown_events_and_bad_times_are_refused() -> None:
    m = ConnectorMachine(CFG)
    with pytest.raises(TypeError, match="not a connector event"):
        m.handle(object(), 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        m.handle(TICK, float("inf"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hardware_max_current_a": 5.0},
        {"hardware_max_current_a": 81.0},
        {"failsafe_current_a": -1.0},
        {"cable_max_current_a": float("nan")},
        {"connection_timeout_s": 0.0},
    ],
)
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ConnectorConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "field_name"),
    [
        (lambda: lease(-1.0), "amps"),
        (lambda: lease(16.0, until=float("nan")), "valid_until"),
        (lambda: CableRatingDetected(max_current_a=float("inf")), "max_current_a"),
        (lambda: MeterValue(energy_wh=float("nan")), "energy_wh"),
    ],
)
def test_events_validate_numbers(event: object, field_name: str) -> None:
    with pytest.raises(ValueError, match=field_name):
        event()  # type: ignore[operator]


def test_pilot_enum_matches_board_wire_letters() -> None:
    assert {p.value for p in Pilot} >= {"A", "B", "C", "D", "E", "F"}
