"""The kernel: the registry of live addresses, and the parent of the root supervisor.

Boot creates exactly one kernel. It never runs application code, so it has nothing to crash on.
When the root supervisor gives up (its restart intensity is exceeded), the kernel does not
restart it: the system is *halted*, as an OTP node ends when its top application does, and
`python -m charger.boot` exits with an error.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Generator
from typing import Any

from charger.behaviour import Pending, handles
from charger.lifecycle import (
    Ack,
    Bindings,
    Bound,
    Exiting,
    GetSystemStatus,
    Register,
    Resolve,
    Resolved,
    Subscribe,
    SupervisionEvent,
    SystemStatus,
    Unbound,
    Unregister,
)
from charger.runtime import Attached
from charger.supervisors.spec import ChildKind, ChildSpec, SupFlags, spec_to_config
from charger.supervisors.supervisor import Supervisor

__all__ = ["KERNEL_ACTOR", "KERNEL_NAME", "Kernel", "kernel_config"]

KERNEL_ACTOR = "charger.kernel:Kernel"
KERNEL_NAME = "kernel"
_EVENTS_KEPT = 200


def kernel_config(root: ChildSpec) -> dict[str, Any]:
    """The kernel's Init config: a supervisor with no restarts whose only child is `root`."""
    if root.kind is not ChildKind.SUPERVISOR:
        raise ValueError("the root of the tree must be a supervisor")
    kernel = ChildSpec(id=KERNEL_NAME, kind=ChildKind.SUPERVISOR, flags=SupFlags(intensity=0), children=(root,))
    return spec_to_config(kernel)


class Kernel(Supervisor):
    handled_during_init = frozenset(
        {Exiting, Register, Unregister, Subscribe, Resolve, SupervisionEvent, GetSystemStatus}
    )

    def init(self) -> Generator[Pending, Any, Any]:
        self._names: dict[str, tuple[Any, int]] = {}
        self._watchers: dict[str, dict[str, Any]] = {}
        self._events: deque[str] = deque(maxlen=_EVENTS_KEPT)
        self._restarts: Counter[str] = Counter()
        self._events_total = 0
        self._halted = ""
        self._bind(KERNEL_NAME, os.getpid(), self._rt.myAddress)  # callable by name, like any actor
        yield from super().init()

    # --- registry -----------------------------------------------------------------------------------
    @handles(Register)
    def on_register(self, msg: Register) -> Ack:
        self._bind(msg.name, msg.pid, self._rt.current_addresses.get("address"))
        return Ack()

    def _bind(self, name: str, pid: int, address: Any) -> None:
        self._names[name] = (address, pid)
        self._push(name, Attached(Bound(name=name), {"address": address}))

    @handles(Unregister)
    def on_unregister(self, msg: Unregister) -> None:
        if self._names.pop(msg.name, None) is not None:
            self._push(msg.name, Unbound(name=msg.name))

    @handles(Subscribe)
    def on_subscribe(self, msg: Subscribe) -> Attached:
        for name in msg.names:
            self._watchers.setdefault(name, {})[msg.subscriber] = self._rt.current_reply_to
        up = [n for n in msg.names if n in self._names]
        down = [n for n in msg.names if n not in self._names]
        return Attached(Bindings(up=up, down=down), {n: self._names[n][0] for n in up})

    @handles(Resolve)
    def on_resolve(self, msg: Resolve) -> Attached:
        entry = self._names.get(msg.name)
        return Attached(Resolved(name=msg.name, up=entry is not None), {"address": entry[0]} if entry else {})

    def _push(self, name: str, change: Any) -> None:
        for address in self._watchers.get(name, {}).values():
            self._rt.cast_address(address, change)

    # --- status -------------------------------------------------------------------------------------
    @handles(SupervisionEvent)
    def on_supervision_event(self, msg: SupervisionEvent) -> None:
        if msg.event == "restarting":
            self._restarts[msg.child] += 1
        self._events_total += 1
        self._events.append(f"{msg.supervisor}: {msg.child} {msg.event}{': ' + msg.reason if msg.reason else ''}")

    @handles(GetSystemStatus)
    def on_get_system_status(self, msg: GetSystemStatus) -> SystemStatus:
        return SystemStatus(
            halted=bool(self._halted),
            reason=self._halted,
            actors={name: pid for name, (_, pid) in self._names.items() if name != KERNEL_NAME},
            restarts=dict(self._restarts),
            events=list(self._events),
            events_total=self._events_total,
        )

    # --- the kernel is its own registry, and halts instead of escalating --------------------------------
    def _register(self, name: str, pid: int, address: Any) -> Generator[Pending, Any, None]:
        self._bind(name, pid, address)
        return
        yield  # a generator, like the method it overrides

    def _unregister(self, name: str) -> None:
        self.on_unregister(Unregister(name=name))

    def _publish(self, supervisor: str, child: str, event: str, reason: str) -> None:
        self.on_supervision_event(SupervisionEvent(supervisor=supervisor, child=child, event=event, reason=reason))
        if event in ("exited", "escalated"):
            self.log.warning("%s %s%s", child, event, f": {reason}" if reason else "")

    def _escalate(self, reason: str) -> None:
        self._halted = reason
        self.log.error("system halted: %s", reason)
