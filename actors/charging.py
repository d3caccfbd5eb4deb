"""The charging core's interfaces: what board, meter, token reader, auth, EVSE manager and the SIL rig
say to each other. Messages are named by what they mean; every actor of the charging core imports
its vocabulary from here, so a board from one vendor and an EVSE manager from another still agree.

Times on the wire are Unix seconds (``time.time()``), because leases and sessions cross restarts
and hosts; durations are seconds.
"""

from __future__ import annotations

from dataclasses import field

from charger.actors.energy_messages import (  # re-exported: the energy manager's vocabulary
    ENERGY_MANAGER,
    EnergyPlan,
    EvseAllocation,
    GetEnergyPlan,
    NodeCapView,
    NodeLoad,
    SetEnergyForecast,
    SetNodeCap,
    SetSessionNeed,
)

from charger.interfaces import Command, ErrorDef, Interface, Severity
from charger.lifecycle import Ack
from charger.messages import message

__all__ = [
    "AUTH",
    "BOARD",
    "CARD_READER_SIM",
    "ENERGY_MANAGER",
    "EVSE_MANAGER",
    "POWERMETER",
    "SIL_RIG",
    "TOKEN_READER",
    "AuthorizeSession",
    "BoardState",
    "CarCommand",
    "ChargingSessionEvent",
    "ConnectorReservation",
    "ConnectorStatus",
    "DescribeRig",
    "EnergyPlan",
    "EvseAllocation",
    "GetConnectorStatus",
    "GetEnergyPlan",
    "GetRigState",
    "GetSessionHistory",
    "GrantLimitLease",
    "InjectSimFault",
    "NodeCapView",
    "NodeLoad",
    "PauseCharging",
    "PlugCar",
    "PowerMeterReading",
    "PresentCard",
    "PresentToken",
    "ReadMeterNow",
    "ReleaseLimitLease",
    "ReserveConnector",
    "ResumeCharging",
    "RigLayout",
    "RigState",
    "SessionCompleted",
    "SessionHistory",
    "SetAvailability",
    "SetBoardOutputs",
    "SetEnergyForecast",
    "SetNodeCap",
    "SetSessionNeed",
    "StopCharging",
    "TokenRead",
    "TokenVerdict",
    "UnlockConnectorNow",
    "UnplugCar",
    "WithdrawAuthorization",
]


# --- board: pilot, relays, lock, RCD (EVerest evse_board_support) ------------------------------


@message
class BoardState:
    """What the control board measures, published on every change and at least once a second."""

    online: bool
    """False while the link is down or the board sends nothing: every other field is then stale."""
    pilot: str
    """Control-pilot state letter A..F as the board measures it (``charger.protocols.iec61851.Pilot``)."""
    pwm_permille: int | None
    """The duty cycle the board generates; None while PWM is off."""
    relays_closed: bool
    """The contactor's feedback contact, not the command."""
    locked: bool
    rcd_milliamps: int
    rcd_tripped: bool
    diode_fault: bool
    relay_welded: bool
    watchdog_tripped: bool
    board_restarts: int
    """How often the board was seen to power up (its watchdog state at start) since the actor started."""


@message
class SetBoardOutputs:
    """The outputs the EVSE manager wants, all at once (idempotent: resent freely)."""

    pwm_permille: int | None
    """Duty in per mille (rounded down from Table A.8), 0 for state F, None for PWM off (x1)."""
    relays_closed: bool
    locked: bool


BOARD = Interface(
    name="board",
    description="A charger control board: pilot PWM and state, relays with feedback, lock, RCD.",
    commands=(Command(SetBoardOutputs, Ack),),
    vars=(BoardState,),
    errors=(ErrorDef("board_offline", Severity.HIGH, "no status from the board"),),
)


# --- power meter ------------------------------------------------------------------------------------


@message
class PowerMeterReading:
    """One reading of the billing meter (EVerest powermeter var)."""

    online: bool
    """False: the last read failed (``fault`` says why) and the values are the last good ones."""
    energy_wh: float | None
    """Imported active energy register."""
    power_w: float | None
    currents_a: tuple[float | None, float | None, float | None]
    voltages_v: tuple[float | None, float | None, float | None]
    at: float
    """When the values were read (Unix seconds)."""
    fault: str | None = None


@message
class ReadMeterNow:
    """Read the meter now (not the last poll); answered with a `PowerMeterReading`."""


POWERMETER = Interface(
    name="powermeter",
    description="A billing power meter polled at a fixed rate.",
    commands=(Command(ReadMeterNow, PowerMeterReading),),
    vars=(PowerMeterReading,),
    errors=(ErrorDef("meter_offline", Severity.MEDIUM, "the meter did not answer or answered nonsense"),),
)


