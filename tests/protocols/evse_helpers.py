"""Shared vocabulary for the connector-machine tests: short event constructors and one-line action names."""

from __future__ import annotations

from charger.protocols.evse_events import (
    Action,
    Authorized,
    CloseRelays,
    LimitLease,
    LockConnector,
    OpenRelays,
    PilotChanged,
    PwmOff,
    SessionEvent,
    SetPwm,
    SetStateF,
    Tick,
    UnlockConnector,
)
from charger.protocols.evse_session import ConnectorConfig
from charger.protocols.iec61851 import Pilot

CFG = ConnectorConfig(name="c1", hardware_max_current_a=32.0, failsafe_current_a=16.0, connection_timeout_s=60.0)
AUTH = Authorized(token_id="tok")
TICK = Tick()


def pilot(letter: str) -> PilotChanged:
    return PilotChanged(pilot=Pilot(letter))


def lease(amps: float, until: float = 1e6) -> LimitLease:
    return LimitLease(amps=amps, valid_until=until)


def describe(action: Action) -> str:
    """One short, readable name per action, so expected action lists fit in a table row."""
    match action:
        case SetPwm(duty_percent=duty):
            return f"PWM {duty:.1f}%"
        case PwmOff():
            return "PWM off"
        case SetStateF():
            return "state F"
        case CloseRelays():
            return "close"
        case OpenRelays(emergency=True):
            return "open!"
        case OpenRelays():
            return "open"
        case LockConnector():
            return "lock"
        case UnlockConnector():
            return "unlock"
        case SessionEvent(kind=kind, reason=None):
            return str(kind.value)
        case SessionEvent(kind=kind, reason=reason) if reason is not None:
            return f"{kind.value}({reason.value})"
    raise AssertionError(f"unknown action {action!r}")
