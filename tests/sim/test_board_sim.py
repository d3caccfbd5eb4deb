"""The board simulator's model, driven through the real serial driver: pilot from the vehicle side,
PWM and relays as the car sees them, the interlock, the RCD, welded relays and THE WATCHDOG."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from charger.hal.board import BoardRefused, SerialBoard
from charger.protocols.board_frames import (
    BOARD_TO_HOST,
    Ack,
    BoardStatus,
    DropReason,
    FrameDecoder,
    Heartbeat,
    NackReason,
    Pilot,
    encode,
)
from charger.sim.board import BoardSimulator

from tests.support.boards import eventually, wait_status
from tests.support.resources import ManualClock, no_leaks


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks(settle=0.0)


@pytest.fixture
def sim() -> Iterator[BoardSimulator]:
    with BoardSimulator() as board_sim:
        yield board_sim


@pytest.fixture
def board(sim: BoardSimulator) -> Iterator[SerialBoard]:
    with SerialBoard(sim.port) as driver:
        wait_status(driver, lambda s: True)
        driver.reset_faults()
        yield driver


def start_charging(board: SerialBoard, sim: BoardSimulator) -> None:
    sim.ev_plug()
    sim.ev_set_state("C")
    board.set_pwm(160)
    board.set_relays(True)
    assert sim.ev_view().relays_closed


def refused(reason: NackReason) -> pytest.RaisesExc[BoardRefused]:
    return pytest.raises(BoardRefused, match=reason.name)


def test_the_board_powers_on_in_its_safe_state(sim: BoardSimulator) -> None:
    with SerialBoard(sim.port) as board:
        first = wait_status(board, lambda s: True)
        assert first == BoardStatus(
            seq=0,
            pilot=Pilot.A,
            pwm_permille=None,
            relays_closed=False,
            rcd_milliamps=0,
            locked=False,
            watchdog_tripped=True,
        )
        with refused(NackReason.FAULT_ACTIVE):
            board.set_pwm(160)
        board.set_pwm(None)  # stopping PWM is always allowed
        board.reset_faults()
        board.set_pwm(160)


def test_the_pilot_follows_the_vehicle_and_the_pwm(board: SerialBoard, sim: BoardSimulator) -> None:
    def pilot() -> Pilot:
        return wait_status(board, lambda s: s == sim.status()).pilot

    assert pilot() is Pilot.A
    sim.ev_plug()
    assert pilot() is Pilot.B
    for state in ("C", "D", "B"):
        sim.ev_set_state(state)
        assert pilot() is Pilot(state)
    sim.ev_error_e()
    assert pilot() is Pilot.E
    sim.ev_set_state("C")
    assert pilot() is Pilot.C
    board.set_pwm(0)  # the board drives -12 V: F, whatever the vehicle presents
    assert pilot() is Pilot.F
    assert sim.ev_view().duty_percent == 0.0
    board.set_pwm(None)
    sim.ev_unplug()
    assert pilot() is Pilot.A


def test_the_vehicle_api_refuses_nonsense(sim: BoardSimulator) -> None:
    with pytest.raises(RuntimeError, match="ev_plug"):
        sim.ev_set_state("C")
    sim.ev_plug()
    with pytest.raises(ValueError, match="B, C or D"):
        sim.ev_set_state("A")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="magnitude"):
        sim.ev_rcd_current(-1)


def test_the_car_sees_pwm_power_and_lock(board: SerialBoard, sim: BoardSimulator) -> None:
    assert sim.ev_view().duty_percent is None
    start_charging(board, sim)
    board.set_lock(True)
    view = sim.ev_view()
    assert (view.duty_percent, view.relays_closed, view.locked) == (16.0, True, True)
    board.set_pwm(53)
    assert sim.ev_view().duty_percent == 5.3


def test_relays_close_only_in_c_or_d_with_pwm(board: SerialBoard, sim: BoardSimulator) -> None:
    with refused(NackReason.INTERLOCK):
        board.set_relays(True)  # nothing plugged
    sim.ev_plug()
    sim.ev_set_state("C")
    with refused(NackReason.INTERLOCK):
        board.set_relays(True)  # no PWM
    board.set_pwm(160)
    board.set_relays(True)
    sim.ev_set_state("B")  # the vehicle stops asking for power: the board opens on its own
    status = wait_status(board, lambda s: s.pilot is Pilot.B)
    assert not status.relays_closed
    assert not sim.ev_view().relays_closed


def test_the_watchdog_opens_the_relays_when_heartbeats_stop() -> None:
    with BoardSimulator(watchdog_s=0.5) as sim, SerialBoard(sim.port) as board:
        wait_status(board, lambda s: True)
        board.reset_faults()
        start_charging(board, sim)
        # The host goes quiet.
        status = wait_status(board, lambda s: s.watchdog_tripped, timeout=3.0)
        assert not status.relays_closed
        assert status.pwm_permille is None
        view = sim.ev_view()
        assert not view.relays_closed
        assert view.duty_percent is None
        assert sim.stats().watchdog_trips == 1
        with refused(NackReason.FAULT_ACTIVE):
            board.set_relays(True)
        board.reset_faults()
        board.set_pwm(160)
        board.set_relays(True)


def test_the_watchdog_holds_while_host_frames_flow() -> None:
    clock = ManualClock()  # board time moves only here, so a slow machine cannot trip it
    with BoardSimulator(watchdog_s=0.5, clock=clock) as sim, SerialBoard(sim.port) as board:
        wait_status(board, lambda s: True)
        board.reset_faults()
        start_charging(board, sim)
        for _ in range(10):  # 3 s of board time, 0.3 s between frames
            clock.advance(0.3)
            board.heartbeat()
        clock.advance(0.3)
        board.set_lock(True)  # any command feeds the watchdog, not only heartbeats
        clock.advance(0.3)
        board.heartbeat()
        status = sim.status()
        assert not status.watchdog_tripped
        assert status.relays_closed
        assert sim.stats().watchdog_trips == 0

        clock.advance(0.6)  # now nothing arrives for longer than watchdog_s
        status = wait_status(board, lambda s: s.watchdog_tripped)
        assert not status.relays_closed
        assert status.locked  # the lock is left where it was; the host decides after recovery


def test_residual_current_above_6_ma_dc_opens_the_relays(board: SerialBoard, sim: BoardSimulator) -> None:
    start_charging(board, sim)
    sim.ev_rcd_current(5.0)
    status = wait_status(board, lambda s: s.rcd_milliamps == 5)
    assert status.relays_closed and not status.rcd_tripped
    sim.ev_rcd_current(7.0)
    status = wait_status(board, lambda s: s.rcd_tripped)
    assert not status.relays_closed
    assert not sim.ev_view().relays_closed
    with refused(NackReason.FAULT_ACTIVE):
        board.set_relays(True)
    with refused(NackReason.NOT_UNPLUGGED):
        board.reset_faults()  # only while nothing is plugged in
    sim.ev_unplug()
    board.reset_faults()
    status = wait_status(board, lambda s: not s.rcd_tripped)
    assert status.rcd_milliamps == 0
    assert sim.stats().rcd_trips == 1


def test_ac_residual_current_trips_above_30_ma(board: SerialBoard, sim: BoardSimulator) -> None:
    start_charging(board, sim)
    sim.ev_rcd_current(20.0, dc=False)
    assert wait_status(board, lambda s: s.rcd_milliamps == 20).relays_closed
    sim.ev_rcd_current(31.0, dc=False)
    assert not wait_status(board, lambda s: s.rcd_tripped).relays_closed


def test_a_missing_diode_shows_while_pwm_runs(board: SerialBoard, sim: BoardSimulator) -> None:
    sim.ev_plug()
    sim.ev_diode_fail(True)
    board.set_pwm(160)
    assert wait_status(board, lambda s: s.pwm_permille == 160).diode_fault
    board.set_pwm(None)  # without PWM there is no negative half to measure
    assert not wait_status(board, lambda s: s.pwm_permille is None).diode_fault
    board.set_pwm(160)
    sim.ev_unplug()  # the failed diode leaves with the car
    assert not wait_status(board, lambda s: s.pilot is Pilot.A).diode_fault


def test_a_welded_relay_stays_closed_and_is_reported(board: SerialBoard, sim: BoardSimulator) -> None:
    start_charging(board, sim)
    sim.weld_relays(True)
    board.set_relays(False)
    status = wait_status(board, lambda s: s.relay_welded)
    assert status.relays_closed
    assert sim.ev_view().relays_closed
    sim.weld_relays(False)
    assert not wait_status(board, lambda s: not s.relay_welded).relays_closed


def test_a_board_without_a_lock_says_so() -> None:
    with BoardSimulator(has_lock=False) as sim, SerialBoard(sim.port) as board, refused(NackReason.UNSUPPORTED):
        board.set_lock(True)


def test_a_symlink_names_the_port(tmp_path: Path) -> None:
    link = tmp_path / "board0"
    with BoardSimulator(link=link) as sim:
        assert sim.port == str(link)
        assert os.readlink(link).startswith("/dev/pts/")
        with SerialBoard(sim.port) as board:
            assert wait_status(board, lambda s: True).pilot is Pilot.A
    assert not link.exists()


def test_a_host_frame_cut_short_is_dropped_and_the_board_keeps_answering(sim: BoardSimulator) -> None:
    # A raw client, to put exactly the bytes we want on the line.
    with serial.Serial(sim.port, 115200, timeout=0.05) as raw:
        decoder = FrameDecoder(BOARD_TO_HOST)
        answers: list[object] = []

        def answered(seq: int) -> bool:
            answers.extend(decoder.feed(raw.read(256)))
            return Ack(seq=seq) in answers

        raw.write(encode(Heartbeat(seq=42)))
        eventually(lambda: answered(42))
        raw.write(encode(Heartbeat(seq=43))[:4])  # the host dies mid-frame
        eventually(lambda: sim.stats().dropped[DropReason.TRUNCATED] == 1)
        raw.write(encode(Heartbeat(seq=44)))
        eventually(lambda: answered(44))
        assert Ack(seq=43) not in answers


def test_stop_start_and_close_are_safe_to_repeat() -> None:
    sim = BoardSimulator()
    sim.start()
    sim.start()
    sim.stop()
    sim.stop()
    sim.start()  # a second power-on
    sim.close()
    sim.close()


def test_the_observer_sees_every_relay_pilot_and_pwm_change_once() -> None:
    seen: list[tuple[bool, str, int | None, bool]] = []
    observe = lambda _t, s: seen.append((s.relays_closed, s.pilot.value, s.pwm_permille, s.watchdog_tripped))  # noqa: E731
    with BoardSimulator(observer=observe) as sim, SerialBoard(sim.port) as board:
        wait_status(board, lambda s: True)
        board.reset_faults()
        start_charging(board, sim)
        sim.ev_set_state("B")  # the car stops asking: the board opens the relays in the same step
    assert seen[0] == (False, "A", None, True)  # powered on into the safe state
    assert (True, "C", 160, False) in seen
    assert seen[seen.index((True, "C", 160, False)) + 1] == (False, "B", 160, False)
    assert len(seen) == len(set(seen))  # a change is reported once, not on every tick
