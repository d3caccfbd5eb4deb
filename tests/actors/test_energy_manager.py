"""EnergyManager end to end: two SIL connectors under a 20 A feeder, planned by the optimiser, with
the leases reaching the real EVSE managers; the plan says why each got what it got. A SunSpec meter
server (a real pymodbus server) measures the feeder's non-EV load through a PowerMeter actor; needs and
caps arrive through the control API; another grantor's lease shows up as the EVSE's external limit."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from charger.actors.charging import (
    AuthorizeSession,
    ConnectorStatus,
    EnergyPlan,
    EvseAllocation,
    GetConnectorStatus,
    GetEnergyPlan,
    GrantLimitLease,
    PlugCar,
    ReleaseLimitLease,
    UnplugCar,
)
from charger.sim.meter_server import MeterLayout, MeterServer
from websockets.sync.client import connect

from charger.ctl import ApiError, _plan_lines, request
from charger.ctl import main as ctl_main
from charger.errors import CallError, Rejected
from charger.journal import Journal
from charger.testing import RunningSystem, free_port, running_system
from charger.topology import load_topology

CHARGE = "iec_wait_pwr_ready;draw_power_regulated 32,3"
FEEDER_A = 20

TOPOLOGY = """
site: energy
system: {{admin_port: {admin}, bind: 127.0.0.1}}
actors:
  rig:
    type: SilRig
    config:
      connectors:
        - {{board_link: board-1.pty, modbus_port: {modbus1}}}
        - {{board_link: board-2.pty, modbus_port: {modbus2}}}
  board-1: {{type: BoardDriver, config: {{port: board-1.pty}}}}
  meter-1: {{type: PowerMeter, config: {{transport: tcp, port: {modbus1}, poll_s: 0.5}}}}
  evse-1:
    type: EvseManager
    config: {{connector_id: 1, failsafe_current_a: 6}}
    connections: {{board: [board-1], meter: [meter-1]}}
  board-2: {{type: BoardDriver, config: {{port: board-2.pty}}}}
  meter-2: {{type: PowerMeter, config: {{transport: tcp, port: {modbus2}, poll_s: 0.5}}}}
  evse-2:
    type: EvseManager
    config: {{connector_id: 2, failsafe_current_a: 6}}
    connections: {{board: [board-2], meter: [meter-2]}}
  site-meter: {{type: PowerMeter, config: {{transport: tcp, port: {site_meter}, layout: sunspec, poll_s: 0.3}}}}
  energy:
    type: EnergyManager
    config:
      meters:
        site-meter: {{node: feeder, measures: load}}
      nodes:
        - {{name: grid, current_limit_a: 63}}
        - {{name: feeder, parent: grid, current_limit_a: {feeder}}}
      evses:
        evse-1: {{node: feeder}}
        evse-2: {{node: feeder}}
      horizon_slots: 8
      period_s: 2
      prices: [0.30, 0.25]
      variant: {variant}
    connections: {{evse: [evse-1, evse-2], meter: [site-meter]}}
  api:
    type: ControlApi
    config: {{port: 0, port_file: api.port}}
    connections: {{evse: [evse-1, evse-2], energy: [energy]}}
supervision:
  name: root
  intensity: 10
  period: 10
  children:
    - rig
    - {{supervisor: connector-1, own_process: false, children: [board-1, meter-1, evse-1]}}
    - {{supervisor: connector-2, own_process: false, children: [board-2, meter-2, evse-2]}}
    - site-meter
    - energy
    - api
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("energy")


@pytest.fixture(scope="module")
def site_meter() -> Iterator[MeterServer]:
    with MeterServer(MeterLayout.SUNSPEC_203) as server:
        yield server


@pytest.fixture(scope="module")
def site(state: Path, site_meter: MeterServer) -> Iterator[RunningSystem]:
    path = state / "site.yaml"
    ports = {"admin": free_port(), "modbus1": free_port(), "modbus2": free_port(), "site_meter": site_meter.port}
    text = TOPOLOGY.format(**ports, feeder=FEEDER_A, variant="qp")
    path.write_text(textwrap.dedent(text))
    topology = load_topology(path)
    with running_system(topology.root, free_port(), str(state), log_file=str(state / "system.log")) as system:
        for evse in ("evse-1", "evse-2"):
            wait(lambda e=evse: (s := status(system, e)).state == "Idle" and s.power_w is not None)
        yield system


