"""EnergyManager end to end: two SIL connectors under a 20 A feeder, planned by the optimiser, with
the leases reaching the real EVSE managers; the plan says why each got what it got."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from charger.actors.charging import (
    AuthorizeSession,
    ConnectorStatus,
    EnergyPlan,
    GetConnectorStatus,
    GetEnergyPlan,
    GrantLimitLease,
    PlugCar,
    UnplugCar,
)
from websockets.sync.client import connect

from charger.ctl import _plan_lines, request
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
  energy:
    type: EnergyManager
    config:
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
    connections: {{evse: [evse-1, evse-2]}}
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
    - energy
    - api
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("energy")


@pytest.fixture(scope="module")
def site(state: Path) -> Iterator[RunningSystem]:
    path = state / "site.yaml"
    text = TOPOLOGY.format(admin=free_port(), modbus1=free_port(), modbus2=free_port(), feeder=FEEDER_A, variant="qp")
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


def test_an_energy_manager_restart_fences_out_its_previous_instance(site: RunningSystem, state: Path) -> None:
    """Every start raises the manager's fence: leases from the instance before are refused by the EVSE,
    so two instances can never both drive it (DESIGN §8)."""
    wait(lambda: "energy" in status(site, "evse-1").leases)
    fence_before = _fence(state)
    old_pid = site.pid_of("energy")
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
