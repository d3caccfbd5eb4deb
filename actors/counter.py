"""Counter: counts the ticks of the tickers it is wired to, and keeps the count across restarts."""

from __future__ import annotations

import os
from typing import ClassVar

from charger.actors.ticker import TICKS, Tick

from charger.behaviour import Behaviour, handles
from charger.interfaces import Command, Interface, Requirement
from charger.messages import message

__all__ = ["COUNTING", "Count", "Counter", "GetCount"]


@message
class GetCount:
    """Ask a counter for its total."""


@message
class Count:
    """A counter's total."""

    total: int
    restarts_survived: int
    """How many times the count was restored from the journal."""


COUNTING = Interface(name="counting", commands=(Command(GetCount, Count),))


class Counter(Behaviour):
    description = "Counts Tick vars; the total survives restarts (journal under the state dir)."
    provides = {"count": COUNTING}
    requires = {"source": Requirement(interface=TICKS, min_connections=1, max_connections=8)}
    config_schema: ClassVar = {"type": "object", "additionalProperties": False, "properties": {}}

    def init(self) -> None:
        self._journal = os.path.join(self.state_dir, f"{self.name}.count")
        self.total, self.restored = 0, 0
        if os.path.exists(self._journal):
            with open(self._journal, encoding="ascii") as f:
                self.total, self.restored = int(f.read() or 0), 1
        for source in self.connections["source"]:
            self.subscribe(source, Tick)

    @handles(Tick)
    def on_tick(self, msg: Tick) -> None:
        self.total += 1
        tmp = self._journal + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(str(self.total))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._journal)

    @handles(GetCount)
    def on_get_count(self, msg: GetCount) -> Count:
        return Count(total=self.total, restarts_survived=self.restored)
