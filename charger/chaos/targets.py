"""What a fault-injection case can kill (targets) and when (phases)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from charger.chaos.station import Layout

__all__ = ["PHASES", "TARGETS", "Phase", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    actor: Callable[[Layout], str | None]
    """The actor whose process is SIGKILLed; None: the topology has no such actor."""
    safety_critical: bool
    """Its death may end the session (it drives the relays); every other death must not (Continuity)."""
    whole_box: bool = False


def _box(_: Layout) -> str | None:
    return "kernel"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("evse-manager", lambda lay: lay.evse, safety_critical=True),
        Target("board-driver", lambda lay: lay.board, safety_critical=True),
        Target("meter", lambda lay: lay.meter, safety_critical=False),
        Target("auth", lambda lay: lay.auth, safety_critical=False),
        Target("backend-link", lambda lay: lay.backend, safety_critical=False),
        Target("energy-manager", lambda lay: lay.energy_manager, safety_critical=False),
        Target("load-share", lambda lay: lay.load_share, safety_critical=False),
        Target("control-api", lambda lay: lay.api, safety_critical=False),
        Target("supervisor", lambda lay: lay.connector_supervisor, safety_critical=True),
        Target("whole-box", _box, safety_critical=True, whole_box=True),
    )
}
"""The supervisor is connector 1's (its subtree holds the EVSE manager, board driver and meter)."""


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    settled: frozenset[str]
    """Connector states in which the phase is reached, and to which a surviving session comes back."""
    stop_reason: str
    """The StopTransaction reason the session must end with."""


PHASES: dict[str, Phase] = {
    p.name: p
    for p in (
        Phase("authorizing", frozenset({"WaitingForAuthentication"}), "EVDisconnected"),
        Phase("charging", frozenset({"Charging"}), "EVDisconnected"),
        Phase("paused", frozenset({"ChargingPausedEVSE"}), "EVDisconnected"),
        Phase("stopping", frozenset({"StoppingCharging", "Finished"}), "Local"),
        Phase("csms-offline", frozenset({"Charging"}), "EVDisconnected"),
    )
}
