"""The supervisor actor: OTP's supervisor.erl on Thespian processes.

Children start left to right, each only after the previous one's ``init`` returned; they stop
right to left, each given its shutdown time before it is killed. When a child exits, its restart
type decides whether it comes back, the strategy decides which siblings come back with it, and
more than `intensity` restarts within `period` seconds stops every child and escalates to the
parent. While a child is down its name is unregistered, so calls to it fail fast with `Unavailable`.

A child supervisor with ``own_process`` false is a `_Group` inside this process: it starts, stops
and restarts its children with its own strategy and intensity, and escalates to the group that
holds it, exactly as a supervisor process would, without costing a process.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from charger.supervisors.spec import ChildKind, ChildSpec, Restart, Strategy, spec_from_config, spec_to_config
from charger.supervisors.window import RestartWindow

from charger.behaviour import Behaviour, Pending, handles
from charger.errors import CallError, CallTimeout, Unavailable
from charger.lifecycle import Exiting, Init, Register, Shutdown, Started, Stopped, SupervisionEvent, Unregister
from charger.runtime import Attached

__all__ = ["START_TIMEOUT", "SUPERVISOR_ACTOR", "Supervisor"]

SUPERVISOR_ACTOR = "charger.supervisors.supervisor:Supervisor"
START_TIMEOUT = 30.0
"""Seconds a child's ``init`` may take before its start counts as failed."""
_KILL_GRACE = 2.0
_LIVENESS_PERIOD = 1.0

Work = Generator[Pending, Any, Any]


class StartFailed(Exception):
    """A child could not be started; during the supervisor's own start this fails the whole start."""


@dataclass(slots=True, eq=False)
class _Group:
    """A supervisor's children with its strategy and restart window; nested groups share the process."""

    spec: ChildSpec
    window: RestartWindow
    parent: _Group | None
    members: list[_Member] = field(default_factory=list)
    exit_normal: bool = False
    exit_reason: str = ""
    wanted: bool = True

    @property
    def running(self) -> bool:
        return any(m.running for m in self.members)

    def workers(self) -> Iterator[_Child]:
        for member in self.members:
            if isinstance(member, _Group):
                yield from member.workers()
            else:
                yield member


@dataclass(slots=True, eq=False)
class _Child:
    spec: ChildSpec
    parent: _Group
    address: Any = None
    pid: int = 0
    exit_normal: bool = False
    exit_reason: str = "killed"
    stopping: bool = False
    gone: Pending = field(default_factory=Pending)
    starting: Pending | None = None
    wanted: bool = True
    """Should be running: False once a transient child stopped normally (temporary ones are removed)."""

    @property
    def running(self) -> bool:
        return self.address is not None


_Member = _Child | _Group


def _group_of(spec: ChildSpec, parent: _Group | None) -> _Group:
    group = _Group(spec, RestartWindow(spec.flags.intensity, spec.flags.period), parent)
    for child in spec.children:
        inline = child.kind is ChildKind.SUPERVISOR and not child.own_process
        group.members.append(_group_of(child, group) if inline else _Child(child, group))
    return group


