"""Test resources shared by the driver and simulator tests: a check that no descriptor or thread outlives a
test, and a clock that moves only when the test says so."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator


def open_fds() -> int:
    """Descriptors open in this process right now."""
    return len(os.listdir("/proc/self/fd"))


def no_leaks(settle: float = 2.0) -> Iterator[None]:
    """Body of a module's autouse fixture: every thread, socket, serial port and pty a test opens is gone
    by its end. (Per module, not per directory: other tests there may own threads.)

    Counts are compared after up to `settle` seconds, since a joined thread may still be listed for a moment.
    """
    gc.collect()
    fds, threads = open_fds(), threading.active_count()
    yield
    deadline = time.monotonic() + settle
    while True:
        gc.collect()
        if open_fds() == fds and threading.active_count() == threads:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert open_fds() == fds, f"the test leaked file descriptors: {open_fds()} open, {fds} before"
    assert threading.active_count() == threads, f"the test leaked threads: {threading.enumerate()}"


class ManualClock:
    """Monotonic (or board) time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
