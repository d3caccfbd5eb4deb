"""LoadShare: keeps a group of connectors under one supply fuse by granting current leases.

Each connector holds a lease valid for a few periods, renewed before it lapses and replaced as soon
as its share changes. A connector without a transaction is granted the minimum PWM current (6 A),
so a car that plugs in can start at once without pushing the sum over the fuse; the rest is split
evenly among the connectors with a transaction. If even that does not fit, the connectors that
started first keep 6 A and the others are paused (0 A).
Should this actor stop, the leases lapse and every connector falls back to its own failsafe
current (DESIGN §7), which the topology must size to fit the fuse.

This is the simple static policy; the optimizing energy manager replaces it in a park.
"""

from __future__ import annotations

import functools
import math
import time
from typing import ClassVar

from charger.actors.charging import (
    EVSE_MANAGER,
    ChargingSessionEvent,
    ConnectorStatus,
    GetConnectorStatus,
    GrantLimitLease,
)
from charger.protocols.evse_events import TRANSACTION_STATES
from charger.protocols.iec61851 import MIN_PWM_CURRENT_A

from charger.behaviour import Behaviour, handles
from charger.interfaces import Requirement

__all__ = ["LoadShare", "share_fuse"]

_TRANSACTION_STATES = frozenset(state.value for state in TRANSACTION_STATES)


def share_fuse(fuse_a: float, connectors: list[str], in_transaction: list[str]) -> dict[str, float]:
    """Amps per phase for each connector; the sum never exceeds `fuse_a`. `in_transaction` is ordered by
    who started first."""
    idle = [c for c in connectors if c not in in_transaction]
    grants = dict.fromkeys(connectors, 0.0)
    budget = fuse_a
    for name in idle:
        if budget >= MIN_PWM_CURRENT_A:
            grants[name], budget = MIN_PWM_CURRENT_A, budget - MIN_PWM_CURRENT_A
    active = [c for c in in_transaction if c in grants]
    fitting = active[: int(budget // MIN_PWM_CURRENT_A)]
    for name in fitting:
        grants[name] = math.floor(budget / len(fitting) * 10 + 1e-9) / 10  # down to 0.1 A: never over the fuse
    return grants


class LoadShare(Behaviour):
    description = "Splits one supply fuse among connectors with current leases."
    requires = {"evse": Requirement(interface=EVSE_MANAGER, min_connections=1, max_connections=64)}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "fuse_a": {"type": "number", "minimum": 0, "default": 32, "description": "Supply fuse, A per phase."},
            "period_s": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
            "lease_periods": {"type": "number", "minimum": 1, "default": 3, "description": "Lease validity."},
        },
    }

    def init(self) -> None:
        self.connectors: list[str] = list(self.connections["evse"])
        self.started: list[str] = []  # connectors in a transaction, first come first
        self.granted: dict[str, tuple[float, float]] = {}  # connector -> (amps, valid_until) last sent
        for name in self.connectors:
            # Session events, not the 1 Hz status: a transaction's start and end is all this needs.
            self.subscribe(name, ChargingSessionEvent)
            self.call(name, GetConnectorStatus(), timeout=5.0).then(self._learn, _ignore)  # after a restart
        self.start_timer(self.config["period_s"], self._grant, repeat=True)

    def _learn(self, status: ConnectorStatus) -> None:
        self._busy(status.connector, status.state in _TRANSACTION_STATES)

    @handles(ChargingSessionEvent)
    def on_session_event(self, event: ChargingSessionEvent) -> None:
        if event.kind == "TransactionStarted":
            self._busy(event.connector, True)
        elif event.kind in ("TransactionFinished", "SessionFinished"):
            self._busy(event.connector, False)

    def _busy(self, connector: str, busy: bool) -> None:
        if busy and connector not in self.started:
            self.started.append(connector)
            self._grant()  # a new transaction changes every share: do not wait for the period
        elif not busy and connector in self.started:
            self.started.remove(connector)
            self._grant()

    def _grant(self) -> None:
        """Send a lease where the share changed or the last one is in its final period, so a steady
        site costs one message per connector every few periods, not every period."""
        now, period = time.time(), self.config["period_s"]
        valid_until = now + period * self.config["lease_periods"]
        for name, amps in share_fuse(self.config["fuse_a"], self.connectors, self.started).items():
            granted = self.granted.get(name)
            if granted is not None and granted[0] == amps and granted[1] - now > period * 1.5:
                continue
            self.granted[name] = (amps, valid_until)
            lease = GrantLimitLease(valid_until=valid_until, amps=amps, grantor=self.name)
            self.call(name, lease, timeout=2.0).then(_ignore, functools.partial(self._lease_failed, name))

    def _lease_failed(self, name: str, exc: BaseException) -> None:
        self.granted.pop(name, None)  # try again next period
        self.log.debug("%s: a lease to %s was not taken: %s", self.name, name, exc)


def _ignore(_: object) -> None:
    pass
