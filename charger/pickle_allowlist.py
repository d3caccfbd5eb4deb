"""Restricted unpickling for Thespian's transport frames: only a fixed table of globals may load.

A pickle names the globals it needs (``module``, ``name``) and the stock unpickler imports and
calls whatever it is told, which is how a frame runs code. `restricted_loads` resolves a global
only when the exact pair is in the table below; anything else raises `BlockedGlobal` before the
global is even imported. Allowing a class also lets a frame call it with arguments of its choosing,
so the table holds plain data classes only: Thespian's own messages and addresses, never
``Actor``, ``ActorSystem`` or source-loading messages (charger never loads actor source remotely).

charger's own payloads are msgpack ``bytes`` (optionally beside a dict of addresses, see
`charger.runtime`), which pickle carries without naming any global. Code that sends pickled
objects of its own through Thespian (the raw-Thespian benchmark does) registers them with
`allow_pickled` at import time, before the actor system forks.

The table was taken from what crossed the transport while the runtime, supervisor and charger
test suites ran, plus the convention (federation), dead-letter and poison paths.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

__all__ = ["ALLOWED_GLOBALS", "BlockedGlobal", "allow_pickled", "allowed", "restricted_loads"]

_ACTORS = "thespian.actors"
_ADMIN = "thespian.system.messages.admin"
_CONVENTION = "thespian.system.messages.convention"
_MULTIPROC = "thespian.system.messages.multiproc"
_LOGDIRECTOR = "thespian.system.logdirector"

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [
        # addresses: the sender of every frame, and addresses inside messages
        (_ACTORS, "ActorAddress"),
        ("thespian.system.transport.IPBase", "TCPv4ActorAddress"),
        ("thespian.system.transport.IPBase", "RoutedTCPv4ActorAddress"),
        ("thespian.system.transport.IPBase", "TXOnlyAdminTCPv4ActorAddress"),
        ("thespian.system.transport.TCPTransport", "RoutedTCPv4ActorAddress"),
        ("thespian.system.transport.TCPTransport", "TXOnlyAdminTCPv4ActorAddress"),
        ("socket", "AddressFamily"),
        ("socket", "SocketKind"),
        # messages every actor and admin exchange
        (_ACTORS, "ActorExitRequest"),
        (_ACTORS, "ChildActorExited"),
        (_ACTORS, "PoisonMessage"),
        (_ACTORS, "DeadEnvelope"),
        (_ACTORS, "WakeupMessage"),
        (_ACTORS, "ActorSystemConventionUpdate"),
        (_ADMIN, "QueryExists"),
        (_ADMIN, "QueryAck"),
        (_ADMIN, "SystemShutdown"),
        (_ADMIN, "SystemShutdownCompleted"),
        (_ADMIN, "PendingActor"),
        (_ADMIN, "PendingActorResponse"),
        (_ADMIN, "HandleDeadLetters"),
        (_ADMIN, "CapabilityUpdate"),
        (_ADMIN, "NewCapabilities"),
        (_ADMIN, "NotifyOnSourceAvailability"),
        (_MULTIPROC, "EndpointConnected"),
        (_MULTIPROC, "LoggerConnected"),
        (_MULTIPROC, "ChildMayHaveDied"),
        # federation
        (_CONVENTION, "ConventionRegister"),
        (_CONVENTION, "ConventionDeRegister"),
        (_CONVENTION, "ConventionInvite"),
        (_CONVENTION, "NotifyOnSystemRegistration"),
        # logging: every actor's records travel to the logger process
        ("logging", "LogRecord"),
        (_LOGDIRECTOR, "LogAggregator"),
        (_LOGDIRECTOR, "LoggerExitRequest"),
        # plain values that can ride in messages and capabilities
        ("datetime", "timedelta"),
        ("datetime", "datetime"),
        ("datetime", "timezone"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "frozenset"),
        ("builtins", "set"),
    ]
)

_extra: set[tuple[str, str]] = set()


class BlockedGlobal(pickle.UnpicklingError):
    """A frame named a global outside the allowlist; nothing of it was imported or called."""

    def __init__(self, module: str, name: str) -> None:
        self.qualified = f"{module[:80]}.{name[:80]}"
        super().__init__(f"blocked global {self.qualified}")


def allow_pickled(*classes: type) -> None:
    """Let instances of `classes` cross Thespian's transport pickled (plain data classes only).

    Call at import time of the module that defines them, so the starter process registers them
    before the actor system forks; an allowed class can be called by any authenticated peer.
    """
    for cls in classes:
        if not isinstance(cls, type):
            raise TypeError(f"allow_pickled takes classes, not {type(cls).__name__}")
        _extra.add((cls.__module__, cls.__qualname__))


def allowed(module: str, name: str) -> bool:
    return (module, name) in ALLOWED_GLOBALS or (module, name) in _extra


_resolved: dict[tuple[str, str], Any] = {}
"""Allowed globals already looked up: every frame names the same few (the sender's address)."""


class _AllowlistUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = _resolved.get((module, name))
        if found is None:
            if not allowed(module, name):
                raise BlockedGlobal(module, name)
            found = _resolved[module, name] = super().find_class(module, name)
        return found


def restricted_loads(data: bytes | memoryview) -> Any:
    """Unpickle `data`, resolving only allowlisted globals. Raises `pickle.UnpicklingError` (or
    another exception for malformed data) instead of importing or calling anything else."""
    return _AllowlistUnpickler(io.BytesIO(data)).load()