# --- tokens and authorization -----------------------------------------------------------------------


@message
class TokenRead:
    """A card was presented to a reader."""

    uid: str
    reader: str


TOKEN_READER = Interface(name="token_reader", description="An RFID card reader.", vars=(TokenRead,))


@message
class PresentToken:
    """Ask the auth actor to validate `token_id` and hand it to a connector (or to the named one)."""

    token_id: str
    connector: str | None = None
    source: str = "api"


@message
class TokenVerdict:
    """What happened to a presented token."""

    status: str
    """"Accepted", "Invalid" (not on the allow list, or the CSMS says so), "NoConnector" (nothing can
    take it now), or another OCPP AuthorizationStatus from the backend link: "Blocked", "Expired",
    "ConcurrentTx"."""
    connector: str | None
    """The EVSE manager the token went to, or waits for (token first)."""
    detail: str = ""


AUTH = Interface(
    name="auth",
    description="Validates tokens and assigns them to connectors.",
    commands=(Command(PresentToken, TokenVerdict),),
)


# --- EVSE manager (one connector) -------------------------------------------------------------------


@message
class AuthorizeSession:
    """Authorize the waiting (or the next) session on this connector with `token_id`. Rejected when the
    connector cannot take an authorization now (disabled, inoperative, already authorized, or reserved
    for idTags that neither `token_id` nor its `parent_id_tag` match)."""

    token_id: str
    parent_id_tag: str | None = None
    """The token's group (OCPP parentIdTag), when its authorization said: it may use a group's reservation."""


@message
class WithdrawAuthorization:
    """Withdraw the authorization; a running transaction stops with DeAuthorized."""


@message
class PauseCharging:
    """Stop offering power but keep the transaction (ChargingPausedEVSE)."""


@message
class ResumeCharging:
    """Offer power again after `PauseCharging`."""


@message
class StopCharging:
    """End the running transaction; `reason` is an OCPP stop reason (``StopReason`` value)."""

    reason: str = "Local"


@message
class UnlockConnectorNow:
    """Release the plug now (OCPP UnlockConnector, `ctl unlock`). Without a transaction a waiting session
    ends (Finished until unplug) and the lock opens; with a transaction it is Rejected: stop it first,
    its end releases the lock."""


@message
class SetAvailability:
    """Take the connector out of service (`available` false) or back in (OCPP ChangeAvailability).

    Out of service at once: a running transaction stops with `reason` (an OCPP stop reason) and the
    pilot shows F. Survives a restart (it is part of the journaled state). OCPP's "Scheduled" (wait
    for the transaction to end) is the caller's to do."""

    available: bool
    reason: str = "Other"


@message
class GrantLimitLease:
    """A current or power limit until `valid_until` (Unix seconds). After that the connector falls back to
    its failsafe current, never to unlimited. Exactly one of `amps` (per phase) and `watts` is set.

    Each `grantor` holds its own lease and the connector obeys the lowest. `fence` is the grantor's
    incarnation (e.g. a counter kept across its restarts): a lease with a lower fence than one already
    taken from the same grantor is Rejected, so a superseded instance can never drive the connector."""

    valid_until: float
    amps: float | None = None
    watts: float | None = None
    grantor: str = ""
    fence: int = 0
    released_when_lapsed: bool = False
    """A temporary override: once it lapses the grantor no longer limits, instead of failsafe."""


@message
class ReleaseLimitLease:
    """`grantor` stops limiting the connector (its lease is dropped, not lapsed to failsafe)."""

    grantor: str = ""
    fence: int = 0


@message
class ConnectorReservation:
    """A reservation the connector honours until `expires_at` (Unix s): only `id_tag`, or a token whose
    idTag or parent matches `id_tag` or `parent_id_tag`, may be authorized there."""

    reservation_id: int
    id_tag: str
    expires_at: float
    parent_id_tag: str | None = None


@message
class ReserveConnector:
    """Honour exactly these reservations from now on (an empty list: none). Replaces what was held
    before and survives a restart; a reservation past its `expires_at` is ignored."""

    reservations: tuple[ConnectorReservation, ...] = ()


@message
class GetConnectorStatus:
    """Answered with a `ConnectorStatus`."""