def status(system: RunningSystem, evse: str) -> ConnectorStatus:
    answer = system.client.call(evse, GetConnectorStatus())
    assert isinstance(answer, ConnectorStatus)
    return answer


def plan(system: RunningSystem) -> EnergyPlan:
    answer = system.client.call("energy", GetEnergyPlan())
    assert isinstance(answer, EnergyPlan)
    return answer


def try_plan(system: RunningSystem) -> EnergyPlan | None:
    """The plan, or None while the energy manager is restarting (the old one gone, the new one not bound)."""
    try:
        answer = system.client.call("energy", GetEnergyPlan(), timeout=1.0)
    except CallError:
        return None
    assert isinstance(answer, EnergyPlan)
    return answer


def wait(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
    return result


def start_charging(system: RunningSystem, number: int) -> None:
    system.client.call(f"evse-{number}", AuthorizeSession(token_id=f"CAR{number}"))
    system.client.call("rig", PlugCar(script=CHARGE, connector=number))
    wait(lambda: status(system, f"evse-{number}").relays_closed)


def test_without_cars_nobody_is_given_current(site: RunningSystem) -> None:
    allocations = wait(lambda: (p := plan(site)).allocations and p.allocations)
    assert {(a.evse, a.amps, a.reason) for a in allocations} == {
        ("evse-1", 0.0, "no_session"),
        ("evse-2", 0.0, "no_session"),
    }


def test_one_car_gets_the_feeder_then_two_share_it(site: RunningSystem) -> None:
    start_charging(site, 1)
    alone = wait(lambda: (s := status(site, "evse-1")).current_limit_a >= FEEDER_A - 0.1 and s)
    assert alone.current_limit_a <= FEEDER_A
    assert alone.state == "Charging"
    one = {a.evse: a for a in plan(site).allocations}
    assert FEEDER_A - 0.1 <= one["evse-1"].amps <= FEEDER_A
    assert (one["evse-1"].reason, one["evse-1"].node) == ("fuse", "feeder")

    start_charging(site, 2)

    def shared() -> dict[str, float] | None:
        limits = {e: status(site, e).current_limit_a for e in ("evse-1", "evse-2")}
        return limits if limits["evse-1"] > 0 and limits["evse-2"] > 0 and sum(limits.values()) <= FEEDER_A else None

    limits = wait(shared)
    assert all(amps >= 6 for amps in limits.values())  # both charge, at least the PWM minimum each
    decided = plan(site)
    assert sum(a.amps for a in decided.allocations) <= FEEDER_A
    assert decided.planner == "CLARABEL" and decided.fallback_reason is None

    for number in (1, 2):
        site.client.call("rig", UnplugCar(connector=number))
    wait(lambda: all(a.amps == 0 for a in plan(site).allocations))


def test_the_plan_through_the_control_api_and_ctl(site: RunningSystem, state: Path) -> None:
    port = wait(lambda: (state / "api.port").exists() and (state / "api.port").read_text())
    with connect(f"ws://127.0.0.1:{port}") as ws:
        plan_now = request(ws, "energy.plan", {})
    assert [a["evse"] for a in plan_now["allocations"]] == ["evse-1", "evse-2"]
    lines = _plan_lines(plan_now)
    assert lines[0].startswith("CLARABEL (optimal), decided in ")
    assert any(line.split()[:3] == ["evse-1", "0.0", "A"] and "no car plugged in now" in line for line in lines[1:])
    assert any(line.split()[:4] == ["feeder", "L1", "20.0", "A"] for line in lines)  # the limits per node
    assert any(line.split()[:2] == ["schedule", "(A)"] for line in lines)


def allocation(system: RunningSystem, evse: str) -> EvseAllocation:
    return next(a for a in plan(system).allocations if a.evse == evse)


def api_call(state: Path, method: str, params: dict[str, Any]) -> Any:
    port = wait(lambda: (state / "api.port").exists() and (state / "api.port").read_text())
    with connect(f"ws://127.0.0.1:{port}") as ws:
        return request(ws, method, params)


def test_another_grantors_lease_is_the_evses_external_limit_in_the_next_plan(site: RunningSystem) -> None:
    """Like an OCPP charging profile: the connector obeys the lowest grant, so the plan must not count on
    more than the other grantor allows."""
    start_charging(site, 1)
    wait(lambda: allocation(site, "evse-1").amps >= FEEDER_A - 0.1)
    ocpp = GrantLimitLease(valid_until=time.time() + 120, amps=8.0, grantor="ocpp-test", released_when_lapsed=True)
    site.client.call("evse-1", ocpp)
    limited = wait(lambda: (a := allocation(site, "evse-1")).external_limit_a == 8.0 and a)
    assert limited.reason == "external_limit"
    assert limited.amps == pytest.approx(8.0, abs=0.1)
    leases = wait(lambda: (s := status(site, "evse-1").leases)["energy"] <= 8.0 + 1e-6 and s)
    assert leases["ocpp-test"] == 8.0
    site.client.call("evse-1", ReleaseLimitLease(grantor="ocpp-test"))
    freed = wait(lambda: (a := allocation(site, "evse-1")).external_limit_a is None and a.amps > 8 and a)
    assert freed.amps <= FEEDER_A


def test_non_ev_load_from_a_modbus_meter_reduces_the_room(site: RunningSystem, site_meter: MeterServer) -> None:
    wait(lambda: allocation(site, "evse-1").amps >= FEEDER_A - 0.1)  # the car of the test before, alone
    site_meter.set_load(12 * 230 * 3, (12.0, 12.0, 12.0))
    try:
        squeezed = wait(lambda: (a := allocation(site, "evse-1")).amps <= FEEDER_A - 12 and a)
        assert squeezed.amps >= 6 and (squeezed.reason, squeezed.node) == ("fuse", "feeder")
        assert "after non-EV load" in squeezed.detail
        feeder = next(n for n in plan(site).nodes if (n.node, n.phase) == ("feeder", "L1"))
        assert feeder.non_ev == pytest.approx(12.0, abs=0.05)
        assert feeder.planned + feeder.non_ev <= FEEDER_A + 1e-6
        wait(lambda: status(site, "evse-1").current_limit_a <= FEEDER_A - 12)  # the lease reached the EVSE
    finally:
        site_meter.set_load(0.0)
    wait(lambda: allocation(site, "evse-1").amps >= FEEDER_A - 0.1)


def test_a_grid_cap_through_the_control_api_lowers_the_share_and_says_why(site: RunningSystem, state: Path) -> None:
    until = time.time() + 300
    api_call(state, "energy.cap", {"node": "feeder", "amps": 10, "valid_until": until, "source": "dso"})
    capped = wait(lambda: (a := allocation(site, "evse-1")).amps <= 10 and a)
    assert (capped.reason, capped.node) == ("node_cap", "feeder")
    assert "external cap" in capped.detail
    decided = plan(site)
    assert [(c.node, c.amps, c.source) for c in decided.caps] == [("feeder", 10.0, "dso")]
    assert any(line.strip().startswith("cap on feeder: 10 A until") for line in _plan_lines(asdict(decided)))
    with pytest.raises(ApiError, match="no node"):
        api_call(state, "energy.cap", {"node": "nowhere", "amps": 10})
    api_call(state, "energy.cap", {"node": "feeder"})  # lifted
    wait(lambda: allocation(site, "evse-1").amps >= FEEDER_A - 0.1)


def test_a_forecast_through_the_control_api_replaces_the_profile(site: RunningSystem, state: Path) -> None:
    api_call(state, "energy.forecast", {"prices": [0.55] * 8, "pv_surplus_kw": [3.0] * 8})
    decided = wait(lambda: (p := plan(site)).price[:1] == [0.55] and p)
    assert decided.pv_surplus_kw[0] == 3.0  # no live PV or grid meter at the root: the forecast stands
    # a forecast that covers only a slot of yesterday replaces this one: the daily profile is back
    api_call(state, "energy.forecast", {"starts_at": time.time() - 86400, "prices": [9.9], "pv_surplus_kw": [0.0]})
    wait(lambda: plan(site).price[0] in (0.30, 0.25))


def test_a_met_need_gets_0_a_with_reason_need_met(site: RunningSystem, state: Path) -> None:
    port = wait(lambda: (state / "api.port").exists() and (state / "api.port").read_text())
    assert ctl_main(["--url", f"ws://127.0.0.1:{port}", "need", "evse-1", "--kwh", "0", "--depart", "23:59"]) == 0
    done = wait(lambda: (a := allocation(site, "evse-1")).reason == "need_met" and a)
    assert done.amps == 0.0 and done.need_kwh == 0.0 and done.departure is not None
    wait(lambda: status(site, "evse-1").current_limit_a == 0.0)
    assert ctl_main(["--url", f"ws://127.0.0.1:{port}", "need", "evse-1", "--clear"]) == 0
    wait(lambda: allocation(site, "evse-1").amps >= FEEDER_A - 0.1)
    site.client.call("rig", UnplugCar(connector=1))
    wait(lambda: allocation(site, "evse-1").reason == "no_session")


def test_an_energy_manager_restart_fences_out_its_previous_instance(site: RunningSystem, state: Path) -> None:
    """Every start raises the manager's fence: leases from the instance before are refused by the EVSE,
    so two instances can never both drive it (DESIGN §8)."""
    wait(lambda: "energy" in status(site, "evse-1").leases)
    fence_before = _fence(state)
    old_pid = site.pid_of("energy")
    killed_at = time.time()
    os.kill(old_pid, signal.SIGKILL)
    wait(lambda: site.pid_of("energy") != old_pid)
    wait(lambda: _fence(state) == fence_before + 1)
    killed_at = time.time()
    # the EVSE learns the new fence from the new instance's first lease, sent with its first decision
    wait(lambda: (p := try_plan(site)) is not None and p.decided_at > killed_at)
    wait(lambda: status(site, "evse-1").leases.get("energy") == 0.0)  # its grant (no car)
    stale = GrantLimitLease(valid_until=time.time() + 60, amps=32.0, grantor="energy", fence=fence_before)
    with pytest.raises(Rejected, match="superseded"):
        site.client.call("evse-1", stale)
    assert status(site, "evse-1").leases["energy"] == 0.0  # still its grant, not the stale 32 A


def _fence(state: Path) -> int:
    journal = Journal(state / "energy.energy.db")
    try:
        return int(journal.get("fence", 0))
    finally:
        journal.close()


def test_a_restarted_energy_manager_keeps_a_charging_session_charging(site: RunningSystem) -> None:
    """The new instance plans only once it knows which cars are plugged in: a first plan made before
    would lease 0 A to the charging session and pause it."""
    start_charging(site, 1)
    wait(lambda: status(site, "evse-1").state == "Charging" and plan(site).allocations[0].amps > 0)
    old_pid = site.pid_of("energy")
    killed_at = time.time()
    os.kill(old_pid, signal.SIGKILL)
    states = set()

    def new_plan() -> EnergyPlan | None:
        states.add(status(site, "evse-1").state)
        answer = try_plan(site)
        return answer if answer is not None and answer.decided_at > killed_at and answer.allocations else None

    first = {a.evse: a for a in wait(new_plan).allocations}
    assert first["evse-1"].amps > 0, first
    for _ in range(100):  # and its leases keep the session charging
        states.add(status(site, "evse-1").state)
        time.sleep(0.01)
    assert states == {"Charging"}
    site.client.call("rig", UnplugCar(connector=1))
    wait(lambda: status(site, "evse-1").state == "Idle")


def test_a_timed_cap_and_a_need_survive_a_restart_of_the_energy_manager(site: RunningSystem, state: Path) -> None:
    until = time.time() + 300
    api_call(state, "energy.cap", {"node": "feeder", "amps": 12, "valid_until": until, "source": "dso"})
    api_call(state, "energy.session", {"connector": "evse-2", "energy_kwh": 4.5})
    old_pid = site.pid_of("energy")
    os.kill(old_pid, signal.SIGKILL)
    wait(lambda: site.pid_of("energy") != old_pid)
    decided = wait(lambda: (p := plan(site)).decided_at > 0 and p)
    assert [(c.node, c.amps, c.valid_until, c.source) for c in decided.caps] == [("feeder", 12.0, until, "dso")]
    assert next(a for a in decided.allocations if a.evse == "evse-2").need_kwh == 4.5
    api_call(state, "energy.cap", {"node": "feeder"})
    api_call(state, "energy.session", {"connector": "evse-2"})
    wait(lambda: not plan(site).caps)
