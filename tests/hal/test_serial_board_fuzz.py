"""Fuzzed serial lines between `SerialBoard` and the simulated board firmware over a real pty: garbage
in either direction is counted and dropped by the receiving decoder, and the next command is still
applied and acknowledged. The error channel of a serial line is the drop counters (`LinkStats`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from charger.hal.board import SerialBoard
from charger.protocols.board_frames import (
    BOARD_TO_HOST,
    HOST_TO_BOARD,
    SOF,
    Ack,
    BoardMessage,
    BoardStatus,
    DropReason,
    Heartbeat,
    Nack,
    NackReason,
    Pilot,
    SetPwm,
    SetRelays,
    crc16_ccitt_false,
    encode,
)
from charger.sim.board import BoardSimulator
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.boards import wait_status
from tests.support.fuzz import live
from tests.support.resources import no_leaks


def framed(seq: int, kind: int, payload: bytes) -> bytes:
    """A frame with a good CRC around whatever type and payload."""
    body = bytes([len(payload), seq, kind]) + payload
    return bytes([SOF]) + body + crc16_ccitt_false(body).to_bytes(2, "big")


def _parses(kind: int, payload: bytes) -> bool:
    for cls in (*HOST_TO_BOARD, *BOARD_TO_HOST):
        if kind == cls.TYPE:
            try:
                cls.parse(0, payload)
            except ValueError:
                return False
            return True
    return False


# Whole frames of the receiver's own types would be real messages (a forged Ack, a forged command),
# which no line protocol without authentication can tell from genuine ones: left out on purpose.
def noise(valid_for_receiver: tuple[type, ...], foreign: tuple[BoardMessage, ...]) -> st.SearchStrategy[bytes]:
    own_types = sorted(cls.TYPE for cls in valid_for_receiver)
    whole = st.sampled_from(foreign).map(encode)

    @st.composite
    def corrupted(draw: st.DrawFn) -> bytes:
        frame = bytearray(draw(whole))
        frame[draw(st.integers(2, len(frame) - 1))] ^= draw(st.integers(1, 255))
        return bytes(frame)

    @st.composite
    def bad_payload(draw: st.DrawFn) -> bytes:
        kind = draw(st.sampled_from(own_types))
        payload = draw(st.binary(max_size=32).filter(lambda p: not _parses(kind, p)))
        return framed(draw(st.integers(0, 255)), kind, payload)

    unknown = st.builds(
        framed,
        st.integers(0, 255),
        st.integers(0, 255).filter(lambda k: k not in own_types),
        st.binary(max_size=32),
    )
    cut = st.tuples(whole, st.integers(1, 5)).map(lambda t: t[0][: -t[1]])
    pieces = st.binary(min_size=1, max_size=64) | corrupted() | bad_payload() | unknown | cut | whole
    return st.lists(pieces, min_size=1, max_size=6).map(b"".join)


_STATUS = BoardStatus(
    seq=1, pilot=Pilot.B, pwm_permille=None, relays_closed=False, rcd_milliamps=0, locked=False, watchdog_tripped=False
)
to_host = noise(BOARD_TO_HOST, (Heartbeat(seq=1), SetPwm(seq=2, duty_permille=100), SetRelays(seq=3, closed=True)))
to_board = noise(HOST_TO_BOARD, (Ack(seq=1), Nack(seq=2, reason=NackReason.INTERLOCK), _STATUS))


@pytest.fixture(scope="module", autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks(settle=1.0)


@pytest.fixture(scope="module")
def line() -> Iterator[tuple[BoardSimulator, SerialBoard]]:
    with BoardSimulator() as sim, SerialBoard(sim.port) as board:
        wait_status(board, lambda s: True)
        board.reset_faults()
        yield sim, board


@live(500)
@given(towards_host=to_host, towards_board=to_board, duty=st.integers(0, 1000) | st.none())
@example(towards_host=bytes([SOF, 32]), towards_board=bytes([SOF, 32]), duty=50)  # a long announced frame cut off
def test_garbage_both_ways_is_dropped_and_the_next_command_is_applied(
    line: tuple[BoardSimulator, SerialBoard], towards_host: bytes, towards_board: bytes, duty: int | None
) -> None:
    sim, board = line
    before = board.stats()
    sim.inject(towards_host)
    fd = os.open(sim.port, os.O_WRONLY | os.O_NOCTTY)  # a second writer on the slave: noise towards the board
    try:
        os.write(fd, towards_board)
    finally:
        os.close(fd)
    board.reset_faults()  # the commands still get through: Acked, within the one retry the driver has
    board.set_pwm(duty)
    assert wait_status(board, lambda s: s.pwm_permille == duty).pwm_permille == duty
    after = board.stats()
    assert after.timeouts == before.timeouts and after.nacks == before.nacks
    dropped = sum(after.dropped.values()) - sum(before.dropped.values())
    assert dropped + after.garbage_bytes - before.garbage_bytes > 0, "the garbage went unnoticed"


def test_after_the_fuzzing_both_ends_counted_what_they_dropped(line: tuple[BoardSimulator, SerialBoard]) -> None:
    sim, board = line
    for stats in (board.stats().dropped, sim.stats().dropped):
        for reason in (DropReason.BAD_CRC, DropReason.BAD_PAYLOAD, DropReason.UNKNOWN_TYPE):
            assert stats[reason] > 0, (reason, stats)
    assert board.stats().board_restarts == 0