@message
class ConnectorStatus:
    """One connector at a glance: what the status view and the control API show."""

    connector: str
    """The EVSE manager's instance name."""
    connector_id: int
    """1-based number, as OCPP counts connectors."""
    state: str
    """High-level state (``EvseState`` value)."""
    pilot: str
    pwm_duty_percent: float | None
    current_limit_a: float
    """The current on offer now: min(lease or failsafe, hardware, cable)."""
    lease_until: float | None
    """When the first lease lapses."""
    power_w: float | None
    energy_wh: float | None
    """Energy of the running (or last) session, from the meter register."""
    session_id: str | None
    token_id: str | None
    relays_closed: bool
    faults: list[str]
    last_event: str | None
    sessions_completed: int
    energy_total_wh: float
    """Energy of every completed session since the journal began."""
    leases: dict[str, float] = field(default_factory=dict)
    """Per grantor, the current it grants now (its failsafe current once its lease lapsed)."""
    meter_start_wh: float | None = None
    """The running transaction's start register: what its bill will count from."""
    transaction_started_at: float | None = None
    reservations: tuple[ConnectorReservation, ...] = ()
    """The reservations the connector honours now (`ReserveConnector`)."""


@message
class ChargingSessionEvent:
    """A session event (EVerest ``session_event``), published by the EVSE manager."""

    connector: str
    kind: str
    """``SessionEventKind`` value: SessionStarted, Authorized, TransactionStarted, ChargingStarted, ..."""
    session_id: str | None
    token_id: str | None
    reason: str | None
    meter_wh: float | None
    at: float


@message
class SessionCompleted:
    """A finished transaction, as billed: energy is exactly ``meter_stop_wh - meter_start_wh``."""

    connector: str
    session_id: str
    token_id: str | None
    meter_start_wh: float | None
    meter_stop_wh: float | None
    energy_wh: float | None
    stop_reason: str
    started_at: float
    stopped_at: float


@message
class GetSessionHistory:
    """Answered with `SessionHistory`: the completed sessions the journal holds, oldest first."""

    limit: int = 100


@message
class SessionHistory:
    sessions: list[SessionCompleted]


EVSE_MANAGER = Interface(
    name="evse_manager",
    description="One connector: IEC 61851 charging logic, sessions, limits as leases.",
    commands=(
        Command(AuthorizeSession, Ack),
        Command(WithdrawAuthorization, Ack),
        Command(PauseCharging, Ack),
        Command(ResumeCharging, Ack),
        Command(StopCharging, Ack),
        Command(UnlockConnectorNow, Ack),
        Command(SetAvailability, Ack),
        Command(GrantLimitLease, Ack),
        Command(ReleaseLimitLease, Ack),
        Command(ReserveConnector, Ack),
        Command(GetConnectorStatus, ConnectorStatus),
        Command(GetSessionHistory, SessionHistory),
    ),
    vars=(ConnectorStatus, ChargingSessionEvent, SessionCompleted),
)


# --- software-in-the-loop rig: board simulator, car and meter server of one connector ------------


# A rig may simulate several connectors; `connector` (from 1) says which of the rig's.


@message
class PlugCar:
    """Plug the simulated car in and run `script` (car-simulator language); empty: just pilot B."""

    script: str = ""
    connector: int = 1


@message
class UnplugCar:
    """Pull the plug now (pilot A), whatever the script is doing."""

    connector: int = 1


@message
class CarCommand:
    """Replace the commands the car still has to run with `script` (EVerest modify_charging_session)."""

    script: str
    connector: int = 1


@message
class InjectSimFault:
    """Make the simulated hardware misbehave, or stop misbehaving.

    `fault` is one of: "rcd" (30 mA DC residual current through the car), "meter_offline" (the meter
    stops answering), "lock_failure" (the lock does not follow its command), "pilot_error_e" (pilot
    shorted to PE), "diode_failure" (the car's pilot diode fails). The car's faults (rcd, pilot_error_e,
    diode_failure) also end when the car is unplugged."""

    fault: str
    active: bool = True
    connector: int = 1


@message
class PresentCard:
    """Hold a card with this UID to the simulated reader."""

    uid: str


@message
class GetRigState:
    """Answered with a `RigState`."""

    connector: int = 1


@message
class DescribeRig:
    """Answered with a `RigLayout`."""


@message
class RigLayout:
    """How many connectors a rig simulates."""

    connectors: int


@message
class RigState:
    """The simulated world of one connector."""

    rig: str
    car_pilot: str
    draw_current_a: float
    phases: int
    soc_percent: float
    script_pending: list[str]
    meter_energy_wh: float
    """The meter server's register (what a Modbus read answers)."""
    faults: list[str]
    connector: int = 1


SIL_RIG = Interface(
    name="sil_rig",
    description="Simulated hardware of connectors: boards behind ptys, cars, Modbus meter servers.",
    commands=(
        Command(PlugCar, Ack),
        Command(UnplugCar, Ack),
        Command(CarCommand, Ack),
        Command(InjectSimFault, Ack),
        Command(GetRigState, RigState),
        Command(DescribeRig, RigLayout),
    ),
    vars=(RigState,),
)

CARD_READER_SIM = Interface(
    name="card_reader_sim", description="A simulated RFID reader.", commands=(Command(PresentCard, Ack),)
)
