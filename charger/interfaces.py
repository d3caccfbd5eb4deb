"""Interfaces between actor types, modelled on EVerest manifests: commands, vars and errors.

An actor type *provides* implementations of interfaces and *requires* connections to other
instances that provide an interface. The topology wires requirements to instances, and the loader
checks every connection before anything starts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Command", "ErrorDef", "Interface", "Requirement", "Severity"]


class Severity(enum.Enum):
    """How bad a raised error is (EVerest's error severities)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Command:
    """A call: `request` is answered with `reply` (both message classes)."""

    request: type
    reply: type


@dataclass(frozen=True, slots=True)
class ErrorDef:
    """An error an implementation can raise and clear."""

    name: str
    severity: Severity = Severity.MEDIUM
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interface:
    """A named contract: the commands it answers, the vars it publishes, the errors it raises."""

    name: str
    description: str = ""
    commands: tuple[Command, ...] = ()
    vars: tuple[type, ...] = ()
    errors: tuple[ErrorDef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """A connection an actor type needs: to between `min_connections` and `max_connections` providers."""

    interface: Interface
    min_connections: int = 1
    max_connections: int = 1
    description: str = ""
    remote: bool = False
    """In a park, the providers may run on another host (only messages cross; no device, no
    deadline tighter than a heartbeat). Otherwise the topology must place them on the same host."""
