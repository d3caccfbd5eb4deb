"""A stand-in EVSE manager for tests of boot's status view and summary: canned answers, no hardware.

It provides the EVSE manager interface, so boot treats it as a connector. It reports ``Available``
until `charge_after_s`, then ``Charging`` with a session id, and answers `GetSessionHistory` with
one completed session per entry of `sessions_wh` (ended when the actor started, so they count as
this run's), or refuses to when `refuse_history` is set. With `hang_first_status_s` its first status
answer comes that late, as from a connector stuck on its device.
"""

from __future__ import annotations

import time
from typing import ClassVar

from charger.actors.charging import (
    EVSE_MANAGER,
    ConnectorStatus,
    GetConnectorStatus,
    GetSessionHistory,
    SessionCompleted,
    SessionHistory,
)

from charger.behaviour import Behaviour, handles
from charger.errors import Rejected


class FakeConnector(Behaviour):
    description = "Answers like an EVSE manager, with canned data."
    provides = {"evse": EVSE_MANAGER}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "connector_id": {"type": "integer", "minimum": 1, "default": 1},
            "charge_after_s": {"type": "number", "minimum": 0, "default": 0.5},
            "sessions_wh": {"type": "array", "items": {"type": ["number", "null"]}, "default": []},
            "refuse_history": {"type": "boolean", "default": False},
            "hang_first_status_s": {"type": "number", "minimum": 0, "default": 0},
        },
    }

    def init(self) -> None:
        self.started = time.time()
        self.hang = self.config["hang_first_status_s"]

    def _charging(self) -> bool:
        return bool(time.time() - self.started >= self.config["charge_after_s"])

    @handles(GetConnectorStatus)
    def on_status(self, msg: GetConnectorStatus) -> ConnectorStatus:
        if self.hang:
            time.sleep(self.hang)  # a connector stuck on its device, once
            self.hang = 0
        charging = self._charging()
        return ConnectorStatus(
            connector=self.name,
            connector_id=self.config["connector_id"],
            state="Charging" if charging else "Available",
            pilot="C" if charging else "A",
            pwm_duty_percent=26.6 if charging else None,
            current_limit_a=16.0 if charging else 6.0,
            lease_until=None,
            power_w=11040.0 if charging else None,
            energy_wh=(time.time() - self.started) * 3.0 if charging else None,
            session_id=f"{self.name}-7" if charging else None,
            token_id="CAFE" if charging else None,
            relays_closed=charging,
            faults=[],
            last_event="ChargingStarted" if charging else None,
            sessions_completed=len(self.config["sessions_wh"]),
            energy_total_wh=sum(wh or 0.0 for wh in self.config["sessions_wh"]),
        )

    @handles(GetSessionHistory)
    def on_history(self, msg: GetSessionHistory) -> SessionHistory:
        if self.config["refuse_history"]:
            raise Rejected("history is switched off in this fake")
        sessions = []
        for i, wh in enumerate(self.config["sessions_wh"], start=1):
            sessions.append(
                SessionCompleted(
                    connector=self.name,
                    session_id=f"{self.name}-{i}",
                    token_id="CAFE",
                    meter_start_wh=None if wh is None else 1000.0,
                    meter_stop_wh=None if wh is None else 1000.0 + wh,
                    energy_wh=wh,
                    stop_reason="EVDisconnected",
                    started_at=self.started,
                    stopped_at=self.started,
                )
            )
        return SessionHistory(sessions=sessions[-msg.limit :])
