"""Ticker: publishes a numbered tick at a fixed period. A small demo of vars and timers."""

from __future__ import annotations

from typing import ClassVar

from charger.behaviour import Behaviour
from charger.interfaces import Interface
from charger.messages import message

__all__ = ["TICKS", "Tick", "Ticker"]


@message
class Tick:
    """One tick from a ticker."""

    source: str
    """Name of the ticker instance."""
    seq: int
    """1 for the first tick after (re)start, counting up."""


TICKS = Interface(name="ticks", description="A periodic heartbeat.", vars=(Tick,))


class Ticker(Behaviour):
    description = "Publishes Tick every period_s seconds."
    provides = {"ticks": TICKS}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "period_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 1.0,
                "description": "Seconds between ticks.",
            },
        },
    }

    def init(self) -> None:
        self.seq = 0
        self.start_timer(self.config["period_s"], self._tick, repeat=True)

    def _tick(self) -> None:
        self.seq += 1
        self.publish(Tick(source=self.name, seq=self.seq))
