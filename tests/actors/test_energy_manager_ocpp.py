"""OCPP smart charging reaches the energy manager: a TxDefaultProfile the CSMS sets becomes the backend
link's lease on the connector, and the energy manager plans that connector under it as an external
limit (reason ``external_limit``); clearing the profile gives the connector the feeder again."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from charger.actors.charging import (
    AuthorizeSession,
    ConnectorStatus,
    EnergyPlan,
    GetConnectorStatus,
    GetEnergyPlan,
    PlugCar,
    UnplugCar,
)
from charger.actors.ocpp_messages import BackendLinkStatus, GetBackendLinkStatus

from charger.testing import RunningSystem, free_port, running_system
from charger.topology import load_topology
from tests.actors.test_backend_link_harness import CP_ID, backend_config, csms_on

CHARGE = "iec_wait_pwr_ready;draw_power_regulated 32,3"
FEEDER_A = 20
OCPP_LIMIT_A = 8.0

TOPOLOGY = """
site: energy-ocpp
system: {{admin_port: {admin}, bind: 127.0.0.1}}
actors:
  rig:
    type: SilRig
    config:
      connectors:
        - {{board_link: board-1.pty, modbus_port: {modbus}}}
  board-1: {{type: BoardDriver, config: {{port: board-1.pty}}}}
  meter-1: {{type: PowerMeter, config: {{transport: tcp, port: {modbus}, poll_s: 0.5}}}}
  evse-1:
    type: EvseManager
    config: {{connector_id: 1, failsafe_current_a: 6}}
    connections: {{board: [board-1], meter: [meter-1]}}
  energy:
    type: EnergyManager
    config:
      nodes:
        - {{name: grid, current_limit_a: 63}}
        - {{name: feeder, parent: grid, current_limit_a: {feeder}}}
      evses:
        evse-1: {{node: feeder}}
      horizon_slots: 8
      period_s: 2
      variant: qp
    connections: {{evse: [evse-1]}}
  backend:
    type: BackendLink
    config: {backend}
    connections: {{evse: [evse-1]}}
supervision:
  name: root
  intensity: 10
  period: 10
  children:
    - rig
    - {{supervisor: connector-1, own_process: false, children: [board-1, meter-1, evse-1]}}
    - energy
    - backend
"""


def wait(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
    return result


def status(system: RunningSystem) -> ConnectorStatus:
    answer = system.client.call("evse-1", GetConnectorStatus())
    assert isinstance(answer, ConnectorStatus)
    return answer


def allocation(system: RunningSystem) -> Any:
    plan = system.client.call("energy", GetEnergyPlan())
    assert isinstance(plan, EnergyPlan)
    return next((a for a in plan.allocations if a.evse == "evse-1"), None)


def link_status(system: RunningSystem) -> BackendLinkStatus:
    answer = system.client.call("backend", GetBackendLinkStatus())
    assert isinstance(answer, BackendLinkStatus)
    return answer


def tx_default(limit_a: float) -> dict[str, Any]:
    start = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "chargingProfileId": 7,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": start,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_a}],
        },
    }


def test_a_charging_profile_from_the_csms_is_an_external_limit_of_the_plan(tmp_path: Path) -> None:
    csms_port = free_port()
    text = TOPOLOGY.format(
        admin=free_port(),
        modbus=free_port(),
        feeder=FEEDER_A,
        backend=json.dumps(backend_config(f"ws://127.0.0.1:{csms_port}")),
    )
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text))
    topology = load_topology(path)
    log = str(tmp_path / "system.log")
    with (
        running_system(topology.root, free_port(), str(tmp_path), log_file=log) as system,
        csms_on("sim", csms_port, tmp_path) as csms,  # after the system: see csms_on
    ):
        wait(lambda: (s := status(system)).state == "Idle" and s.power_w is not None)
        system.client.call("evse-1", AuthorizeSession(token_id="CAR1"))
        system.client.call("rig", PlugCar(script=CHARGE, connector=1))
        alone = wait(lambda: (a := allocation(system)) is not None and a.amps >= FEEDER_A - 0.1 and a)
        assert alone.reason == "fuse"  # without a profile the feeder is the limit

        wait(lambda: link_status(system).registration == "Accepted")
        profile = {"connectorId": 1, "csChargingProfiles": tx_default(OCPP_LIMIT_A)}
        assert csms.call_action(CP_ID, "SetChargingProfile", profile).payload == {"status": "Accepted"}
        wait(lambda: status(system).leases.get("backend") == OCPP_LIMIT_A)
        planned = wait(lambda: (a := allocation(system)) is not None and a.reason == "external_limit" and a)
        assert planned.amps <= OCPP_LIMIT_A
        assert status(system).current_limit_a <= OCPP_LIMIT_A

        assert csms.call_action(CP_ID, "ClearChargingProfile", {}).payload == {"status": "Accepted"}
        wait(lambda: "backend" not in status(system).leases)
        freed = wait(lambda: (a := allocation(system)) is not None and a.reason == "fuse" and a)
        assert freed.amps >= FEEDER_A - 0.1
        system.client.call("rig", UnplugCar(connector=1))
