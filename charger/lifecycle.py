"""Messages the kernel itself exchanges: start, stop, supervision, registry and subscriptions."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from charger.messages import message

__all__ = [
    "Ack",
    "Bindings",
    "Bound",
    "CallFailed",
    "Exiting",
    "GetSystemStatus",
    "HostLost",
    "HostNames",
    "Init",
    "LocalNames",
    "Register",
    "Resolve",
    "Resolved",
    "Shutdown",
    "Started",
    "Stopped",
    "Subscribe",
    "SubscribeVars",
    "SupervisionEvent",
    "SystemStatus",
    "Unbound",
    "Unregister",
    "WatchLocalNames",
]


@message
class Ack:
    """The reply of a call whose handler returned nothing."""


@message
class CallFailed:
    """The body of an ERROR envelope."""

    code: str
    """Stable error code (see `charger.errors`)."""
    message: str


@message
class Init:
    """First message to a new actor process: what to run and how it is wired.

    Travels with the addresses ``registry`` and ``supervisor`` beside it.
    """

    name: str
    """Topology name of the instance."""
    actor: str
    """Actor type: a catalog name or a ``module:Class`` import path."""
    config: dict[str, Any]
    requires: dict[str, list[str]]
    """Requirement id -> instance names connected to it."""
    state_dir: str
    """Directory for journals that must survive a restart."""


@message
class Started:
    """Reply to `Init` once the behaviour's ``init`` has finished."""

    name: str
    pid: int


@message
class Exiting:
    """Sent by an actor to its supervisor just before it exits; a kill sends nothing."""

    name: str
    normal: bool
    """True for a deliberate stop: a transient child is then not restarted."""
    reason: str


@message
class Shutdown:
    """Orderly stop: run ``terminate`` (a supervisor first stops its children in reverse order)."""

    reason: str = "shutdown"


@message
class Stopped:
    """Reply to `Shutdown`."""

    name: str


@message
class Register:
    """Supervisor -> registry: `name` now lives at the address beside this message."""

    name: str
    pid: int


@message
class Unregister:
    """Supervisor -> registry: `name` is down; calls to it fail fast until it is registered again."""

    name: str


@message
class Subscribe:
    """Actor -> registry: tell me the addresses of `names` now and whenever they change."""

    subscriber: str
    names: list[str]


@message
class Bindings:
    """Registry -> actor: the names that are up (their addresses beside) and the ones that are not."""

    up: list[str]
    down: list[str]


@message
class Bound:
    """Registry -> subscriber: `name` is up at the address beside this message."""

    name: str


@message
class Unbound:
    """Registry -> subscriber: `name` went down."""

    name: str


@message
class Resolve:
    """Anyone -> registry: where does `name` live right now?"""

    name: str


@message
class Resolved:
    """Reply to `Resolve`; when `up`, the address travels beside it."""

    name: str
    up: bool


@message
class SubscribeVars:
    """Subscriber -> publisher: send me these published vars (message type tags) as EVENTs."""

    subscriber: str
    tags: list[str]


@message
class SupervisionEvent:
    """Supervisor -> registry: something happened to a child (for status views and logs)."""

    supervisor: str
    child: str
    event: str
    """started, exited, restarting, stopped, escalated or halted."""
    reason: str = ""


@message
class GetSystemStatus:
    """Client -> kernel: how is the system doing?"""


@message
class SystemStatus:
    """Reply to `GetSystemStatus`."""

    halted: bool
    """True once the root supervisor gave up: the system no longer runs its tree."""
    reason: str
    actors: dict[str, int]
    """Registered name -> process id, for every actor that is up."""
    restarts: dict[str, int]
    """Child name -> how often it was restarted since boot."""
    events: list[str]
    """The most recent supervision events, oldest first."""
    events_total: int
    """How many events were recorded since boot (the last of `events` is number `events_total`)."""
    remote: dict[str, str] = field(default_factory=dict)
    """In a park: name -> host of every actor on another host that this host can reach now."""


# --- federation: the kernel's registry and the host's federation actor ---------------------------------


@message
class WatchLocalNames:
    """Federation -> kernel: send me this host's names now and after every change (as `LocalNames`)."""

    exclude: list[str]
    """Names that exist on every host (kernel, root, federation) and never leave it."""


@message
class LocalNames:
    """Kernel -> federation: every name registered on this host; the addresses travel beside it."""

    names: list[str]


@message
class HostNames:
    """Federation -> kernel: `host` runs exactly these names now (addresses beside); bind them here."""

    host: str
    names: list[str]


@message
class HostLost:
    """Federation -> kernel: `host` is unreachable; every name it ran is down until it is back."""

    host: str
