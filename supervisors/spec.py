"""Supervision as data, after OTP's supervisor.erl: child specs and supervisor flags, validated up front."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_WORKER_SHUTDOWN",
    "ChildKind",
    "ChildSpec",
    "InvalidSpec",
    "Restart",
    "Strategy",
    "SupFlags",
    "spec_from_config",
    "spec_to_config",
]

DEFAULT_WORKER_SHUTDOWN = 5.0
"""OTP's default: a worker gets 5 s to stop before it is killed; a supervisor gets as long as it needs."""


class InvalidSpec(ValueError):
    """A child spec or supervisor flag is invalid; raised before anything starts."""

    def __init__(self, what: str, value: Any, why: str) -> None:
        super().__init__(f"invalid {what} {value!r}: {why}")
        self.what, self.value, self.why = what, value, why


class Restart(enum.Enum):
    """When a child that exited is started again (OTP restart types)."""

    PERMANENT = "permanent"  #: always restarted
    TRANSIENT = "transient"  #: restarted only after an abnormal exit (a crash or a kill, not a normal stop)
    TEMPORARY = "temporary"  #: never restarted


class Strategy(enum.Enum):
    """Which siblings are restarted with a failed child (OTP strategies)."""

    ONE_FOR_ONE = "one_for_one"  #: only the failed child
    ONE_FOR_ALL = "one_for_all"  #: every child: the others are stopped, then all start again in order
    REST_FOR_ONE = "rest_for_one"  #: the failed child and every child started after it


class ChildKind(enum.Enum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True, slots=True, kw_only=True)
class SupFlags:
    """Strategy and restart intensity: more than `intensity` restarts within `period` seconds escalates."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 1
    period: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.strategy, Strategy):
            raise InvalidSpec("strategy", self.strategy, f"expected one of {[s.value for s in Strategy]}")
        if isinstance(self.intensity, bool) or not isinstance(self.intensity, int) or self.intensity < 0:
            raise InvalidSpec("intensity", self.intensity, "expected an integer >= 0")
        if isinstance(self.period, bool) or not isinstance(self.period, int | float) or not self.period > 0:
            raise InvalidSpec("period", self.period, "expected a number of seconds > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """One child of a supervisor.

    `actor` is the actor type's name in the catalog (built-in or from the ``charger.actors`` entry points).
    For a supervisor child, `flags` and `children` describe the nested tree and `actor` is ignored.
    """

    id: str
    actor: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Connections: requirement id -> names of the instances that satisfy it."""
    restart: Restart = Restart.PERMANENT
    kind: ChildKind = ChildKind.WORKER
    shutdown: float = math.inf
    """Seconds to wait for a clean stop before the child is killed (`inf`: wait as long as it takes)."""
    flags: SupFlags = field(default_factory=SupFlags)
    children: tuple[ChildSpec, ...] = ()
    own_process: bool = True
    """A supervisor only: False runs it inside its parent supervisor's process. It keeps its own
    strategy and restart intensity, so a flapping child still escalates only this far; it costs no
    process (about 5 MB each, bench/RESULTS.md)."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _is_name(self.id):
            raise InvalidSpec("id", self.id, "expected a name of letters, digits, '_' and '-'")
        if not isinstance(self.restart, Restart):
            raise InvalidSpec("restart", self.restart, f"expected one of {[r.value for r in Restart]}")
        if isinstance(self.shutdown, bool) or not isinstance(self.shutdown, int | float) or self.shutdown < 0:
            raise InvalidSpec("shutdown", self.shutdown, "expected seconds >= 0")
        if self.kind is ChildKind.WORKER:
            if not self.actor:
                raise InvalidSpec("actor", self.actor, "a worker needs an actor type")
            if self.children:
                raise InvalidSpec("children", self.id, "only a supervisor has children")
            if self.shutdown == math.inf:
                object.__setattr__(self, "shutdown", DEFAULT_WORKER_SHUTDOWN)
            if not self.own_process:
                raise InvalidSpec("own_process", self.own_process, "only a supervisor can share its parent's process")
        if not isinstance(self.own_process, bool):
            raise InvalidSpec("own_process", self.own_process, "expected true or false")
        seen: set[str] = set()
        for child in self.children:
            if child.id in seen:
                raise InvalidSpec("id", child.id, f"duplicate child of {self.id}")
            seen.add(child.id)

    def walk(self) -> list[ChildSpec]:
        """This spec and every spec below it, depth first, in start order."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


def _is_name(text: str) -> bool:
    return bool(text) and text[0].isalpha() and all(c.isalnum() or c in "_-" for c in text)


def spec_to_config(spec: ChildSpec) -> dict[str, Any]:
    """A msgpack-friendly form of a spec, to travel in an `Init`."""
    return {
        "id": spec.id,
        "actor": spec.actor,
        "config": dict(spec.config),
        "requires": {k: list(v) for k, v in spec.requires.items()},
        "restart": spec.restart.value,
        "kind": spec.kind.value,
        "shutdown": None if spec.shutdown == math.inf else float(spec.shutdown),
        "flags": {
            "strategy": spec.flags.strategy.value,
            "intensity": spec.flags.intensity,
            "period": float(spec.flags.period),
        },
        "children": [spec_to_config(c) for c in spec.children],
        "own_process": spec.own_process,
    }


def spec_from_config(data: Mapping[str, Any]) -> ChildSpec:
    """Inverse of `spec_to_config`; raises `InvalidSpec` or `ValueError` on bad data."""
    flags = data.get("flags") or {}
    shutdown = data.get("shutdown")
    return ChildSpec(
        id=data["id"],
        actor=data.get("actor", ""),
        config=dict(data.get("config") or {}),
        requires={k: tuple(v) for k, v in (data.get("requires") or {}).items()},
        restart=Restart(data.get("restart", "permanent")),
        kind=ChildKind(data.get("kind", "worker")),
        shutdown=math.inf if shutdown is None else shutdown,
        flags=SupFlags(
            strategy=Strategy(flags.get("strategy", "one_for_one")),
            intensity=flags.get("intensity", 1),
            period=flags.get("period", 5.0),
        ),
        children=tuple(spec_from_config(c) for c in data.get("children") or ()),
        own_process=data.get("own_process", True),
    )
