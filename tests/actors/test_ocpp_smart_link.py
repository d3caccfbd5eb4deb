"""`SmartChargingLink` on a stand-in for the backend link (no actor system): when the shares of the
ChargePointMaxProfile move, the lease calls that lower a connector go out first and a raise waits until
they are taken, so the connectors never hold more than the maximum together. The full station is tested
in test_backend_link_smart.py; this checks the order, which a station test cannot see."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from charger.actors.charging import GrantLimitLease, ReleaseLimitLease
from charger.actors.ocpp_smart_link import SmartChargingLink
from charger.protocols.ocpp_smart_charging import ChargingProfileStatus, SmartChargingConfig, set_charging_profile

GrantOrRelease = GrantLimitLease | ReleaseLimitLease


class _Call:
    def __init__(self, evse: str, request: GrantOrRelease) -> None:
        self.evse, self.request = evse, request
        self.taken: Any = None

    def then(self, taken: Any, failed: Any) -> _Call:
        self.taken = taken
        return self


class _Link:
    """What `SmartChargingLink` reads of a `BackendLink`; lease calls wait until a test settles them."""

    name = "backend"

    def __init__(self, state_dir: Path) -> None:
        self.config = {
            "smart_charging": {
                "lease_s": 30,
                "connector_max_current_a": 32,
                "phases": 3,
                "voltage_v": 230,
                "grid_max_current_a": None,
            }
        }
        self.evses = ["evse-1", "evse-2"]
        self.state_dir = str(state_dir)
        self.log = logging.getLogger("test-smart-link")
        self.sessions: dict[int, str] = {}
        self.status: dict[int, Any] = {}
        self.ledger: dict[str, Any] = {}
        self.calls: list[_Call] = []

    def running_session(self, connector: int) -> str | None:
        return self.sessions.get(connector)

    def transaction_id_of(self, connector: int) -> int | None:
        return None

    def start_timer(self, seconds: float, callback: Any) -> Any:
        return SimpleNamespace(cancel=lambda: None)

    def call(self, evse: str, request: GrantOrRelease, timeout: float) -> _Call:
        call = _Call(evse, request)
        self.calls.append(call)
        return call

    def settle(self) -> list[tuple[str, float | None]]:
        """Let every call in flight be taken (which may send more); what was sent, in order."""
        sent = []
        while self.calls:
            call = self.calls.pop(0)
            sent.append((call.evse, getattr(call.request, "amps", None)))
            call.taken(None)
        return sent


def test_a_transaction_starting_lowers_the_other_connector_before_it_raises_its_own(tmp_path: Path) -> None:
    link = _Link(tmp_path)
    smart = SmartChargingLink(link)  # type: ignore[arg-type]
    smart.start()
    assert sorted(link.settle()) == [("evse-1", None), ("evse-2", None)]  # released: no profile yet
    config = SmartChargingConfig(
        number_of_connectors=2, max_stack_level=8, max_schedule_periods=24, max_profiles_installed=20
    )
    start = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": start,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 20}],
        },
    }
    result = set_charging_profile(
        smart.store, connector_id=0, cs_charging_profiles=body, config=config, transactions={}, now=datetime.now(UTC)
    )
    assert result.status is ChargingProfileStatus.ACCEPTED
    smart.store = result.store
    smart.refresh()
    assert sorted(link.settle()) == [("evse-1", 20), ("evse-2", 20)]  # nothing flows: all of it each

    link.sessions[1] = "evse-1-1"
    smart.status_seen(1)
    assert link.settle() == [("evse-2", 0)]  # connector 1 keeps 20, connector 2 gets what is left

    link.sessions[2] = "evse-2-1"
    smart.status_seen(2)
    assert [(c.evse, c.request.amps) for c in link.calls] == [("evse-1", 10)]  # the raise waits
    assert link.settle() == [("evse-1", 10), ("evse-2", 10)]

    del link.sessions[1]
    smart.status_seen(1)
    assert [(c.evse, c.request.amps) for c in link.calls] == [("evse-1", 0)]
    assert link.settle() == [("evse-1", 0), ("evse-2", 20)]
    smart.close()