class Supervisor(Behaviour):
    """Starts, watches and restarts its children; configured by a `ChildSpec` tree (see `spec_to_config`)."""

    config_schema = {"type": "object"}
    handled_during_init = frozenset({Exiting})

    def init(self) -> Work:
        self.root = _group_of(spec_from_config(self.config), None)
        self._exits: deque[_Member] = deque()
        self._busy = False
        self._registry = self._rt._registry if self._rt._registry is not None else self._rt.myAddress
        yield from self._start_group(self.root)
        self.start_timer(_LIVENESS_PERIOD, self._check_liveness, repeat=True)

    def _name_of(self, group: _Group) -> str:
        return self.name if group is self.root else group.spec.id

    # --- start and stop one child -----------------------------------------------------------------
    def _start_group(self, group: _Group) -> Work:
        """Start every member left to right; if one fails, stop those started and fail the group."""
        group.wanted = True
        for member in list(group.members):
            try:
                yield from self._start_member(member)
            except (CallError, StartFailed) as exc:
                yield from self._stop_each(reversed([m for m in group.members if m.running]))
                raise StartFailed(f"{self._name_of(group)}: child {member.spec.id} failed to start: {exc}") from None
        if group is not self.root:
            self._report(group.parent or self.root, group.spec.id, "started")

    def _start_member(self, member: _Member) -> Work:
        if isinstance(member, _Group):
            yield from self._start_group(member)
        else:
            yield from self._start(member)

    def _start(self, child: _Child) -> Work:
        spec = child.spec
        child.wanted = True
        child.address, child.pid = self._rt.spawn(), 0
        child.exit_normal, child.exit_reason, child.stopping, child.gone = False, "killed", False, Pending()
        if spec.kind is ChildKind.SUPERVISOR:
            actor, config = SUPERVISOR_ACTOR, spec_to_config(spec)
        else:
            actor, config = spec.actor, dict(spec.config)
        init = Init(
            name=spec.id,
            actor=actor,
            config=config,
            requires={k: list(v) for k, v in spec.requires.items()},
            state_dir=self.state_dir,
        )
        addresses = {"registry": self._registry, "supervisor": self._rt.myAddress}
        child.starting = self._rt.call_address(child.address, Attached(init, addresses), START_TIMEOUT)
        try:
            started = yield child.starting
        except CallError:
            self._rt.exit_child(child.address)
            self._kill(child)
            child.address = None
            raise
        finally:
            child.starting = None
        assert isinstance(started, Started)
        child.pid = started.pid
        yield from self._register(spec.id, child.pid, child.address)
        self._report(child.parent, spec.id, "started")

    def _stop(self, member: _Member) -> Work:
        """Stop one running child: ask, wait its shutdown time, then kill (OTP's shutdown semantics)."""
        if isinstance(member, _Group):
            yield from self._stop_each(reversed([m for m in member.members if m.running]))
            self._report(member.parent or self.root, member.spec.id, "stopped")
            return
        child = member
        if not child.running:
            return
        child.stopping = True
        self._unregister(child.spec.id)
        limit = child.spec.shutdown
        if limit > 0:
            with contextlib.suppress(CallError):
                yield self._rt.call_address(
                    child.address, Shutdown(reason="shutdown"), 1e9 if limit == math.inf else limit
                )
            self._rt.exit_child(child.address)
            with contextlib.suppress(CallTimeout):
                yield self._rt.within(child.gone, _KILL_GRACE if limit == math.inf else max(limit, 0.1))
        if not child.gone.done:
            self._kill(child)
            with contextlib.suppress(CallTimeout):
                yield self._rt.within(child.gone, _KILL_GRACE)
        if not child.gone.done:  # never reaped: forget it rather than hang the tree
            self._forget(child)
        self._report(child.parent, child.spec.id, "stopped")

    def _stop_each(self, children: Iterable[_Member]) -> Work:
        for child in list(children):
            yield from self._stop(child)

    def _kill(self, child: _Child) -> None:
        if child.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)

    def _forget(self, child: _Child) -> None:
        child.address = None
        child.gone.resolve(None)

    # --- exits --------------------------------------------------------------------------------------
    @handles(Exiting)
    def on_exiting(self, msg: Exiting) -> None:
        """A child tells us why it is about to exit; we reap it, so the reason is known before the exit."""
        # by address, not name: a late Exiting from an instance that already died must not reap its replacement
        sender = self._rt.current_reply_to
        child = next((c for c in self.root.workers() if c.running and c.address == sender), None)
        if child is None:
            return
        child.exit_normal, child.exit_reason = msg.normal, msg.reason
        self._rt.exit_child(child.address)

    def _child_exited(self, address: Any) -> None:
        # ActorAddress is unhashable and its str() changes once the child is up: compare with ==.
        child = next((c for c in self.root.workers() if c.address is not None and c.address == address), None)
        if child is None:  # Thespian may report one exit twice; and stopped children are forgotten
            return
        child.address = None
        if child.stopping:
            child.gone.resolve(None)
            return
        if child.starting is not None:  # died inside init: the start fails now, not at its timeout
            child.starting.fail(Unavailable(f"{child.spec.id} exited during init: {child.exit_reason}"))
            return
        self._unregister(child.spec.id)
        self._report(child.parent, child.spec.id, "exited", child.exit_reason)
        self._exits.append(child)
        if not self._busy:
            self._rt.run_task(self._handle_exits())

    def _check_liveness(self) -> None:
        """Thespian can lose a ChildActorExited when two children die at once; the PID tells the truth."""
        for child in list(self.root.workers()):
            if child.running and child.pid and not _alive(child.pid):
                self._child_exited(child.address)

    def _handle_exits(self) -> Work:
        self._busy = True
        try:
            while self._exits:
                yield from self._on_exit(self._exits.popleft())
        finally:
            self._busy = False

    def _on_exit(self, member: _Member) -> Work:
        group = member.parent
        if group is None or member.running or member not in group.members:  # brought back by a sibling's restart
            return
        restart = member.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and member.exit_normal):
            member.wanted = False
            if restart is Restart.TEMPORARY:
                group.members.remove(member)
            return
        if not group.window.allow_restart():
            flags = group.spec.flags
            reason = (
                f"reached max restart intensity ({flags.intensity} in {flags.period:g} s); "
                f"last: {member.spec.id} {member.exit_reason}"
            )
            self._report(group, member.spec.id, "escalated", reason)
            yield from self._stop_each(reversed([m for m in group.members if m.running]))
            if group is self.root:
                self._escalate(reason)
                return
            group.exit_normal, group.exit_reason = False, reason  # to its parent, the group exited
            self._report(group.parent or self.root, group.spec.id, "exited", reason)
            yield from self._on_exit(group)
            return
        affected = self._affected(group, member)
        yield from self._stop_each(reversed([m for m in affected if m.running]))
        for sibling in affected:
            if sibling is not member and sibling.spec.restart is Restart.TEMPORARY:
                group.members.remove(sibling)  # OTP: temporary siblings are not brought back
        for sibling in affected:
            if sibling in group.members and not sibling.running:
                why = member.exit_reason if sibling is member else "sibling"
                self._report(group, sibling.spec.id, "restarting", why)
                try:
                    yield from self._start_member(sibling)
                except (CallError, StartFailed) as exc:
                    sibling.exit_normal, sibling.exit_reason = False, f"start failed: {exc}"
                    self._exits.append(sibling)
                    break

    def _affected(self, group: _Group, member: _Member) -> list[_Member]:
        # "wanted", not "running": siblings left down by an earlier failed restart come back too
        strategy = group.spec.flags.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            return [m for m in group.members if m is member or m.wanted]
        if strategy is Strategy.REST_FOR_ONE:
            after = group.members[group.members.index(member) + 1 :]
            return [member, *(m for m in after if m.wanted)]
        return [member]

    def _escalate(self, reason: str) -> None:
        self._rt.escalate(reason)

    # --- orderly shutdown ---------------------------------------------------------------------------
    def _shutdown(self, reason: str) -> Work:
        self._exits.clear()
        yield from self._stop_each(reversed([m for m in self.root.members if m.running]))
        return Stopped(name=self.name)

    # --- registry -------------------------------------------------------------------------------
    def _register(self, name: str, pid: int, address: Any) -> Work:
        yield self._rt.call_address(self._registry, Attached(Register(name=name, pid=pid), {"address": address}), 5.0)

    def _unregister(self, name: str) -> None:
        self._rt.cast_address(self._registry, Unregister(name=name))

    def _report(self, group: _Group, child: str, event: str, reason: str = "") -> None:
        self._publish(self._name_of(group), child, event, reason)

    def _publish(self, supervisor: str, child: str, event: str, reason: str) -> None:
        level = self.log.warning if event in ("exited", "escalated") else self.log.info
        where = "" if supervisor == self.name else f"{supervisor}: "
        level("%s%s %s%s", where, child, event, f": {reason}" if reason else "")
        self._rt.cast_address(
            self._registry, SupervisionEvent(supervisor=supervisor, child=child, event=event, reason=reason)
        )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
