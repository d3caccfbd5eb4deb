"""OTP's restart intensity: a sliding window of restart times."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["RestartWindow"]


class RestartWindow:
    """More than `intensity` restarts within `period` seconds means: stop and escalate.

    Restarts multiply across levels of the tree, so an embedded system should tolerate only a few
    before escalating (OTP design principles, sup_princ).
    """

    def __init__(self, intensity: int, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._intensity = intensity
        self._period = period
        self._clock = clock
        self._stamps: deque[float] = deque()

    def allow_restart(self) -> bool:
        now = self._clock()
        self._stamps.append(now)
        while self._stamps and self._stamps[0] < now - self._period:
            self._stamps.popleft()
        return len(self._stamps) <= self._intensity

    @property
    def recent(self) -> int:
        """How many restarts fall inside the current window."""
        return len(self._stamps)
