"""The real pyserial driver against the board simulator on a real pty: commands and their Acks,
status events, garbage in both directions, timeouts, refusals and a port that goes away."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
from charger.hal.board import Board, BoardLinkError, BoardRefused, BoardTimeout, SerialBoard
from charger.protocols.board_frames import (
    SOF,
    Ack,
    BoardStatus,
    DropReason,
    Heartbeat,
    NackReason,
    Pilot,
    SetRelays,
    crc16_ccitt_false,
    encode,
)
from charger.sim.board import BoardSimulator

from tests.support.boards import eventually, wait_status
from tests.support.resources import no_leaks


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
        driver.reset_faults()  # every board powers on with the watchdog tripped
        yield driver


def charging(board: SerialBoard, sim: BoardSimulator) -> None:
    sim.ev_plug()
    sim.ev_set_state("C")
    board.set_pwm(160)
    board.set_relays(True)


def frame(seq: int, kind: int, payload: bytes) -> bytes:
    body = bytes([len(payload), seq, kind]) + payload
    return bytes([SOF]) + body + crc16_ccitt_false(body).to_bytes(2, "big")


def test_serial_board_satisfies_the_board_protocol(board: SerialBoard) -> None:
    seam: Board = board  # mypy checks the structural match
    assert seam.read_status() is not None


def test_commands_are_applied_and_reported(board: SerialBoard, sim: BoardSimulator) -> None:
    charging(board, sim)
    board.set_lock(True)
    board.heartbeat()
    status = wait_status(board, lambda s: s.relays_closed and s.locked)
    assert (status.pilot, status.pwm_permille, status.watchdog_tripped) == (Pilot.C, 160, False)
    view = sim.ev_view()
    assert (view.duty_percent, view.relays_closed, view.locked) == (16.0, True, True)

    board.set_relays(False)
    board.set_pwm(None)
    board.set_lock(False)
    status = wait_status(board, lambda s: not s.relays_closed and s.pwm_permille is None and not s.locked)
    assert sim.ev_view().duty_percent is None
    assert board.stats().timeouts == 0


def test_poll_returns_changes_not_repeats(board: SerialBoard, sim: BoardSimulator) -> None:
    board.poll(0.0)
    frames = board.stats().frames
    assert board.poll(0.3) == []  # the simulator keeps sending the same status every 50 ms
    assert board.stats().frames > frames
    sim.ev_plug()
    changes = board.poll(2.0)
    assert [s.pilot for s in changes] == [Pilot.B]
    assert board.stats().statuses_lost == 0


def test_garbage_from_the_board_is_counted_and_dropped(board: SerialBoard, sim: BoardSimulator) -> None:
    corrupted = bytearray(encode(Ack(seq=77)))
    corrupted[3] ^= 0x10
    sim.inject(b"line noise \x00\xff")
    sim.inject(bytes(corrupted))
    sim.inject(bytes([SOF, 0xEE]))  # a length no frame has
    sim.inject(frame(1, 0x7E, b"from the future"))  # unknown type, good CRC
    sim.inject(encode(Heartbeat(seq=3)))  # a host frame echoed back is not for us
    sim.inject(frame(2, 0x81, b"Z" + bytes(6)))  # a status with pilot Z
    charging(board, sim)  # and the link keeps working
    wait_status(board, lambda s: s.relays_closed)
    stats = board.stats()
    assert stats.garbage_bytes >= len(b"line noise \x00\xff")
    for reason in (DropReason.BAD_CRC, DropReason.BAD_LENGTH, DropReason.UNKNOWN_TYPE, DropReason.BAD_PAYLOAD):
        assert stats.dropped[reason] >= 1, reason
    assert stats.dropped[DropReason.UNKNOWN_TYPE] >= 2


def test_a_frame_cut_off_by_silence_counts_as_truncated() -> None:
    # A quiet board (status only on change) lets the driver see the line go silent mid-frame.
    with BoardSimulator(status_interval_s=60) as sim, SerialBoard(sim.port) as board:
        wait_status(board, lambda s: True)
        sim.inject(encode(SetRelays(seq=1, closed=True))[:4])
        eventually(lambda: board.poll(0.05) == [] and board.stats().dropped[DropReason.TRUNCATED] == 1)
        board.reset_faults()


def test_garbage_to_the_board_is_counted_and_dropped(board: SerialBoard, sim: BoardSimulator) -> None:
    # A second writer on the same pty slave puts bytes on the line between the driver's frames.
    fd = os.open(sim.port, os.O_WRONLY | os.O_NOCTTY)
    try:
        broken = bytearray(encode(SetRelays(seq=9, closed=True)))
        broken[4] ^= 0x01
        os.write(fd, b"\x00garbage\xff" + bytes(broken) + bytes([SOF, 0xF0]) + frame(4, 0x66, b""))
    finally:
        os.close(fd)
    eventually(lambda: sim.stats().dropped[DropReason.UNKNOWN_TYPE] == 1)
    dropped = sim.stats().dropped
    assert dropped[DropReason.BAD_CRC] >= 1
    assert dropped[DropReason.BAD_LENGTH] >= 1
    charging(board, sim)
    assert wait_status(board, lambda s: s.relays_closed)


def test_no_answer_raises_board_timeout_after_one_retry(board: SerialBoard, sim: BoardSimulator) -> None:
    sim.stop()  # the MCU is dead; the port is still there
    with pytest.raises(BoardTimeout):
        board.heartbeat()
    stats = board.stats()
    assert (stats.retries, stats.timeouts) == (1, 1)
    assert isinstance(BoardTimeout(), TimeoutError)

    sim.start()  # the board reboots: into its safe state, with a fresh status sequence
    status = wait_status(board, lambda s: s.seq == 0)
    assert status.watchdog_tripped
    with pytest.raises(BoardRefused):
        board.set_pwm(160)
    board.reset_faults()
    board.set_pwm(160)
    assert board.stats().board_restarts == 1


def test_a_nack_raises_board_refused_with_the_reason(board: SerialBoard, sim: BoardSimulator) -> None:
    with pytest.raises(BoardRefused) as refused:
        board.set_relays(True)  # no vehicle: pilot A
    assert refused.value.reason is NackReason.INTERLOCK
    assert board.stats().nacks == 1
    board.heartbeat()  # a refusal leaves the link usable


def test_late_answers_are_counted_as_stale(board: SerialBoard, sim: BoardSimulator) -> None:
    sim.inject(encode(Ack(seq=250)))
    board.heartbeat()
    board.heartbeat()
    assert board.stats().stale_answers == 1


def test_commands_from_several_threads_are_serialised(board: SerialBoard, sim: BoardSimulator) -> None:
    acks = sim.stats().acks
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(20):
                board.heartbeat()
                board.poll(0.0)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sim.stats().acks == acks + 80
    assert board.stats().stale_answers == 0


def test_a_port_that_disappears_raises_board_link_error() -> None:
    sim = BoardSimulator()
    sim.start()
    board = SerialBoard(sim.port)
    try:
        wait_status(board, lambda s: True)
        sim.close()  # the USB adapter is pulled
        with pytest.raises(BoardLinkError):
            for _ in range(10):  # the first command may still be written into the dying pty
                board.heartbeat()
    finally:
        board.close()
        sim.close()


def test_open_and_close_errors_are_typed(sim: BoardSimulator) -> None:
    with pytest.raises(BoardLinkError):
        SerialBoard("/dev/no-such-board")
    with pytest.raises(ValueError, match="ack_timeout"):
        SerialBoard(sim.port, ack_timeout=2.0)
    board = SerialBoard(sim.port)
    board.close()
    board.close()  # idempotent
    with pytest.raises(BoardLinkError):
        board.heartbeat()
    with pytest.raises(BoardLinkError):
        board.poll(0.1)


def test_the_first_status_is_an_event(sim: BoardSimulator) -> None:
    with SerialBoard(sim.port) as board:
        assert board.read_status() is None
        assert board.status_age() is None
        (first, *_) = board.poll(2.0)
        assert isinstance(first, BoardStatus)
        assert board.read_status() is not None
        age = board.status_age()
        assert age is not None and age >= 0


def test_a_silent_board_shows_in_the_status_age(board: SerialBoard, sim: BoardSimulator) -> None:
    sim.stop()
    stopped = time.monotonic()
    while time.monotonic() - stopped < 0.3:
        board.poll(0.05)
    age = board.status_age()
    assert age is not None and age >= 0.3


def test_values_the_wire_cannot_carry_fail_before_the_line(board: SerialBoard) -> None:
    with pytest.raises(ValueError, match="duty"):
        board.set_pwm(1001)
    board.set_pwm(1000)  # the link is untouched
