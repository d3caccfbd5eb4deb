"""Vocabulary of the connector machine (`charger.protocols.evse_session`): states, inputs, outputs, faults.

Inputs and outputs are frozen, slotted, keyword-only dataclasses with msgpack-native or enum fields
only, the shape `charger.messages.message` gives. They are deliberately not registered as wire
tags: the actor decides which of them travel between actors (the session events will), and a name
registered here could collide with a board or OCPP message of the same name.

Names follow EVerest's EvseManager (`Charger.hpp` EvseState, `types/evse_manager.yaml`
SessionEventEnum and StopTransactionReason), so logs and OCPP mapping read the same (everest.md §4).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from charger.protocols.iec61851 import Pilot

from charger.interfaces import Severity

__all__ = [
    "TRANSACTION_STATES",
    "Action",
    "Authorized",
    "CableRatingDetected",
    "CloseRelays",
    "Deauthorized",
    "DisableRequested",
    "EnableRequested",
    "Event",
    "EvseState",
    "Fault",
    "FaultCleared",
    "FaultRaised",
    "LimitLease",
    "LimitReleased",
    "LockConnector",
    "MeterValue",
    "OpenRelays",
    "PauseRequested",
    "PilotChanged",
    "PwmOff",
    "RelayFeedback",
    "ResumeRequested",
    "SessionEvent",
    "SessionEventKind",
    "SetPwm",
    "SetStateF",
    "Severity",
    "StaleLease",
    "StopReason",
    "StopRequested",
    "Tick",
    "UnlockConnector",
    "UnlockRequested",
]


class EvseState(enum.Enum):
    """High-level connector state (EVerest `EvseState`, without its transient T_step_* states)."""

    DISABLED = "Disabled"  #: switched off by command; the pilot shows F ("EVSE not available")
    IDLE = "Idle"  #: no vehicle (a token-first session may be waiting for the plug)
    WAITING_FOR_AUTHENTICATION = "WaitingForAuthentication"  #: vehicle plugged in, no authorization yet
    PREPARE_CHARGING = "PrepareCharging"  #: transaction running, PWM offered, EV not yet in C
    CHARGING = "Charging"  #: relays closed, energy flows
    CHARGING_PAUSED_EV = "ChargingPausedEV"  #: the EV went back to B (or D without ventilation)
    CHARGING_PAUSED_EVSE = "ChargingPausedEVSE"  #: no power to offer (limit < 6 A) or user pause
    STOPPING_CHARGING = "StoppingCharging"  #: transaction ending, waiting for the relays to open
    FINISHED = "Finished"  #: session over (transaction ended or plug-in timeout); waiting for unplug
    INOPERATIVE = "Inoperative"  #: a blocking fault is active, or the pilot reads E, F or Disabled


TRANSACTION_STATES = frozenset(
    {
        EvseState.PREPARE_CHARGING,
        EvseState.CHARGING,
        EvseState.CHARGING_PAUSED_EV,
        EvseState.CHARGING_PAUSED_EVSE,
        EvseState.STOPPING_CHARGING,
    }
)
"""States in which a transaction runs (a connector with one of these is using power or may again)."""


class SessionEventKind(enum.Enum):
    """EVerest `SessionEventEnum` values this machine emits (plus ChargingResumed, as Charger.cpp does)."""

    SESSION_STARTED = "SessionStarted"
    AUTH_REQUIRED = "AuthRequired"
    AUTHORIZED = "Authorized"
    DEAUTHORIZED = "Deauthorized"
    PLUGIN_TIMEOUT = "PluginTimeout"
    TRANSACTION_STARTED = "TransactionStarted"
    PREPARE_CHARGING = "PrepareCharging"
    CHARGING_STARTED = "ChargingStarted"
    CHARGING_RESUMED = "ChargingResumed"
    CHARGING_PAUSED_EV = "ChargingPausedEV"
    CHARGING_PAUSED_EVSE = "ChargingPausedEVSE"
    STOPPING_CHARGING = "StoppingCharging"
    CHARGING_FINISHED = "ChargingFinished"
    TRANSACTION_FINISHED = "TransactionFinished"
    SESSION_FINISHED = "SessionFinished"
    ENABLED = "Enabled"
    DISABLED = "Disabled"


class StopReason(enum.Enum):
    """Why a transaction ended (EVerest `StopTransactionReason`, = OCPP 1.6 `Reason`)."""

    EMERGENCY_STOP = "EmergencyStop"
    EV_DISCONNECTED = "EVDisconnected"
    HARD_RESET = "HardReset"
    LOCAL = "Local"
    OTHER = "Other"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    REMOTE = "Remote"
    SOFT_RESET = "SoftReset"
    UNLOCK_COMMAND = "UnlockCommand"
    DE_AUTHORIZED = "DeAuthorized"
    ENERGY_LIMIT_REACHED = "EnergyLimitReached"
    GROUND_FAULT = "GroundFault"
    LOCAL_OUT_OF_CREDIT = "LocalOutOfCredit"
    MASTER_PASS = "MasterPass"
    OVERCURRENT_FAULT = "OvercurrentFault"
    POWER_QUALITY = "PowerQuality"
    SOC_LIMIT_REACHED = "SOCLimitReached"
    STOPPED_BY_EV = "StoppedByEV"
    TIME_LIMIT_REACHED = "TimeLimitReached"
    TIMEOUT = "Timeout"
    REQ_ENERGY_TRANSFER_REJECTED = "ReqEnergyTransferRejected"


class Fault(enum.Enum):
    """Faults that block charging (EVerest: any active, non-ignored error makes the EVSE Inoperative).

    Each has a default severity (High: emergency shutdown; Medium/Low: error shutdown) and says
    whether it stays latched until the vehicle is unplugged (EVerest `clear_errors_on_unplug`).
    """

    RCD = "rcd"  #: residual current (ac_rcd DC/AC); High, latched until unplug
    LOCK_FAILURE = "lock_failure"  #: connector lock failed to lock or unlock; Medium, latched until unplug
    METER_OFFLINE = "meter_offline"  #: billing meter unreachable (powermeter CommunicationFault); Medium
    BOARD_OFFLINE = "board_offline"  #: no status from the control board; High
    PILOT_ERROR_E = "pilot_error_e"  #: pilot at 0 V (state E, MREC14); High, latched until unplug
    DIODE_FAILURE = "diode_failure"  #: EV pilot diode missing (Annex A diode check); High, latched until unplug
    OVER_CURRENT = "over_current"  #: EV draws over its limit (MREC4, 10 % for 7 s); High, latched until unplug

    @property
    def default_severity(self) -> Severity:
        return _CATALOGUE[self][0]

    @property
    def clears_on_unplug(self) -> bool:
        """True: clearing by its source is not enough, the vehicle must also be unplugged (pilot A)."""
        return _CATALOGUE[self][1]


_CATALOGUE: dict[Fault, tuple[Severity, bool]] = {
    Fault.RCD: (Severity.HIGH, True),
    Fault.LOCK_FAILURE: (Severity.MEDIUM, True),
    Fault.METER_OFFLINE: (Severity.MEDIUM, False),
    Fault.BOARD_OFFLINE: (Severity.HIGH, False),
    Fault.PILOT_ERROR_E: (Severity.HIGH, True),
    Fault.DIODE_FAILURE: (Severity.HIGH, True),
    Fault.OVER_CURRENT: (Severity.HIGH, True),
}


def _check_finite(name: str, value: float, *, minimum: float | None = None) -> None:
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")


def _check_fence(fence: int) -> None:
    if type(fence) is not int or fence < 0:
        raise ValueError(f"fence must be a non-negative integer, got {fence!r}")


# --- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PilotChanged:
    """The board measured a new control-pilot state."""

    pilot: Pilot


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorized:
    """An authorization (token) was accepted for this connector, before or after plug-in."""

    token_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Deauthorized:
    """The authorization was withdrawn (EVerest `withdraw_authorization`); ends a running transaction."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitLease:
    """`grantor` grants `amps` per phase until `valid_until` (same clock as `now`). 0 pauses.

    A fresh lease replaces the same grantor's previous one; the connector obeys the lowest lease of
    all its grantors (an energy manager and an OCPP charging profile may both limit it). A grantor
    whose lease lapsed counts with the configured failsafe current, never unlimited (DESIGN §7), until
    it grants again or releases; with `released_when_lapsed` (a temporary override by hand) the lapse
    is a release instead. `fence` is the grantor's incarnation: a lease with a lower fence than
    one already taken from the same grantor comes from a superseded instance and is refused
    (`StaleLease`), so two instances never drive one connector (DESIGN §8)."""

    amps: float
    valid_until: float
    grantor: str = ""
    fence: int = 0
    released_when_lapsed: bool = False

    def __post_init__(self) -> None:
        _check_finite("amps", self.amps, minimum=0.0)
        _check_finite("valid_until", self.valid_until)
        _check_fence(self.fence)


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitReleased:
    """`grantor` no longer limits this connector (e.g. its last OCPP charging profile ended)."""

    grantor: str = ""
    fence: int = 0

    def __post_init__(self) -> None:
        _check_fence(self.fence)


