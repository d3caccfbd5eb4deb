"""Helpers for tests that run the real serial drivers against simulators on a pty: fixtures that
check no descriptor or thread outlives a test, a manual clock, and a wait for a board status."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterator

from charger.hal.board import SerialBoard
from charger.protocols.board_frames import BoardStatus


def open_fds() -> int:
    """Descriptors open in this process right now."""
    return len(os.listdir("/proc/self/fd"))


def no_leaks() -> Iterator[None]:
    """Body of a module's autouse fixture: every pty, serial port and simulator thread a test opens
    is closed again by its end. (Per module, not per directory: other tests there may own threads.)"""
    gc.collect()
    fds, threads = open_fds(), threading.active_count()
    yield
    gc.collect()
    assert open_fds() == fds, "the test leaked file descriptors"
    assert threading.active_count() == threads, "the test leaked threads"


class ManualClock:
    """Board time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
