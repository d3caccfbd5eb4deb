"""Lock-failure injection on the board simulator, seen through the real serial driver: a jammed
lock is still Acked (the firmware drove the actuator) but its feedback no longer follows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from charger.hal.board import SerialBoard
from charger.sim.board import BoardSimulator

from tests.support.boards import wait_status
from tests.support.resources import no_leaks


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks(settle=0.0)


def test_a_jammed_lock_keeps_its_feedback_until_freed() -> None:
    with BoardSimulator() as sim, SerialBoard(sim.port) as board:
        wait_status(board, lambda s: True)
        board.reset_faults()
        board.set_lock(True)
        wait_status(board, lambda s: s.locked)

        sim.jam_lock(True)
        board.set_lock(False)  # acknowledged, not refused
        assert sim.status().locked and sim.ev_view().locked

        sim.jam_lock(False)
        board.set_lock(False)
        wait_status(board, lambda s: not s.locked)


def test_a_lock_jammed_open_does_not_lock() -> None:
    with BoardSimulator() as sim, SerialBoard(sim.port) as board:
        wait_status(board, lambda s: True)
        board.reset_faults()
        sim.jam_lock(True)
        board.set_lock(True)
        assert not sim.status().locked