class StaleLease(ValueError):
    """A lease or release from a superseded incarnation of its grantor (a lower fence)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CableRatingDetected:
    """Proximity pilot read the cable's current rating (socket outlets; IEC 61851-1 Annex B)."""

    max_current_a: float

    def __post_init__(self) -> None:
        _check_finite("max_current_a", self.max_current_a, minimum=0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterValue:
    """The billing meter's register (imported energy, Wh)."""

    energy_wh: float

    def __post_init__(self) -> None:
        _check_finite("energy_wh", self.energy_wh)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRaised:
    """A fault became active; None severity means the catalogue's default."""

    fault: Fault
    severity: Severity | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultCleared:
    """The fault's source cleared it (it may stay latched until unplug, see `Fault.clears_on_unplug`)."""

    fault: Fault


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseRequested:
    """User or backend pause: stop offering power but keep the transaction (ChargingPausedEVSE)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeRequested:
    """Undo `PauseRequested`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRequested:
    """End the running transaction (local button, remote stop, ...)."""

    reason: StopReason = StopReason.LOCAL


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlockRequested:
    """Release the plug now (OCPP UnlockConnector, someone at the station). Without a transaction the
    session ends as a connection timeout would end it: Finished until unplug, lock open. With a
    transaction it does nothing: the transaction must stop first (its end releases the lock)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayFeedback:
    """The contactor's mirror contact as the board reports it (EVerest BSP PowerOn/PowerOff)."""

    closed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EnableRequested:
    """Make the connector available again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DisableRequested:
    """Take the connector out of service now: ends a running transaction with `reason`."""

    reason: StopReason = StopReason.OTHER


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Nothing happened but time passed: lets timeouts and lease expiry take effect."""


Event = (
    PilotChanged
    | Authorized
    | Deauthorized
    | LimitLease
    | LimitReleased
    | CableRatingDetected
    | MeterValue
    | FaultRaised
    | FaultCleared
    | PauseRequested
    | ResumeRequested
    | StopRequested
    | UnlockRequested
    | RelayFeedback
    | EnableRequested
    | DisableRequested
    | Tick
)


# --- outputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPwm:
    """Run the pilot oscillator (state x2) at this duty cycle in percent (Table A.8)."""

    duty_percent: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PwmOff:
    """Stop the oscillator: steady +12 V (state x1, "EVSE not ready")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetStateF:
    """Drive the pilot to -12 V (state F, "EVSE not available"): used while Disabled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseRelays:
    """Close the contactor(s). Only ever emitted when `relays_may_close` holds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenRelays:
    """Open the contactor(s) now."""

    emergency: bool = False
    """True when a High-severity fault caused it (EVerest EmergencyShutdown): do not wait for the
    current to fall. False for error shutdown, EV request and the end of the 6 s grace."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LockConnector:
    """Lock the connector (socket outlets with a locking actuator)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlockConnector:
    """Unlock the connector."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEvent:
    """A session event to publish (EVerest `session_event`)."""

    kind: SessionEventKind
    session_id: str | None
    """None only for Enabled/Disabled outside a session."""
    token_id: str | None = None
    reason: StopReason | None = None
    """Set on TransactionFinished."""
    meter_wh: float | None = None
    """The meter register when the event happened (None before the first reading); on
    TransactionStarted the start value, on TransactionFinished the stop value."""


Action = SetPwm | PwmOff | SetStateF | CloseRelays | OpenRelays | LockConnector | UnlockConnector | SessionEvent
