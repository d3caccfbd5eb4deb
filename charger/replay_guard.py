"""Replay resistance for authenticated transport frames (inside one site).

Every frame carries, under its MAC: the sender process's random id, a sequence number per
(sender, destination), the destination's address and the time it was sealed. A receiver accepts
a frame only when it was sealed recently and its number is new for that sender and destination:

- numbers within the last `WINDOW` of the highest seen are tracked one by one (a bitmap, as in
  IPsec's anti-replay window), so the little reordering Thespian's retries cause is accepted,
  and a number seen before is refused;
- the age limit bounds how long a receiver must remember a sender: a frame older than
  `max_age_s` is refused whatever its number, and a sender silent for three times that long is
  forgotten.

What this does not cover: a receiver process that restarts on the same address (the admin, on
its fixed port) forgets what it saw, so a frame captured less than `max_age_s` before the restart
can be replayed to the new process once. Thespian re-sends a frame unchanged when it saw no ACK;
if the first copy did arrive, the copy is refused as a replay and the sender sees a failed send
(Thespian delivers it at most once instead of at least once).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["WINDOW", "ReplayGuard", "Sequencer"]

WINDOW = 1024
"""How far behind the highest number seen a frame may arrive and still be accepted (once)."""

SENDER_ID_BYTES = 8
_WINDOW_MASK = (1 << WINDOW) - 1


class Sequencer:
    """Numbers the frames this process sends: a random sender id and a counter per destination.

    A forked child must call `reset` (charger.frame_auth does, at fork): it would otherwise send
    under its parent's id and numbers.
    """

    def __init__(self) -> None:
        self.sender = b""
        self._counters: dict[tuple[bytes, int], Iterator[int]] = {}
        self.reset()

    def reset(self) -> None:
        self.sender = os.urandom(SENDER_ID_BYTES)
        self._counters = {}

    def next(self, dest_ip: bytes, dest_port: int) -> int:
        counter = self._counters.get((dest_ip, dest_port))
        if counter is None:
            counter = self._counters.setdefault((dest_ip, dest_port), itertools.count(1))
        return next(counter)


@dataclass(slots=True)
class _Seen:
    highest: int
    bits: int
    """Bit k set: number ``highest - k`` was accepted."""
    last_seen: float


class ReplayGuard:
    """Remembers which (sender, destination, number) this process accepted recently."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.time) -> None:
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self.max_age_s = max_age_s
        self._clock = clock
        self._seen: dict[tuple[bytes, bytes, int], _Seen] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def reset(self) -> None:
        """Forget everything (a forked child is a different receiver)."""
        self._seen = {}
        self._lock = threading.Lock()  # the parent's lock may have been held by a thread at the fork

    def check(self, sender: bytes, dest_ip: bytes, dest_port: int, number: int, sealed_at_ms: int) -> str | None:
        """Accept (None) or refuse (the reason) one frame, recording it when accepted."""
        now = self._clock()
        if abs(now - sealed_at_ms / 1000.0) > self.max_age_s:
            return "stale"
        if number < 1:
            return "bad sequence number"
        key = (sender, dest_ip, dest_port)
        with self._lock:
            self._prune(now)
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = _Seen(number, 1, now)
                return None
            if number > seen.highest:
                ahead = number - seen.highest
                seen.bits = ((seen.bits << ahead) | 1) & _WINDOW_MASK if ahead < WINDOW else 1
                seen.highest = number
            else:
                behind = seen.highest - number
                if behind >= WINDOW or seen.bits >> behind & 1:
                    return "replay"
                seen.bits |= 1 << behind
            seen.last_seen = now
        return None

    def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + self.max_age_s
        forget_before = now - 3 * self.max_age_s
        for key in [k for k, v in self._seen.items() if v.last_seen < forget_before]:
            del self._seen[key]
