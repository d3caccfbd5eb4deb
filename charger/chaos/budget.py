"""The restart budgets of a station's supervisors, as a fault-injection run spends them.

Every supervisor allows `intensity` restarts of its children within `period` seconds; one more and it
gives up and escalates (OTP semantics): a group restarts whole, and past root's budget the system
halts. A run that kills an actor every few seconds spends these budgets far faster than any real fault
would, and a case that ran on a budget its predecessors had spent would test the escalation instead of
its own target. So the run keeps the books: each kill it makes, and every other restart the kernel
reports (``system.status``), is entered against the supervisor that restarted the child, and before a
kill the run makes sure the budget has room for it (`Budgets.room_in`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Budget", "Budgets"]

_DEFAULT_INTENSITY, _DEFAULT_PERIOD = 1, 5.0
"""charger.topology's defaults for a group that sets neither."""


@dataclass(slots=True)
class Budget:
    supervisor: str
    intensity: int
    period: float
    restarts: list[float] = field(default_factory=list)
    """When each restart of a child happened (monotonic), or was first seen (never earlier than it was)."""

    def spent(self, now: float) -> list[float]:
        return [t for t in self.restarts if t > now - self.period]

    def wait_for_room(self, now: float) -> float:
        """Seconds until one more restart stays within the budget (0: it does now)."""
        recent = sorted(self.spent(now))
        over = len(recent) + 1 - self.intensity
        if over <= 0:
            return 0.0
        return recent[over - 1] + self.period - now


def _groups(group: dict[str, Any], name_key: str) -> Iterator[tuple[dict[str, Any], str]]:
    yield group, str(group.get(name_key))
    for child in group.get("children") or []:
        if isinstance(child, dict):
            yield from _groups(child, "supervisor")


class Budgets:
    """Every supervisor's budget in a topology document (the ``supervision`` section)."""

    def __init__(self, supervision: dict[str, Any], clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.of: dict[str, Budget] = {}
        self.parent: dict[str, str] = {}
        """Child (actor or supervisor) name -> the supervisor that restarts it."""
        for group, name in _groups(supervision, "name"):
            intensity = group.get("intensity", _DEFAULT_INTENSITY)
            self.of[name] = Budget(name, intensity, float(group.get("period", _DEFAULT_PERIOD)))
            for child in group.get("children") or []:
                self.parent[str(child.get("supervisor") if isinstance(child, dict) else child)] = name
        self._seen: dict[str, int] = {}

    def reset(self) -> None:
        """A fresh boot: every budget is whole again, and the kernel counts from zero."""
        for budget in self.of.values():
            budget.restarts.clear()
        self._seen.clear()

    def killed(self, child: str) -> None:
        """The run just killed `child`: its supervisor will restart it now."""
        if child in self.parent:
            self.of[self.parent[child]].restarts.append(self._clock())
            self._seen[child] = self._seen.get(child, 0) + 1

    def observe(self, restarts: dict[str, int]) -> dict[str, int]:
        """Enter the restarts the kernel counted since boot (``system.status``'s ``restarts``) that the
        run did not cause itself; return them (child -> how many)."""
        now, new = self._clock(), {}
        for child, count in restarts.items():
            extra = count - self._seen.get(child, 0)
            if extra > 0 and child in self.parent:
                new[child] = extra
                self.of[self.parent[child]].restarts += [now] * extra
            self._seen[child] = max(count, self._seen.get(child, 0))
        return new

    def room_for(self, child: str) -> tuple[str, float]:
        """The supervisor that would restart `child`, and how long until its budget has room for it."""
        supervisor = self.parent.get(child)
        if supervisor is None:
            return "", 0.0
        return supervisor, self.of[supervisor].wait_for_room(self._clock())
