"""Helpers for tests that run the real serial board driver against its simulator on a pty: waits for a
board status and for simulator state (leak checks and the manual clock are in `tests.support.resources`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from charger.hal.board import SerialBoard
from charger.protocols.board_frames import BoardStatus


def wait_status(board: SerialBoard, want: Callable[[BoardStatus], bool], timeout: float = 2.0) -> BoardStatus:
    """Poll the real driver until the board reports a status that `want` accepts."""
    deadline = time.monotonic() + timeout
    while True:
        status = board.read_status()
        if status is not None and want(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching board status within {timeout} s; last: {status}")
        board.poll(0.05)


def eventually(check: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until `check()` holds (for state that no driver call reports)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)
