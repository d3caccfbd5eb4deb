"""OCPP 1.6 connector status: the ChargePointStatus and error code of a connector, and when to report a
change so that MinimumStatusDuration is honoured (pure).

`connector_view` maps what the EVSE manager publishes (its state, faults and token, as in
`ConnectorStatus`) onto OCPP 1.6 §7.7 ChargePointStatus:

| EVSE manager state | ChargePointStatus |
| --- | --- |
| Idle | Available; Preparing when a token waits for the plug; Reserved while a reservation holds it |
| WaitingForAuthentication | Preparing |
| PrepareCharging, ChargingPausedEV | SuspendedEV (transaction running, the EV takes no energy) |
| Charging | Charging |
| ChargingPausedEVSE, StoppingCharging | SuspendedEVSE (the EVSE offers no energy) |
| Finished | Finishing |
| Inoperative | Faulted, with the error code of its most serious fault |
| Disabled, or taken out of service by ChangeAvailability | Unavailable |

`StatusReporter` remembers what the CSMS was last told per connector and what is true now. A change is
due once it has lasted MinimumStatusDuration seconds (OCPP 1.6 §9.1.19: "the minimum duration that a
Charge Point or Connector status is stable before a StatusNotification.req is sent"); a change that
reverts before then is never reported. After a reconnect everything the CSMS may have missed is due again.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ChargePointErrorCode",
    "ChargePointStatus",
    "ConnectorView",
    "StatusReport",
    "StatusReporter",
    "connector_view",
]


class ChargePointStatus(enum.StrEnum):
    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class ChargePointErrorCode(enum.StrEnum):
    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    LOCAL_LIST_CONFLICT = "LocalListConflict"
    NO_ERROR = "NoError"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    WEAK_SIGNAL = "WeakSignal"


# Most serious first: a connector with several faults reports the first one that applies.
_FAULT_CODES = (
    ("rcd", ChargePointErrorCode.GROUND_FAILURE),
    ("over_current", ChargePointErrorCode.OVER_CURRENT_FAILURE),
    ("relay_welded", ChargePointErrorCode.POWER_SWITCH_FAILURE),
    ("board_offline", ChargePointErrorCode.INTERNAL_ERROR),
    ("pilot_error_e", ChargePointErrorCode.EV_COMMUNICATION_ERROR),
    ("diode_failure", ChargePointErrorCode.EV_COMMUNICATION_ERROR),
    ("lock_failure", ChargePointErrorCode.CONNECTOR_LOCK_FAILURE),
    ("meter_offline", ChargePointErrorCode.POWER_METER_FAILURE),
)

_BY_STATE = {
    "WaitingForAuthentication": ChargePointStatus.PREPARING,
    "PrepareCharging": ChargePointStatus.SUSPENDED_EV,
    "Charging": ChargePointStatus.CHARGING,
    "ChargingPausedEV": ChargePointStatus.SUSPENDED_EV,
    "ChargingPausedEVSE": ChargePointStatus.SUSPENDED_EVSE,
    "StoppingCharging": ChargePointStatus.SUSPENDED_EVSE,
    "Finished": ChargePointStatus.FINISHING,
    "Disabled": ChargePointStatus.UNAVAILABLE,
}
_INFO_MAX = 50  # StatusNotification.req info is CiString50Type


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """What a StatusNotification says about a connector (without its time)."""

    status: ChargePointStatus
    error_code: ChargePointErrorCode = ChargePointErrorCode.NO_ERROR
    info: str | None = None


def connector_view(
    state: str, faults: Iterable[str], token_id: str | None, *, operative: bool = True, reserved: bool = False
) -> ConnectorView:
    """The OCPP view of an EVSE manager's state. `operative` is False once ChangeAvailability took the
    connector out of service: it then shows Unavailable unless a fault says more. `reserved`: the
    connector honours a reservation (an idle one then shows Reserved)."""
    fault_list = list(faults)
    if state == "Inoperative" or (fault_list and state != "Disabled"):
        code = next((c for name, c in _FAULT_CODES if name in fault_list), ChargePointErrorCode.OTHER_ERROR)
        info = ",".join(sorted(fault_list))[:_INFO_MAX] or None
        if state == "Inoperative":
            return ConnectorView(ChargePointStatus.FAULTED, code, info)
        # A fault that does not (yet) block: report it with the status the connector still has.
        return ConnectorView(_status(state, token_id, operative, reserved), code, info)
    return ConnectorView(_status(state, token_id, operative, reserved))


def _status(state: str, token_id: str | None, operative: bool, reserved: bool) -> ChargePointStatus:
    if state == "Idle":
        if not operative:
            return ChargePointStatus.UNAVAILABLE
        if token_id:
            return ChargePointStatus.PREPARING
        return ChargePointStatus.RESERVED if reserved else ChargePointStatus.AVAILABLE
    return _BY_STATE.get(state, ChargePointStatus.UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One StatusNotification.req to send."""

    connector_id: int
    view: ConnectorView
    since: float
    """When the connector entered this status (Unix seconds): the notification's timestamp."""

    def to_wire(self, timestamp: str) -> dict[str, object]:
        payload: dict[str, object] = {
            "connectorId": self.connector_id,
            "errorCode": self.view.error_code.value,
            "status": self.view.status.value,
            "timestamp": timestamp,
        }
        if self.view.info:
            payload["info"] = self.view.info
        return payload


class StatusReporter:
    """Per connector: the view the CSMS was last told, and the current view with the time it began."""

    def __init__(self) -> None:
        self._told: dict[int, ConnectorView] = {}
        self._now: dict[int, tuple[ConnectorView, float]] = {}

    def observe(self, connector_id: int, view: ConnectorView, at: float) -> None:
        """The connector shows `view` at `at`; only a change of view restarts its stability clock."""
        current = self._now.get(connector_id)
        if current is None or current[0] != view:
            self._now[connector_id] = (view, at)

    def current(self, connector_id: int) -> StatusReport | None:
        held = self._now.get(connector_id)
        return None if held is None else StatusReport(connector_id, held[0], held[1])

    def due(self, now: float, minimum_duration: float) -> list[StatusReport]:
        """Changes that have lasted long enough and that the CSMS has not been told, by connector id."""
        return [
            StatusReport(c, view, since)
            for c, (view, since) in sorted(self._now.items())
            if self._told.get(c) != view and now - since >= minimum_duration
        ]

    def next_due(self, minimum_duration: float) -> float | None:
        """When the earliest change not yet due becomes due (None: nothing waits)."""
        waiting = [since + minimum_duration for c, (view, since) in self._now.items() if self._told.get(c) != view]
        return min(waiting, default=None)

    def told(self, report: StatusReport) -> None:
        """The CSMS accepted this report."""
        self._told[report.connector_id] = report.view

    def forget_told(self) -> None:
        """The CSMS may have missed reports (a new connection): everything current is due again."""
        self._told.clear()
