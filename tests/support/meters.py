"""Helpers for the Modbus meter tests: a leak check for servers, clients and ptys, a free port, and a
manual clock for the simulator's energy integration."""

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
    """Body of an autouse fixture: every thread, socket and pty a test opens is gone by its end.

    Counts are compared after a short settle, since a joined thread may still be listed for a moment.
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
    """Monotonic time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
