"""End to end through real processes: SIL rigs behind a pty and a Modbus TCP server, the serial board
driver, the Modbus meter driver, the card reader, auth and EVSE managers, driven through the control API
over a real websocket, exactly as `python -m charger.ctl` does.

Every case ends with the bill check: the energy booked equals the meter register delta exactly, and
the stop value is what the meter answers over Modbus once the car has gone.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from charger.actors.charging import AuthorizeSession, ConnectorReservation, ReserveConnector, WithdrawAuthorization
from charger.hal.meter import ModbusMeter
from charger.protocols.modbus_maps import SDM630
from websockets.sync.client import ClientConnection, connect

from charger.ctl import ApiError, request
from charger.errors import CallError
from charger.testing import RunningSystem, running_system
from charger.topology import load_topology
from tests.conftest import free_port

TOKEN_1, TOKEN_2, STRANGER = "04A1B2C3D4", "04F5E6D7C8", "0499999999"
CHARGE = "iec_wait_pwr_ready;draw_power_regulated 16,3"

TOPOLOGY = """
site: e2e
system: {{admin_port: {admin}, bind: 127.0.0.1}}
actors:
  card-reader-sim: {{type: CardReaderSim, config: {{link: rfid.pty}}}}
  rig:
    type: SilRig  # one rig for both connectors: the control API finds connector 2 as the rig's second
    config:
      connectors:
        - {{board_link: board-1.pty, modbus_port: {modbus1}}}
        - {{board_link: board-2.pty, modbus_port: {modbus2}}}
  board-1: {{type: BoardDriver, config: {{port: board-1.pty}}}}
  meter-1: {{type: PowerMeter, config: {{transport: tcp, port: {modbus1}, poll_s: 0.5}}}}
  evse-1:
    type: EvseManager
    config: {{connector_id: 1, connection_timeout_s: {timeout}, c1_power_off_s: 2}}
    connections: {{board: [board-1], meter: [meter-1]}}
  board-2: {{type: BoardDriver, config: {{port: board-2.pty}}}}
  meter-2: {{type: PowerMeter, config: {{transport: tcp, port: {modbus2}, poll_s: 0.5}}}}
  evse-2:
    type: EvseManager
    config: {{connector_id: 2, connection_timeout_s: {timeout}, c1_power_off_s: 2, has_lock: false}}
    connections: {{board: [board-2], meter: [meter-2]}}
  card-reader: {{type: CardReader, config: {{port: rfid.pty}}}}
  auth:
    type: Auth
    config: {{allow: [{token1}, {token2}], connection_timeout_s: {timeout}}}
    connections: {{evse: [evse-1, evse-2], reader: [card-reader]}}
  api:
    type: ControlApi
    config: {{port: 0, port_file: {port_file}}}
    connections: {{evse: [evse-1, evse-2], rig: [rig], auth: [auth], card_reader: [card-reader-sim]}}
supervision:
  name: root
  intensity: 20
  period: 10
  children:
    - supervisor: sil
      children: [card-reader-sim, rig]
    - supervisor: connector-1
      children: [board-1, meter-1, evse-1]
    - supervisor: connector-2
      children: [board-2, meter-2, evse-2]
    - card-reader
    - auth
    - api
