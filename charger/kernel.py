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
from charger.errors import Rejected
from charger.lifecycle import (
    Ack,
    Bindings,
    Bound,
    Exiting,
    GetSystemStatus,
    HostLost,
    HostNames,
    LocalNames,
    Register,
    Resolve,
    Resolved,
    Subscribe,
    SupervisionEvent,
    SystemStatus,
    Unbound,
    Unregister,
    WatchLocalNames,
)
from charger.runtime import Attached
from charger.supervisors.spec import ChildKind, ChildSpec, SupFlags, spec_to_config
from charger.supervisors.supervisor import Supervisor

__all__ = ["FEDERATION_NAME", "KERNEL_ACTOR", "KERNEL_NAME", "Kernel", "kernel_config"]

KERNEL_ACTOR = "charger.kernel:Kernel"
KERNEL_NAME = "kernel"
FEDERATION_NAME = "federation"
_EVENTS_KEPT = 200


def kernel_config(root: ChildSpec, federation: ChildSpec | None = None) -> dict[str, Any]:
    """The kernel's Init config: a supervisor with no restarts whose children are `root` and, on a
    host of a park, the `federation` subtree started before it (charger.federation)."""
    if root.kind is not ChildKind.SUPERVISOR:
        raise ValueError("the root of the tree must be a supervisor")
    children = (root,) if federation is None else (federation, root)
    kernel = ChildSpec(id=KERNEL_NAME, kind=ChildKind.SUPERVISOR, flags=SupFlags(intensity=0), children=children)
    return spec_to_config(kernel)


class Kernel(Supervisor):
    """The registry of this host's names and, in a park, of the names other hosts run (learnt from
    the federation actor, which alone may change them); local names win over remote ones."""

    handled_during_init = frozenset(
        {
            Exiting,
            Register,
            Unregister,
            Subscribe,
            Resolve,
            SupervisionEvent,
            GetSystemStatus,
            WatchLocalNames,
            HostNames,
            HostLost,
        }
    )

    def init(self) -> Generator[Pending, Any, Any]:
        self._names: dict[str, tuple[Any, int]] = {}
        self._remote: dict[str, tuple[Any, str]] = {}
        """Name -> (address, host) of actors on other hosts of the park."""
        self._name_watcher: Any = None
        self._local_only: frozenset[str] = frozenset()
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
        self._tell_watcher(name)

    @handles(Unregister)
    def on_unregister(self, msg: Unregister) -> None:
        if self._names.pop(msg.name, None) is not None:
            remote = self._remote.get(msg.name)
            self._push(
                msg.name, Attached(Bound(name=msg.name), {"address": remote[0]}) if remote else Unbound(name=msg.name)
            )
            self._tell_watcher(msg.name)

    def _address(self, name: str) -> Any:
        local = self._names.get(name)
        if local is not None:
            return local[0]
        remote = self._remote.get(name)
        return remote[0] if remote is not None else None

    @handles(Subscribe)
    def on_subscribe(self, msg: Subscribe) -> Attached:
        for name in msg.names:
            self._watchers.setdefault(name, {})[msg.subscriber] = self._rt.current_reply_to
        found = {n: self._address(n) for n in msg.names}
        up = [n for n, a in found.items() if a is not None]
        down = [n for n, a in found.items() if a is None]
        return Attached(Bindings(up=up, down=down), {n: found[n] for n in up})

    @handles(Resolve)
    def on_resolve(self, msg: Resolve) -> Attached:
        address = self._address(msg.name)
        return Attached(
            Resolved(name=msg.name, up=address is not None), {} if address is None else {"address": address}
        )

    # --- the park: names on other hosts, through this host's federation actor ------------------------
    @handles(WatchLocalNames)
    def on_watch_local_names(self, msg: WatchLocalNames) -> Attached:
        self._federation_only()
        self._name_watcher = self._rt.current_reply_to
        self._local_only = frozenset(msg.exclude)
        return self._local_names()

    def _local_names(self) -> Attached:
        names = [n for n in self._names if n not in self._local_only and n != KERNEL_NAME]
        return Attached(LocalNames(names=names), {n: self._names[n][0] for n in names})

    def _tell_watcher(self, name: str) -> None:
        if self._name_watcher is not None and name not in self._local_only and name != KERNEL_NAME:
            self._rt.cast_address(self._name_watcher, self._local_names())

    @handles(HostNames)
    def on_host_names(self, msg: HostNames) -> None:
        self._federation_only()
        addresses = self._rt.current_addresses
        now = {n: addresses[n] for n in msg.names if addresses.get(n) is not None}
        for name in [n for n, (_, host) in self._remote.items() if host == msg.host and n not in now]:
            self._drop_remote(name)
        for name, address in now.items():
            known = self._remote.get(name)
            if known is not None and known[0] == address and known[1] == msg.host:
                continue
            self._remote[name] = (address, msg.host)
            if name not in self._names:  # a local actor of that name wins
                self._push(name, Attached(Bound(name=name), {"address": address}))

    @handles(HostLost)
    def on_host_lost(self, msg: HostLost) -> None:
        self._federation_only()
        for name in [n for n, (_, host) in self._remote.items() if host == msg.host]:
            self._drop_remote(name)

    def _drop_remote(self, name: str) -> None:
        del self._remote[name]
        if name not in self._names:
            self._push(name, Unbound(name=name))

    def _federation_only(self) -> None:
        """Only this host's federation actor speaks for other hosts: anyone else could hijack a name."""
        federation = self._names.get(FEDERATION_NAME)
        if federation is None or federation[0] != self._rt.current_reply_to:
            raise Rejected(f"only {FEDERATION_NAME} may change the names of other hosts")

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
            remote={name: host for name, (_, host) in self._remote.items()},
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
