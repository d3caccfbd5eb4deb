"""BoardDriver in a real actor system, against a SilRig's board on a pty (and against a simulator the
test holds itself, where the test must reach into the board: garbage on the line, a power cycle).

What is checked: the pilot the car presents reaches BoardState; SetBoardOutputs reaches the board and
the car reacts (C, then current and meter energy once the relays close); a killed rig makes the driver
report offline and then online again behind the rig's new pty; garbage is dropped; after a board
restart PWM and lock come back but the relays stay open.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from charger.actors.charging import GetRigState, InjectSimFault, PlugCar, RigState, SetBoardOutputs, UnplugCar
from charger.hal.meter import ModbusMeter
from charger.protocols.board_frames import BoardStatus, Pilot, encode
from charger.protocols.modbus_maps import SDM630
from charger.sim.board import BoardSimulator

from charger.errors import Rejected
from charger.testing import RunningSystem
from tests.conftest import group, worker
from tests.support.recorder import GetRecorded

RECORDER = "tests.support.recorder:Recorder"
CHARGE = "iec_wait_pwr_ready;draw_power_regulated 16,3"


def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)


def board_states(system: RunningSystem, since: int = 0) -> list[dict[str, Any]]:
    recorded = system.client.call("rec", GetRecorded(tag="BoardState", since=since))
    return [fields for _index, _tag, fields, _at in recorded.items]


def latest_board(system: RunningSystem, **want: Any) -> dict[str, Any] | None:
    """The latest BoardState if it has every field in `want`, else None."""
    states = board_states(system)
    if states and all(states[-1][k] == v for k, v in want.items()):
        return states[-1]
    return None


def rig_state(system: RunningSystem) -> RigState:
    state = system.client.call("rig", GetRigState())
    assert isinstance(state, RigState)
    return state


def outputs(pwm: int | None, relays: bool = False, locked: bool = False) -> SetBoardOutputs:
    return SetBoardOutputs(pwm_permille=pwm, relays_closed=relays, locked=locked)


def rig_tree(tmp_path: Path) -> Any:
    return group(
        "root",
        worker("rig", actor="SilRig", config={"port_file": str(tmp_path / "meter.port")}),
        worker("board", actor="BoardDriver", config={"port": "rig.board"}),
        worker("rec", actor=RECORDER, config={"subscribe": {"board": ["BoardState"], "rig": ["RigState"]}}),
        intensity=20,
    )


def test_pilot_pwm_relays_and_energy_through_the_rig(start_tree, tmp_path):
    with start_tree(rig_tree(tmp_path)) as system:
        eventually(lambda: latest_board(system, online=True, pilot="A"), what="board online, no car")
        system.client.call("rig", PlugCar(script=CHARGE))
        eventually(lambda: latest_board(system, pilot="B"), what="pilot B after PlugCar")

        system.client.call("board", outputs(533, locked=True))
        eventually(lambda: latest_board(system, pilot="C", pwm_permille=533, locked=True), what="car in C")
        assert rig_state(system).draw_current_a == 0  # no current before the relays close

        system.client.call("board", outputs(533, relays=True, locked=True))
        eventually(lambda: latest_board(system, relays_closed=True), what="relays closed")
        eventually(lambda: rig_state(system).draw_current_a == 16, what="car drawing 16 A")
        meter = ModbusMeter.tcp("127.0.0.1", SDM630, port=int((tmp_path / "meter.port").read_text()))
        try:
            first = meter.read()
            assert first.power_w == pytest.approx(16 * 230 * 3)
            eventually(lambda: meter.read().energy_import_wh > first.energy_import_wh, what="energy rising")
        finally:
            meter.close()

        system.client.call("board", outputs(None, locked=False))  # stop: relays open before PWM stops
        eventually(lambda: latest_board(system, relays_closed=False, pwm_permille=None, locked=False), what="off")
        eventually(lambda: rig_state(system).car_pilot == "B", what="car back in B")


def test_injected_faults_reach_board_state(start_tree, tmp_path):
    with start_tree(rig_tree(tmp_path)) as system:
        eventually(lambda: latest_board(system, online=True), what="board online")
        system.client.call("rig", PlugCar(script=CHARGE))
        eventually(lambda: latest_board(system, pilot="B"), what="pilot B")

        system.client.call("rig", InjectSimFault(fault="lock_failure"))
        system.client.call("board", outputs(533, locked=True))  # acknowledged: only the feedback tells
        assert eventually(lambda: latest_board(system, pilot="C", pwm_permille=533), what="C")["locked"] is False
        system.client.call("rig", InjectSimFault(fault="lock_failure", active=False))
        system.client.call("board", outputs(533, relays=True, locked=True))  # resent: the lock is tried again
        eventually(lambda: latest_board(system, locked=True, relays_closed=True), what="locked and closed")

        system.client.call("rig", InjectSimFault(fault="diode_failure"))
        eventually(lambda: latest_board(system, diode_fault=True), what="diode fault")
        system.client.call("rig", InjectSimFault(fault="diode_failure", active=False))
        eventually(lambda: latest_board(system, diode_fault=False), what="diode fault gone")

        system.client.call("rig", InjectSimFault(fault="rcd"))
        eventually(lambda: latest_board(system, rcd_tripped=True, relays_closed=False, rcd_milliamps=30), what="trip")
        with pytest.raises(Rejected, match="FAULT_ACTIVE"):
            system.client.call("board", outputs(533, relays=True, locked=True))
        system.client.call("rig", InjectSimFault(fault="pilot_error_e"))
        eventually(lambda: latest_board(system, pilot="E"), what="pilot E")

        system.client.call("rig", InjectSimFault(fault="pilot_error_e", active=False))
        system.client.call("rig", UnplugCar())  # the driver clears the latched trip once the car is gone
        eventually(lambda: latest_board(system, pilot="A", rcd_tripped=False, rcd_milliamps=0), what="trip cleared")


def test_a_killed_rig_takes_the_board_offline_and_back(start_tree, tmp_path):
    with start_tree(rig_tree(tmp_path)) as system:
        eventually(lambda: latest_board(system, online=True), what="board online")
        system.client.call("rig", PlugCar(script=CHARGE))
        eventually(lambda: latest_board(system, pilot="B"), what="pilot B")
        system.client.call("board", outputs(533, locked=True))
        eventually(lambda: latest_board(system, pilot="C"), what="car in C")
        system.client.call("board", outputs(533, relays=True, locked=True))
        eventually(lambda: rig_state(system).draw_current_a > 0, what="charging")
        before = eventually(lambda: rig_state(system).meter_energy_wh, what="some energy")
        mark = len(board_states(system))

        os.kill(system.pid_of("rig"), signal.SIGKILL)
        eventually(lambda: any(not s["online"] for s in board_states(system, mark)), what="offline reported")
        back = eventually(
            lambda: latest_board(system, online=True, board_restarts=1, pwm_permille=533, locked=True),
            what="online again with PWM and lock restored",
        )
        assert not back["relays_closed"]  # relays wait for the EVSE manager to ask again
        assert rig_state(system).meter_energy_wh >= before  # the meter never runs backwards
        with pytest.raises(Rejected, match="INTERLOCK"):  # the new rig's car is not plugged in
            system.client.call("board", outputs(533, relays=True, locked=True))
        assert "board" not in system.status().restarts


def test_garbage_power_cycles_and_refusals_on_a_board_the_test_holds(start_tree, tmp_path):
    tree = group(
        "root",
        worker("board", actor="BoardDriver", config={"port": "sim.board"}),
        worker("rec", actor=RECORDER, config={"subscribe": {"board": ["BoardState"]}}),
    )
    with start_tree(tree) as system:
        eventually(lambda: latest_board(system, online=False), what="offline before the port exists")
        with pytest.raises(Rejected, match="offline"):
            system.client.call("board", outputs(533))
        with BoardSimulator(link=tmp_path / "sim.board") as sim:
            eventually(lambda: latest_board(system, online=True, watchdog_tripped=False), what="online and reset")

            fake = BoardStatus(
                seq=7,
                pilot=Pilot.C,
                pwm_permille=None,
                relays_closed=True,
                rcd_milliamps=0,
                locked=True,
                watchdog_tripped=False,
            )
            frame = encode(fake)
            corrupted = frame[:-1] + bytes([frame[-1] ^ 0xFF])  # a status with a bad CRC must not count
            for junk in (b"\x00\xff garbage \x7e\x7e", corrupted, random.Random(1).randbytes(512)):
                sim.inject(junk)
            sim.ev_plug()
            sim.ev_set_state("C")
            system.client.call("board", outputs(533, locked=True))
            assert sim.status().pwm_permille == 533 and sim.status().locked
            with pytest.raises(Rejected, match="pwm_permille"):
                system.client.call("board", outputs(1001))

            system.client.call("board", outputs(533, relays=True, locked=True))
            assert sim.ev_view().relays_closed
            sim.stop()  # power cycle: the board forgets PWM and relays and boots with its watchdog tripped
            sim.start()
            eventually(lambda: latest_board(system, online=True, board_restarts=1, pwm_permille=533), what="restored")
            assert sim.status().locked and not sim.status().relays_closed
            assert sim.stats().garbage_bytes == 0  # the host side sent nothing but frames
        assert "board" not in system.status().restarts
