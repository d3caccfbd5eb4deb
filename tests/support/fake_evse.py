"""FakeEvse: a real actor that stands in for an EVSE manager in auth tests.

It answers the EVSE manager's commands with a tiny state machine (Idle -> WaitingForAuthentication ->
Charging -> Finished -> Idle), publishes `ConnectorStatus` and `ChargingSessionEvent` like the real one,
and logs every AuthorizeSession and StopCharging it receives. Tests drive the plug with `FakePlugIn`
and `FakeUnplug`, make it refuse authorizations with `FakeRefuseAuth`, and read `GetFakeEvseLog`.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

from charger.actors.charging import (
    EVSE_MANAGER,
    AuthorizeSession,
    ChargingSessionEvent,
    ConnectorReservation,
    ConnectorStatus,
    GetConnectorStatus,
    GetSessionHistory,
    GrantLimitLease,
    PauseCharging,
    ReserveConnector,
    ResumeCharging,
    SessionHistory,
    StopCharging,
    UnlockConnectorNow,
    WithdrawAuthorization,
)

from charger.behaviour import Behaviour, handles
from charger.errors import Rejected
from charger.messages import message


@message
class FakePlugIn:
    """Plug a car in: Idle -> WaitingForAuthentication (SessionStarted, AuthRequired)."""


@message
class FakeUnplug:
    """Pull the plug: back to Idle (SessionFinished)."""


@message
class FakeRefuseAuth:
    """Answer every AuthorizeSession with Rejected (True) or accept again (False)."""

    refuse: bool = True


@message
class GetFakeEvseLog:
    """Answered with `FakeEvseLog`."""


@message
class FakeEvseLog:
    entries: list[list[str]]
    """["authorize", token] or ["stop", reason], in the order received."""
    state: str


_sessions = itertools.count(1)


class FakeEvse(Behaviour):
    provides = {"evse": EVSE_MANAGER}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"connector_id": {"type": "integer", "minimum": 1, "default": 1}},
    }

    def init(self) -> None:
        self.state = "Idle"
        self.token: str | None = None
        self.session: str | None = None
        self.refuse = False
        self.entries: list[list[str]] = []
        self.last_event: str | None = None
        self.meter_start_wh: float | None = None
        self.transaction_started_at: float | None = None
        self.reservations: tuple[ConnectorReservation, ...] = ()

    def _event(self, kind: str, **extra: Any) -> None:
        self.last_event = kind
        self.publish(
            ChargingSessionEvent(
                connector=self.name,
                kind=kind,
                session_id=self.session,
                token_id=self.token,
                reason=extra.get("reason"),
                meter_wh=None,
                at=time.time(),
            )
        )

    def _status(self) -> ConnectorStatus:
        return ConnectorStatus(
            connector=self.name,
            connector_id=self.config["connector_id"],
            state=self.state,
            pilot="B" if self.state != "Idle" else "A",
            pwm_duty_percent=None,
            current_limit_a=16.0,
            lease_until=None,
            power_w=None,
            energy_wh=None,
            session_id=self.session,
            token_id=self.token,
            relays_closed=self.state == "Charging",
            faults=[],
            last_event=self.last_event,
            sessions_completed=0,
            energy_total_wh=0.0,
            meter_start_wh=self.meter_start_wh,
            transaction_started_at=self.transaction_started_at,
            reservations=self.reservations,
        )

    @handles(FakePlugIn)
    def on_plug(self, msg: FakePlugIn) -> None:
        if self.state != "Idle":
            raise Rejected(f"{self.name} is {self.state}")
        self.state, self.session = "WaitingForAuthentication", f"{self.name}-{next(_sessions)}"
        self._event("SessionStarted")
        self._event("AuthRequired")
        self.publish(self._status())

    @handles(FakeUnplug)
    def on_unplug(self, msg: FakeUnplug) -> None:
        self.state, self.token = "Idle", None
        self._event("SessionFinished")
        self.session = None
        self.publish(self._status())

    @handles(FakeRefuseAuth)
    def on_refuse(self, msg: FakeRefuseAuth) -> None:
        self.refuse = msg.refuse

    @handles(GetFakeEvseLog)
    def on_get_log(self, msg: GetFakeEvseLog) -> FakeEvseLog:
        return FakeEvseLog(entries=self.entries, state=self.state)

    @handles(AuthorizeSession)
    def on_authorize(self, msg: AuthorizeSession) -> None:
        self.entries.append(["authorize", msg.token_id])
        if self.refuse or self.state != "WaitingForAuthentication":
            raise Rejected(f"{self.name} cannot take an authorization while {self.state}")
        self.state, self.token = "Charging", msg.token_id
        self._event("Authorized")
        self._event("TransactionStarted")
        self.publish(self._status())

    @handles(StopCharging)
    def on_stop(self, msg: StopCharging) -> None:
        self.entries.append(["stop", msg.reason])
        if self.state != "Charging":
            raise Rejected(f"{self.name} has no running transaction")
        self.state = "Finished"
        self._event("TransactionFinished", reason=msg.reason)
        self.publish(self._status())

    @handles(UnlockConnectorNow)
    def on_unlock(self, msg: UnlockConnectorNow) -> None:
        self.entries.append(["unlock"])
        if self.state == "Charging":
            raise Rejected(f"{self.name} runs a transaction")
        if self.state == "WaitingForAuthentication":
            self.state = "Finished"
            self.publish(self._status())

    @handles(ReserveConnector)
    def on_reserve(self, msg: ReserveConnector) -> None:
        """Held and shown, not enforced: the real EVSE manager's refusals are tested against it."""
        self.entries.append(["reserve", ",".join(str(r.reservation_id) for r in msg.reservations)])
        self.reservations = msg.reservations
        self.publish(self._status())

    @handles(GetConnectorStatus)
    def on_get_status(self, msg: GetConnectorStatus) -> ConnectorStatus:
        return self._status()

    @handles(WithdrawAuthorization, PauseCharging, ResumeCharging, GrantLimitLease)
    def on_ignored(self, msg: Any) -> None:
        """Accepted and ignored: auth never sends these."""

    @handles(GetSessionHistory)
    def on_history(self, msg: GetSessionHistory) -> SessionHistory:
        return SessionHistory(sessions=[])