"""


class Station:
    """The running system, its control API and its meters' Modbus ports."""

    def __init__(self, system: RunningSystem, ws: ClientConnection, modbus: dict[int, int]) -> None:
        self.system, self.ws, self.modbus = system, ws, modbus

    def api(self, method: str, **params: Any) -> Any:
        return request(self.ws, method, params)

    def status(self, connector: int) -> dict[str, Any]:
        statuses: list[dict[str, Any]] = self.api("connectors.status")
        return statuses[connector - 1]

    def wait(self, connector: int, what: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(connector)
            if what(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"connector {connector} never got there; last status {status}")
            time.sleep(0.1)

    def wait_state(self, connector: int, *states: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait(connector, lambda s: s["state"] in states, timeout)

    def sessions(self, connector: int) -> list[dict[str, Any]]:
        sessions: list[dict[str, Any]] = self.api("connector.sessions", connector=connector)
        return sessions

    def register_wh(self, connector: int) -> float:
        """The meter's energy register as a Modbus client reads it, from outside the actor system."""
        meter = ModbusMeter.tcp("127.0.0.1", SDM630, port=self.modbus[connector])
        try:
            energy = meter.read().energy_import_wh
        finally:
            meter.close()
        assert energy is not None
        return energy

    def reset(self, connector: int) -> None:
        """Car gone, faults cleared, connector idle: each test starts here."""
        for fault in ("rcd", "meter_offline", "lock_failure", "pilot_error_e", "diode_failure"):
            self.api("connector.fault", connector=connector, fault=fault, active=False)
        self.api("connector.unplug", connector=connector)
        self.wait_state(connector, "Idle")

    def billed(self, connector: int, sessions_before: int) -> dict[str, Any]:
        """The one session booked since `sessions_before`, checked against the meter register."""
        deadline = time.monotonic() + 20.0
        while len(sessions := self.sessions(connector)) <= sessions_before:
            assert time.monotonic() < deadline, "the session was never billed"
            time.sleep(0.1)
        assert len(sessions) == sessions_before + 1, sessions
        bill = sessions[-1]
        assert bill["energy_wh"] == bill["meter_stop_wh"] - bill["meter_start_wh"]
        assert bill["meter_stop_wh"] == self.register_wh(connector), "stop value is not the settled register"
        return bill


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    state = tmp_path_factory.mktemp("station")
    modbus = {1: free_port(), 2: free_port()}
    port_file = state / "api.port"
    path = state / "station.yaml"
    path.write_text(
        textwrap.dedent(TOPOLOGY).format(
            admin=free_port(),
            modbus1=modbus[1],
            modbus2=modbus[2],
            timeout=4,
            token1=TOKEN_1,
            token2=TOKEN_2,
            port_file=port_file,
        )
    )
    topology = load_topology(path)
    with running_system(topology.root, free_port(), str(state), log_file=str(state / "system.log")) as system:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert time.monotonic() < deadline, "control API never came up"
            time.sleep(0.05)
        with connect(f"ws://127.0.0.1:{port_file.read_text()}") as ws:
            s = Station(system, ws, modbus)
            for connector in (1, 2):
                s.wait(connector, lambda st: st["state"] == "Idle" and st["pilot"] == "A", timeout=30)
            yield s


def charging_session(s: Station, connector: int, token: str) -> dict[str, Any]:
    """Plug in first, then the card: a running session drawing power."""
    s.api("connector.plug", connector=connector, script=CHARGE)
    s.wait_state(connector, "WaitingForAuthentication")
    s.api("rfid.present", token=token)
    return s.wait(connector, lambda st: st["state"] == "Charging" and (st["energy_wh"] or 0) > 1.0)


def test_plug_in_first_then_card(station: Station) -> None:
    s = station
    s.reset(1)
    before = len(s.sessions(1))
    status = charging_session(s, 1, TOKEN_1)
    assert status["token_id"] == TOKEN_1 and status["relays_closed"]
    assert status["pwm_duty_percent"] is not None
    s.api("connector.unplug", connector=1)
    bill = s.billed(1, before)
    assert bill["stop_reason"] == "EVDisconnected" and bill["token_id"] == TOKEN_1
    assert bill["energy_wh"] > 1.0


def test_token_first_then_plug_in(station: Station) -> None:
    s = station
    s.reset(2)
    before = len(s.sessions(2))
    assert s.api("rfid.present", token=TOKEN_2, connector=2)["status"] == "Accepted"
    s.api("connector.plug", connector=2, script=CHARGE)
    s.wait(2, lambda st: st["state"] == "Charging" and (st["energy_wh"] or 0) > 0.5)
    s.api("connector.stop", connector=2)
    s.wait_state(2, "Finished")
    s.api("connector.unplug", connector=2)
    assert s.billed(2, before)["stop_reason"] == "Local"


def test_taken_out_of_service_while_charging_then_back(station: Station) -> None:
    s = station
    s.reset(2)
    before = len(s.sessions(2))
    charging_session(s, 2, TOKEN_2)
    s.api("connector.availability", connector=2, available=False, reason="Other")
    disabled = s.wait_state(2, "Disabled")
    assert not disabled["relays_closed"]
    bill = s.billed(2, before)  # the transaction ended at once, billed exactly
    assert bill["stop_reason"] == "Other" and bill["token_id"] == TOKEN_2
    verdict = s.api("rfid.present", token=TOKEN_2, connector=2)
    assert (verdict["status"], verdict["detail"]) == ("NoConnector", "evse-2 is Disabled")
    s.api("connector.availability", connector=2, available=True)
    s.api("connector.unplug", connector=2)
    s.wait_state(2, "Idle")
    assert len(s.sessions(2)) == before + 1


def test_unknown_card_is_refused(station: Station) -> None:
    s = station
    s.reset(1)
    s.api("connector.plug", connector=1, script=CHARGE)
    s.wait_state(1, "WaitingForAuthentication")
    assert s.api("rfid.present", token=STRANGER, connector=1)["status"] == "Invalid"
    assert s.status(1)["state"] == "WaitingForAuthentication"


def test_authorization_times_out(station: Station) -> None:
    s = station
    s.reset(1)
    s.api("connector.plug", connector=1, script=CHARGE)
    s.wait_state(1, "WaitingForAuthentication")
    finished = s.wait_state(1, "Finished", timeout=15)
    assert finished["last_event"] == "PluginTimeout"
    assert not finished["relays_closed"]


def test_pause_by_the_ev_and_resume(station: Station) -> None:
    s = station
    s.reset(1)
    before = len(s.sessions(1))
    charging_session(s, 1, TOKEN_1)
    s.api("connector.car", connector=1, script="pause")
    paused = s.wait_state(1, "ChargingPausedEV")
    assert paused["pilot"] == "B" and not paused["relays_closed"]
    s.api("connector.car", connector=1, script="draw_power_regulated 16,3")
    s.wait(1, lambda st: st["state"] == "Charging" and st["relays_closed"])
    s.api("connector.unplug", connector=1)
    s.billed(1, before)


def test_pause_by_the_evse_with_a_zero_lease(station: Station) -> None:
    s = station
    s.reset(1)
    before = len(s.sessions(1))
    charging_session(s, 1, TOKEN_1)
    s.api("connector.lease", connector=1, amps=0, valid_for_s=60)
    paused = s.wait(1, lambda st: st["state"] == "ChargingPausedEVSE" and not st["relays_closed"])
    assert paused["pwm_duty_percent"] is None and paused["current_limit_a"] == 0
    s.api("connector.lease", connector=1, amps=16, valid_for_s=60)
    resumed = s.wait(1, lambda st: st["state"] == "Charging" and st["relays_closed"])
    assert resumed["current_limit_a"] == 16
    s.api("connector.unplug", connector=1)
    s.billed(1, before)


def test_a_lapsed_lease_falls_back_to_the_failsafe_current(station: Station) -> None:
    s = station
    s.reset(1)
    before = len(s.sessions(1))
    charging_session(s, 1, TOKEN_1)
    s.api("connector.lease", connector=1, amps=20, valid_for_s=2)
    s.wait(1, lambda st: st["current_limit_a"] == 20 and abs(st["pwm_duty_percent"] - 33.3) < 0.1)
    lapsed = s.wait(1, lambda st: st["current_limit_a"] == 6, timeout=10)
    assert lapsed["state"] == "Charging" and lapsed["pwm_duty_percent"] == 10.0
    s.api("connector.unplug", connector=1)
    s.billed(1, before)


def test_rcd_trip_opens_the_relays_until_unplug(station: Station) -> None:
    s = station
    s.reset(1)
    before = len(s.sessions(1))
    charging_session(s, 1, TOKEN_1)
    s.api("connector.fault", connector=1, fault="rcd")
    tripped = s.wait(1, lambda st: st["state"] == "Inoperative" and not st["relays_closed"])
    assert "rcd" in tripped["faults"]
    deadline = time.monotonic() + 5
    while s.api("connector.rig", connector=1)["draw_current_a"]:  # the car notices within its 250 ms tick
        assert time.monotonic() < deadline, "current still flows after the RCD trip"
        time.sleep(0.05)
    s.api("connector.fault", connector=1, fault="rcd", active=False)
    time.sleep(1.5)
    assert s.status(1)["state"] == "Inoperative", "an RCD trip is latched until the car is unplugged"
    s.api("connector.unplug", connector=1)
    s.wait_state(1, "Idle")
    s.billed(1, before)


def test_meter_loss_makes_the_connector_inoperative_until_it_answers(station: Station) -> None:
    s = station
    s.reset(2)
    before = len(s.sessions(2))
    charging_session(s, 2, TOKEN_2)
    s.api("connector.fault", connector=2, fault="meter_offline")
    lost = s.wait(2, lambda st: st["state"] == "Inoperative" and not st["relays_closed"])
    assert "meter_offline" in lost["faults"]
    s.api("connector.fault", connector=2, fault="meter_offline", active=False)
    s.wait(2, lambda st: st["state"] == "Charging" and st["relays_closed"] and not st["faults"])
    s.api("connector.unplug", connector=2)
    s.billed(2, before)


def test_unplug_while_charging(station: Station) -> None:
    s = station
    s.reset(2)
    before = len(s.sessions(2))
    session = charging_session(s, 2, TOKEN_2)["session_id"]
    s.api("connector.unplug", connector=2)
    idle = s.wait_state(2, "Idle")
    assert idle["session_id"] is None and not idle["relays_closed"]
    bill = s.billed(2, before)
    assert bill["session_id"] == session and bill["stop_reason"] == "EVDisconnected"


def test_a_killed_evse_manager_resumes_the_same_session(station: Station) -> None:
    s = station
    s.reset(1)
    before = len(s.sessions(1))
    charging = charging_session(s, 1, TOKEN_1)
    pid = s.system.pid_of("evse-1")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while s.system.pid_of("evse-1") == pid:
        assert time.monotonic() < deadline, "evse-1 was not restarted"
        time.sleep(0.05)
    resumed = s.wait(1, lambda st: st["state"] == "Charging" and st["energy_wh"] > charging["energy_wh"])
    assert resumed["session_id"] == charging["session_id"]
    assert resumed["token_id"] == TOKEN_1
    s.api("connector.unplug", connector=1)
    bill = s.billed(1, before)
    assert bill["session_id"] == charging["session_id"]
    assert bill["energy_wh"] > charging["energy_wh"]


def test_control_api_rejects_bad_connector_and_fault(station: Station) -> None:
    s = station
    with pytest.raises(ApiError, match="no connector"):
        s.api("connector.plug", connector=7)
    with pytest.raises(ApiError, match="meteor"):
        s.api("connector.fault", connector=1, fault="meteor")
    with pytest.raises(ApiError, match="no running transaction"):
        s.reset(2)
        s.api("connector.pause", connector=2)


def test_a_lock_that_does_not_follow_blocks_charging_until_unplug(station: Station) -> None:
    s = station
    s.reset(1)
    s.api("connector.fault", connector=1, fault="lock_failure")
    s.api("connector.plug", connector=1, script=CHARGE)
    s.api("rfid.present", token=TOKEN_1, connector=1)
    jammed = s.wait(1, lambda st: "lock_failure" in st["faults"], timeout=15)
    assert jammed["state"] == "Inoperative" and not jammed["relays_closed"]
    s.api("connector.fault", connector=1, fault="lock_failure", active=False)
    time.sleep(1.5)
    assert "lock_failure" in s.status(1)["faults"], "a lock failure is latched until the car is unplugged"
    s.api("connector.unplug", connector=1)
    assert not s.wait_state(1, "Idle")["faults"]


def test_a_tethered_connector_ignores_its_lock(station: Station) -> None:
    s = station
    s.reset(2)
    before = len(s.sessions(2))
    s.api("connector.fault", connector=2, fault="lock_failure")  # has_lock: false, so nothing watches it
    charging = charging_session(s, 2, TOKEN_2)
    assert not charging["faults"]
    s.api("connector.unplug", connector=2)
    s.billed(2, before)


@pytest.mark.parametrize(("fault", "raised"), [("pilot_error_e", "pilot_error_e"), ("diode_failure", "diode_failure")])
def test_pilot_faults_stop_charging_until_unplug(station: Station, fault: str, raised: str) -> None:
    s = station
    s.reset(1)
    before = len(s.sessions(1))
    charging_session(s, 1, TOKEN_1)
    s.api("connector.fault", connector=1, fault=fault)
    failed = s.wait(1, lambda st: raised in st["faults"] and not st["relays_closed"])
    assert failed["state"] == "Inoperative"
    s.api("connector.unplug", connector=1)
    assert not s.wait_state(1, "Idle")["faults"]
    s.billed(1, before)


def test_a_reserved_connector_takes_only_the_reservations_tokens(station: Station) -> None:
    """The connector enforces a reservation (OCPP ReserveNow) itself, across its own restart: a card at
    the reader goes to another connector, other paths are refused, the group's idTags get in, and the
    reservation lapses at its expiry without anyone telling the connector."""
    s = station
    s.reset(1)
    s.reset(2)
    held = ConnectorReservation(reservation_id=7, id_tag=TOKEN_1, expires_at=time.time() + 300, parent_id_tag="GROUP")
    s.system.client.call("evse-1", ReserveConnector(reservations=(held,)))
    pid = s.system.pid_of("evse-1")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while s.system.pid_of("evse-1") == pid:
        assert time.monotonic() < deadline, "evse-1 was not restarted"
        time.sleep(0.05)
    s.wait(1, lambda st: [r["reservation_id"] for r in st["reservations"]] == [7])
    with pytest.raises(CallError, match="reserved"):
        s.system.client.call("evse-1", AuthorizeSession(token_id=TOKEN_2))
    before = len(s.sessions(2))
    s.api("connector.plug", connector=1, script=CHARGE)
    s.wait_state(1, "WaitingForAuthentication")
    s.api("connector.plug", connector=2, script=CHARGE)
    s.wait_state(2, "WaitingForAuthentication")
    s.api("rfid.present", token=TOKEN_2)  # the card reader: connector 1 waited longer, but is reserved
    s.wait(2, lambda st: st["state"] == "Charging" and st["token_id"] == TOKEN_2)
    assert s.status(1)["token_id"] is None
    s.reset(1)
    s.api("connector.unplug", connector=2)
    s.billed(2, before)
    s.reset(2)
    before = len(s.sessions(1))
    s.system.client.call("evse-1", AuthorizeSession(token_id="MEMBER1", parent_id_tag="group"))  # same group
    s.api("connector.plug", connector=1, script=CHARGE)
    s.wait(1, lambda st: st["state"] == "Charging" and st["token_id"] == "MEMBER1")
    s.api("connector.unplug", connector=1)
    s.billed(1, before)
    s.wait_state(1, "Idle")
    brief = ConnectorReservation(reservation_id=8, id_tag=TOKEN_1, expires_at=time.time() + 1.5)
    s.system.client.call("evse-1", ReserveConnector(reservations=(brief,)))
    s.wait(1, lambda st: st["reservations"] == [], timeout=30)
    s.system.client.call("evse-1", AuthorizeSession(token_id=TOKEN_2))  # expired: anyone again
    s.system.client.call("evse-1", WithdrawAuthorization())
    s.system.client.call("evse-1", ReserveConnector())
