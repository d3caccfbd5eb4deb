"""Supervision after OTP: child specs as data, strategies, restart intensity, the supervisor actor."""

from charger.supervisors.spec import (
    ChildKind,
    ChildSpec,
    InvalidSpec,
    Restart,
    Strategy,
    SupFlags,
    spec_from_config,
    spec_to_config,
)
from charger.supervisors.window import RestartWindow

__all__ = [
    "ChildKind",
    "ChildSpec",
    "InvalidSpec",
    "Restart",
    "RestartWindow",
    "Strategy",
    "SupFlags",
    "spec_from_config",
    "spec_to_config",
]
