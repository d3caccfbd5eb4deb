"""The one Thespian actor class: it hosts a `Behaviour` and gives it OTP semantics.

Every actor process runs `ActorProcess`. Its first message, `Init`, names the behaviour to host.
This module is the only place that speaks Thespian's API (camelCase, pickled frames):

- A frame is msgpack bytes, or ``(bytes, {label: ActorAddress})`` when addresses ride along.
- A handler exception is a crash: the actor tells its supervisor and exits. Thespian's own policy
  (retry the message on the same instance, then PoisonMessage) is never reached.
- Every process dies with its parent (``PR_SET_PDEATHSIG``), so a killed supervisor leaves no orphans.
- Peers are named, not addressed: the registry pushes each name's live address, so callers are
  rebound after a restart and a call to a name that is down fails fast with `Unavailable`.
"""

from __future__ import annotations

import ctypes
import gc
import heapq
import itertools
import logging
import os
import signal
import time
import types
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from thespian.actors import (
    Actor,
    ActorExitRequest,
    ActorSystemConventionUpdate,
    ChildActorExited,
    PoisonMessage,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from charger.behaviour import Behaviour, Pending, Timer
from charger.catalog import load_actor_type
from charger.config import checked_config
from charger.errors import BadRequest, CallError, CallTimeout, Rejected, RemoteCrash, Unavailable, error_for_code
from charger.io import IoBridge
from charger.lifecycle import (
    Ack,
    Bindings,
    Bound,
    CallFailed,
    Exiting,
    Init,
    Shutdown,
    Started,
    Stopped,
    Subscribe,
    SubscribeVars,
    Unbound,
)
from charger.messages import DecodeError, Envelope, Kind, decode_envelope, encode_envelope

__all__ = ["MAX_IN_FLIGHT", "ActorProcess", "Attached", "die_with_parent", "frame_parts"]

MAX_IN_FLIGHT = 4
"""Calls in flight from one actor to one peer; more wait locally. Thespian stalls *all* of a
sender's traffic once 20 messages wait on one blocked receiver, so one hung peer must not get there."""

_CRASH_EXIT_GRACE = 2.0
"""Seconds a crashed actor waits for its supervisor to reap it before it exits on its own."""

_log = logging.getLogger("charger.runtime")


def _fresh_chunk_caller() -> Callable[[Callable[[], Any]], Any]:
    """Build ``call(fn)``: runs `fn` at the base of a fresh CPython data-stack chunk.

    CPython 3.11 and 3.12 keep frames in 16 KiB chunks and map and unmap a chunk each time a hot loop
    crosses a boundary (python/cpython#142183, fixed in 3.13+). A forked actor inherits the stack
    depth its parent had at the fork, so at unlucky depths every message crosses a boundary: calls
    measured 2-4x slower (bench/RESULTS.md). The wrapper's frame (2200 locals, over 16 KiB) fills a
    chunk of its own, so `fn`, and a child forked inside it, start at the base of the next chunk.
    """
    names = ", ".join(f"_v{i}" for i in range(2200))
    namespace: dict[str, Any] = {}
    source = f"def call(fn):\n    if False:\n        {names} = (None,) * 2200\n    return fn()\n"
    exec(source, namespace)  # a fixed source: nothing from outside reaches it
    return namespace["call"]  # type: ignore[no-any-return]


on_fresh_stack_chunk = _fresh_chunk_caller()


def share_heap_with_children() -> None:
    """Keep the heap a forked child inherits shared with this process: call just before each fork.

    A full collection in the child writes the GC header of every tracked object, inherited ones too,
    so every page holding one becomes a private copy: 11 MB per actor process measured with charger's
    modules imported. Frozen objects are never traversed again, so those pages stay shared. The cost
    is that cycles among them are never collected: they are what this process had built by the fork.
    """
    gc.freeze()


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies. Cleared by fork: call in every actor."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(sig), 0, 0, 0)  # 1 == PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


@dataclass(frozen=True, slots=True)
class Attached:
    """A reply or message with Thespian addresses riding beside the msgpack body."""

    body: Any
    addresses: dict[str, Any]


def frame_parts(frame: Any) -> tuple[Any, dict[str, Any]] | None:
    """Split a Thespian-level message into (bytes, addresses), or None when it is not one of ours."""
    if isinstance(frame, bytes):
        return frame, {}
    if isinstance(frame, tuple) and len(frame) == 2 and isinstance(frame[0], bytes) and isinstance(frame[1], dict):
        return frame[0], frame[1]
    return None


def _pack(kind: Kind, corr: int, sender: str, body: Any) -> Any:
    if isinstance(body, Attached):
        return (encode_envelope(kind, corr, sender, body.body), body.addresses)
    return encode_envelope(kind, corr, sender, body)


@dataclass(slots=True)
class _OutboundCall:
    target: str
    frame: Any
    pending: Pending
    timeout: float
    corr: int = 0
    address: Any = None
    """Where the call went: only that actor may answer it."""


@dataclass(slots=True)
class _Peer:
    """What this actor knows about one named peer."""

    address: Any = None
    in_flight: dict[int, _OutboundCall] = field(default_factory=dict)
    backlog: deque[_OutboundCall] = field(default_factory=deque)
    var_tags: set[str] = field(default_factory=set)
    looked_up: bool = False


class ActorProcess(Actor):  # type: ignore[misc]
    """Thespian adapter hosting one `Behaviour`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        die_with_parent()
        super().__init__(*args, **kwargs)
        self._behaviour: Behaviour | None = None
        self._name = "?"
        self._registry: Any = None
        self._supervisor: Any = None
        self._peers: dict[str, _Peer] = {}
        self._corr = itertools.count(1)
        self._calls: dict[int, _OutboundCall] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._armed_for: float | None = None
        self._timers: dict[int, tuple[Timer, float, Callable[[], Any], bool]] = {}
        self._timer_ids = itertools.count(1)
        self._subscribers: dict[str, dict[str, Any]] = {}
        self._io: IoBridge | None = None
        self._ready = False
        self._held: list[tuple[Any, Any]] = []
        self._exiting = False
        self._terminated = False
        self.current_sender = ""
        self.current_addresses: dict[str, Any] = {}
        self.current_reply_to: Any = None
        self._current_call: tuple[Any, int] | None = None
        self.decode_failures = 0

    # --- Thespian entry point ------------------------------------------------------------------------
    def receiveMessage(self, msg: Any, sender: Any) -> Any:  # noqa: N802 - Thespian's name
        try:
            self._receive(msg, sender)
        except Exception as exc:  # noqa: BLE001 - a handler exception is a crash, never Thespian's retry
            self._crash(exc)
        return ThespianWatch([self._io.fileno()]) if self._io is not None and not self._exiting else None

    def _receive(self, msg: Any, sender: Any) -> None:
        parts = frame_parts(msg)
        if parts is not None:
            if not self._exiting:
                self._on_frame(parts[0], parts[1], sender)
        elif isinstance(msg, WakeupMessage):
            self._on_wakeup(msg.payload)
        elif isinstance(msg, WatchMessage):
            if self._io is not None and not self._exiting:
                self._io.drain()
        elif isinstance(msg, ChildActorExited):
            if self._behaviour is not None and not self._exiting:
                self._behaviour._child_exited(msg.childAddress)  # type: ignore[attr-defined]
        elif isinstance(msg, ActorExitRequest):
            self._run_terminate("shutdown")
            self._exiting = True
            if self._io is not None:
                self._io.close()
        else:
            self._on_system_message(msg)

    def _on_system_message(self, msg: Any) -> None:
        if isinstance(msg, ActorSystemConventionUpdate):
            hook = getattr(self._behaviour, "_convention_update", None)
            if hook is not None and not self._exiting:
                hook(dict(msg.remoteCapabilities or {}), bool(msg.remoteAdded))
        elif isinstance(msg, PoisonMessage):
            _log.warning("%s: a message could not be delivered: %s", self._name, msg.details)
        else:
            _log.warning("%s: dropped an unexpected %s", self._name, type(msg).__name__)

    # --- frames ----------------------------------------------------------------------------------
    def _on_frame(self, data: bytes, addresses: dict[str, Any], sender: Any) -> None:
        try:
            env = decode_envelope(data)
        except DecodeError as exc:
            self.decode_failures += 1
            _log.warning("%s: dropped a bad frame from %s: %s", self._name, sender, exc)
            corr = _call_corr(data)
            if corr is not None:
                self.send(
                    sender,
                    encode_envelope(Kind.ERROR, corr, self._name, CallFailed(code="bad_request", message=str(exc))),
                )
            return
        if env.kind in (Kind.REPLY, Kind.ERROR):
            self._on_answer(env, addresses, sender)
        elif isinstance(env.body, Init):
            self._on_init(env, addresses, sender)
        elif not self._ready and not (
            self._behaviour is not None and type(env.body) in self._behaviour.handled_during_init
        ):
            self._held.append(((data, addresses), sender))
        else:
            self._dispatch(env, addresses, sender)

    def _dispatch(self, env: Envelope, addresses: dict[str, Any], sender: Any) -> None:
        body = env.body
        if isinstance(body, (Bound, Unbound, Shutdown)) and not self._from_kernel(body, sender):
            _log.warning("%s: ignored %s from %s, who has no say over it", self._name, env.tag, env.sender)
            self._answer(env, sender, BadRequest(f"{env.tag} is only accepted from the kernel"))
            return
        if isinstance(body, (Bound, Unbound)):
            self._on_binding(body, addresses.get("address"))
            return
        if isinstance(body, SubscribeVars):
            for tag in body.tags:
                self._subscribers.setdefault(tag, {})[body.subscriber] = sender
            if body.subscriber not in self._peers and self._registry is not None:
                self._lookup([body.subscriber])  # to hear when it goes down; it re-subscribes when back
            self._answer(env, sender, Ack())
            return
        assert self._behaviour is not None
        if isinstance(body, Shutdown):
            self._run_handler(env, sender, addresses, lambda: self._behaviour_shutdown(body.reason))
            return
        if self._terminated:  # terminate() released the behaviour's resources: nothing may use them now
            if env.kind is Kind.CALL:
                self._answer(env, sender, Unavailable(f"{self._name} is stopping"))
            return
        route = self._behaviour._routes.get(type(body))
        if route is None:
            if env.kind is Kind.CALL:
                self._answer(env, sender, BadRequest(f"{self._name} has no handler for {env.tag}"))
            else:
                _log.warning("%s: no handler for %s from %s; dropped", self._name, env.tag, env.sender)
            return
        handler = getattr(self._behaviour, route)
        self._run_handler(env, sender, addresses, lambda: handler(body))

    def _from_kernel(self, body: Any, sender: Any) -> bool:
        """Bindings come only from the registry and Shutdown only from our supervisor (or boot, for the kernel)."""
        if isinstance(body, Shutdown):
            return self._supervisor is None or sender == self._supervisor
        return self._registry is not None and sender == self._registry

    def _behaviour_shutdown(self, reason: str) -> Any:
        assert self._behaviour is not None
        custom = getattr(self._behaviour, "_shutdown", None)
        if custom is not None:
            result = custom(reason)
            if isinstance(result, types.GeneratorType):
                return (yield from result)
            return result
        self._run_terminate(reason)
        return Stopped(name=self._name)

    def _run_handler(self, env: Envelope, sender: Any, addresses: dict[str, Any], invoke: Callable[[], Any]) -> None:
        self.current_sender = env.sender
        self.current_reply_to = sender
        self.current_addresses = addresses
        self._current_call = (sender, env.corr) if env.kind is Kind.CALL else None
        try:
            result = invoke()
        except Rejected as exc:
            self._current_call = None
            self._answer(env, sender, exc)
            return
        self._current_call = None
        if isinstance(result, types.GeneratorType):
            self._drive(result, env, sender, None, None)
        else:
            self._answer(env, sender, result)

    def _drive(
        self, gen: Generator[Any, Any, Any], env: Envelope, sender: Any, value: Any, error: BaseException | None
    ) -> None:
        """Run a generator handler until it yields unfinished work or returns."""
        while True:
            self._current_call = (sender, env.corr) if env.kind is Kind.CALL else None
            self.current_sender, self.current_reply_to = env.sender, sender
            try:
                step = gen.throw(error) if error is not None else gen.send(value)
            except StopIteration as stop:
                self._current_call = None
                self._answer(env, sender, stop.value)
                return
            except Rejected as exc:
                self._current_call = None
                self._answer(env, sender, exc)
                return
            self._current_call = None
            if not isinstance(step, Pending):
                raise TypeError(f"a handler may only yield Pending, not {type(step).__name__}")
            if not step.done:
                step.then(
                    lambda v: self._drive(gen, env, sender, v, None),
                    lambda e: self._drive(gen, env, sender, None, e),
                )
                return
            try:
                value, error = step.result(), None
            except BaseException as exc:  # noqa: BLE001 - handed back into the generator
                value, error = None, exc

    def _answer(self, env: Envelope, sender: Any, result: Any) -> None:
        if env.kind is not Kind.CALL or sender is None:
            return
        if isinstance(result, CallError):
            self.send(
                sender,
                encode_envelope(Kind.ERROR, env.corr, self._name, CallFailed(code=result.code, message=result.message)),
            )
            return
        self.send(sender, _pack(Kind.REPLY, env.corr, self._name, Ack() if result is None else result))

    # --- start ---------------------------------------------------------------------------------------
    def _on_init(self, env: Envelope, addresses: dict[str, Any], sender: Any) -> None:
        init: Init = env.body
        if self._behaviour is not None:
            self._answer(env, sender, BadRequest(f"{self._name} is already initialised"))
            return
        self._name = init.name
        self._registry = addresses.get("registry")
        self._supervisor = addresses.get("supervisor")
        _set_title(init.name, init.actor)
        _make_logging_safe()
        cls = load_actor_type(init.actor)
        behaviour = cls()
        behaviour.name = init.name
        behaviour.config = checked_config(cls, init.config)
        behaviour.connections = {req: list(init.requires.get(req, ())) for req in cls.requires}
        behaviour.connections.update({k: list(v) for k, v in init.requires.items()})
        behaviour.state_dir = init.state_dir
        behaviour.log = logging.getLogger(f"charger.{init.name}")
        behaviour._rt = self
        self._behaviour = behaviour
        for names in init.requires.values():
            for peer in names:
                self._peers.setdefault(peer, _Peer())

        def started(_: Any = None) -> Any:
            result = behaviour.init()
            if isinstance(result, types.GeneratorType):
                yield from result
            self._ready = True
            held, self._held = self._held, []
            for frame, held_sender in held:
                self._receive(frame, held_sender)
            return Started(name=self._name, pid=os.getpid())

        def wired() -> Any:
            if self._peers and self._registry is not None:
                yield self._lookup(list(self._peers))
            return (yield from started())

        self._run_handler(env, sender, addresses, wired)

    # --- outbound ----------------------------------------------------------------------------------
    def call(self, target: str, msg: Any, timeout: float) -> Pending:
        pending = Pending()
        peer = self._peers.get(target)
        if peer is None:
            peer = self._peers[target] = _Peer()
        out = _OutboundCall(target, msg, pending, timeout)
        if peer.address is None and not peer.looked_up and self._registry is not None:
            peer.backlog.append(out)
            self._lookup([target])
            return pending
        self._send_call(peer, out)
        return pending

    def call_address(self, address: Any, msg: Any, timeout: float) -> Pending:
        """Call an address directly (kernel use: registry, children before they are registered)."""
        peer = _Peer(address=address, looked_up=True)
        out = _OutboundCall(f"<{address}>", msg, Pending(), timeout)
        self._send_call(peer, out)
        return out.pending

    def _send_call(self, peer: _Peer, out: _OutboundCall) -> None:
        if peer.address is None:
            out.pending.fail(Unavailable(f"{out.target} is not running"))
            return
        if len(peer.in_flight) >= MAX_IN_FLIGHT:
            peer.backlog.append(out)
            return
        out.corr = next(self._corr)
        out.address = peer.address
        peer.in_flight[out.corr] = out
        self._calls[out.corr] = out
        self.send(peer.address, _pack(Kind.CALL, out.corr, self._name, out.frame))
        self._add_deadline(out.corr, out.timeout)
        out.frame = None  # only kept until sent
        out.pending.then(lambda _v: self._release(peer, out.corr), lambda _e: self._release(peer, out.corr))

    def _add_deadline(self, corr: int, timeout: float) -> None:
        """One armed wakeup for the earliest call deadline, not one wakeup per call."""
        deadline = time.monotonic() + timeout
        heapq.heappush(self._deadlines, (deadline, corr))
        if self._armed_for is None or deadline < self._armed_for:
            self._armed_for = deadline
            self.wakeupAfter(timedelta(seconds=timeout), payload=("calls", deadline))

    def _expire_calls(self, armed_for: float) -> None:
        if armed_for != self._armed_for:
            return  # superseded by an earlier deadline armed later
        self._armed_for = None
        now = time.monotonic()
        while self._deadlines and (self._deadlines[0][0] <= now or self._deadlines[0][1] not in self._calls):
            _, corr = heapq.heappop(self._deadlines)
            out = self._calls.get(corr)
            if out is not None:
                out.pending.fail(CallTimeout(f"{out.target} did not answer within {out.timeout} s"))
        if self._deadlines:
            deadline = self._deadlines[0][0]
            self._armed_for = deadline
            self.wakeupAfter(timedelta(seconds=max(0.0, deadline - now)), payload=("calls", deadline))

    def _release(self, peer: _Peer, corr: int) -> None:
        peer.in_flight.pop(corr, None)
        self._calls.pop(corr, None)
        while peer.backlog and len(peer.in_flight) < MAX_IN_FLIGHT:
            self._send_call(peer, peer.backlog.popleft())

    def _on_answer(self, env: Envelope, addresses: dict[str, Any], sender: Any) -> None:
        out = self._calls.get(env.corr)
        if out is None:
            return  # late answer to a call that already timed out or failed
        # Correlation ids are small counters: anyone who can reach our port could guess one. An answer
        # from elsewhere, or an ERROR without a CallFailed, would hand a handler a value it cannot use.
        if sender != out.address or (env.kind is Kind.ERROR and not isinstance(env.body, CallFailed)):
            self.decode_failures += 1
            _log.warning(
                "%s: dropped a forged %s %s for call %d from %s", self._name, env.kind.name, env.tag, env.corr, sender
            )
            return
        if env.kind is Kind.ERROR:
            failed: CallFailed = env.body
            out.pending.fail(error_for_code(failed.code, failed.message))
        else:
            out.pending.resolve(Attached(env.body, addresses) if addresses else env.body)

    def cast(self, target: str, msg: Any) -> None:
        peer = self._peers.get(target)
        if peer is None or peer.address is None:
            _log.debug("%s: cast %s to %s dropped: not running", self._name, type(msg).__name__, target)
            return
        self.send(peer.address, _pack(Kind.CAST, 0, self._name, msg))

    def cast_address(self, address: Any, msg: Any) -> None:
        self.send(address, _pack(Kind.CAST, 0, self._name, msg))

    def publish(self, msg: Any) -> None:
        subscribers = self._subscribers.get(type(msg).__name__)
        if not subscribers:
            return
        frame = encode_envelope(Kind.EVENT, 0, self._name, msg)
        for address in subscribers.values():
            self.send(address, frame)

    def subscribe(self, target: str, tags: list[str]) -> None:
        peer = self._peers.setdefault(target, _Peer())
        peer.var_tags.update(tags)
        if peer.address is not None:
            self._send_var_subscription(target, peer)
        elif not peer.looked_up and self._registry is not None:
            self._lookup([target])

    def _send_var_subscription(self, target: str, peer: _Peer) -> None:
        self.call(target, SubscribeVars(subscriber=self._name, tags=sorted(peer.var_tags)), 5.0).then(
            lambda _: None,
            lambda e: _log.info("%s: subscription to %s failed: %s", self._name, target, e),
        )

    # --- registry bindings -----------------------------------------------------------------------
    def _lookup(self, names: list[str]) -> Pending:
        for name in names:
            self._peers.setdefault(name, _Peer()).looked_up = True
        pending = self.call_address(self._registry, Subscribe(subscriber=self._name, names=names), 5.0)

        def bound(reply: Any) -> None:
            body, addresses = (reply.body, reply.addresses) if isinstance(reply, Attached) else (reply, {})
            assert isinstance(body, Bindings)
            for name in body.up:
                self._on_binding(Bound(name=name), addresses.get(name))
            for name in body.down:
                self._on_binding(Unbound(name=name), None)

        def lookup_failed(exc: BaseException) -> None:
            for name in names:
                self._on_binding(Unbound(name=name), None)

        pending.then(bound, lookup_failed)
        return pending

    def _on_binding(self, change: Bound | Unbound, address: Any) -> None:
        peer = self._peers.setdefault(change.name, _Peer())
        peer.looked_up = True
        was_up, up = peer.address is not None, isinstance(change, Bound) and address is not None
        self._set_binding(change, peer, address)
        if was_up != up and self._ready and self._behaviour is not None and not self._terminated:
            self._behaviour.peer_changed(change.name, up)

    def _set_binding(self, change: Bound | Unbound, peer: _Peer, address: Any) -> None:
        if isinstance(change, Bound) and address is not None:
            peer.address = address
            backlog, peer.backlog = peer.backlog, deque()
            for out in backlog:
                self._send_call(peer, out)
            if peer.var_tags:
                self._send_var_subscription(change.name, peer)
            return
        if peer.address is not None:  # a subscriber that went down gets no more vars
            for subscribers in self._subscribers.values():
                subscribers.pop(change.name, None)
        peer.address = None
        down = Unavailable(f"{change.name} is not running")
        for out in [*peer.in_flight.values(), *peer.backlog]:
            out.pending.fail(down)
        peer.backlog.clear()

    # --- federation (Thespian conventions) -------------------------------------------------------------
    def watch_convention(self, *, again: bool = False) -> None:
        """Report every system joining or leaving the convention to the behaviour's ``_convention_update``.

        The admin reports the members it knows (with their capabilities) when the watch starts, but
        not a member's later change of capabilities: `again` restarts the watch for a fresh report.
        """
        if again:
            self.notifyOnSystemRegistrationChanges(False)
        self.notifyOnSystemRegistrationChanges(True)

    def pre_register(self, host_port: str) -> None:
        """Invite the system at ``"ip:port"`` into this (leader's) convention, and keep inviting it."""
        self.preRegisterRemoteSystem(host_port, {})

    def publish_capability(self, name: str, value: Any) -> None:
        """Set a capability of this actor system; the convention passes capabilities to every member."""
        self.updateCapability(name, value)

    # --- timers ----------------------------------------------------------------------------------
    def start_timer(self, seconds: float, callback: Callable[[], Any], repeat: bool) -> Timer:
        timer_id = next(self._timer_ids)
        timer = Timer(lambda _t: self._forget_timer(timer_id))
        self._timers[timer_id] = (timer, seconds, callback, repeat)
        self.wakeupAfter(timedelta(seconds=seconds), payload=("timer", timer_id))
        return timer

    def within(self, pending: Pending, seconds: float) -> Pending:
        """A Pending that follows `pending` but fails with `CallTimeout` after `seconds`."""
        limited = Pending()
        timer = self.start_timer(seconds, lambda: limited.fail(CallTimeout(f"no result within {seconds} s")), False)

        def settle(value: Any = None, error: BaseException | None = None) -> None:
            timer.cancel()
            if error is None:
                limited.resolve(value)
            else:
                limited.fail(error)

        pending.then(settle, lambda e: settle(error=e))
        return limited

    def _forget_timer(self, timer_id: int) -> None:
        self._timers.pop(timer_id, None)

    def _on_wakeup(self, payload: Any) -> None:
        if self._exiting:
            if payload == ("exit",):
                self.send(self.myAddress, ActorExitRequest())
            return
        if not isinstance(payload, tuple) or len(payload) != 2:
            return
        what, ident = payload
        if what == "calls":
            self._expire_calls(ident)
        elif what == "timer" and ident in self._timers and not self._terminated:
            timer, seconds, callback, repeat = self._timers[ident]
            if repeat:
                self.wakeupAfter(timedelta(seconds=seconds), payload=("timer", ident))
            else:
                del self._timers[ident]
                timer.active = False
            self.run_task(callback())

    def run_task(self, result: Any) -> None:
        """Drive a generator outside any handler (timer callbacks, supervisor work); other values are ignored."""
        if isinstance(result, types.GeneratorType):
            self._drive(result, Envelope(Kind.CAST, 0, self._name, Ack()), None, None, None)

    # --- I/O, exit -------------------------------------------------------------------------------
    def io(self) -> IoBridge:
        if self._io is None:
            self._io = IoBridge(self._name)
        return self._io

    def exit_child(self, address: Any) -> None:
        self.send(address, ActorExitRequest())

    def escalate(self, reason: str) -> None:
        """Exit abnormally without a crash traceback (a supervisor past its restart intensity)."""
        self._exit(normal=False, reason=reason)

    def spawn(self) -> Any:
        """Create a child actor process (supervisors only). Forking after threads exist is unsafe."""
        if self._io is not None:
            raise RuntimeError(f"{self._name} owns I/O threads and must not create child actors")
        share_heap_with_children()
        return on_fresh_stack_chunk(lambda: self.createActor(ActorProcess))

    def stop(self, reason: str) -> None:
        self._run_terminate(reason)
        self._exit(normal=True, reason=reason)

    def _crash(self, exc: BaseException) -> None:
        if self._exiting:
            return
        _log.error("%s crashed: %s", self._name, exc, exc_info=exc)
        if self._current_call is not None:
            sender, corr = self._current_call
            self.send(
                sender,
                encode_envelope(
                    Kind.ERROR,
                    corr,
                    self._name,
                    CallFailed(code=RemoteCrash.code, message=f"{type(exc).__name__}: {exc}"),
                ),
            )
        self._exit(normal=False, reason=f"crash: {type(exc).__name__}: {exc}")

    def _exit(self, *, normal: bool, reason: str) -> None:
        """Tell the supervisor why, then leave. The supervisor reaps us, so it learns the reason first."""
        self._exiting = True
        if self._io is not None:
            self._io.close()
            self._io = None
        if self._supervisor is None:
            self.send(self.myAddress, ActorExitRequest())
            return
        self.send(
            self._supervisor,
            encode_envelope(Kind.CAST, 0, self._name, Exiting(name=self._name, normal=normal, reason=reason)),
        )
        self.wakeupAfter(timedelta(seconds=_CRASH_EXIT_GRACE), payload=("exit",))

    def _run_terminate(self, reason: str) -> None:
        if self._terminated or self._behaviour is None or self._exiting:
            return
        self._terminated = True
        try:
            self._behaviour.terminate(reason)
        except Exception:  # noqa: BLE001 - a failing terminate must not keep the actor from exiting
            _log.exception("%s: terminate(%r) raised", self._name, reason)


def _call_corr(data: Any) -> int | None:
    """The correlation id of a CALL whose body could not be decoded, so the caller gets an error."""
    import msgpack

    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 - garbage has no correlation id
        return None
    if type(raw) is list and len(raw) == 5 and raw[0] == Kind.CALL and type(raw[1]) is int and raw[1] > 0:
        return int(raw[1])
    return None


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _flatten_record(record: logging.LogRecord) -> None:
    """Reduce a record to plain text fields (message formatted, exception as text, no extras)."""
    if record.args:
        record.msg, record.args = record.getMessage(), None
    if record.exc_info:
        record.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    for extra in set(vars(record)) - _RECORD_FIELDS:
        delattr(record, extra)


class _PicklableRecords(logging.Handler):
    """Wraps Thespian's log handler, which pickles each record to the logger process (and skips
    handler filters): a library that logs unpicklable arguments or extras (websockets does) would
    otherwise get an exception from its own logging call."""

    def __init__(self, inner: logging.Handler) -> None:
        super().__init__(inner.level)
        self.inner = inner

    def handle(self, record: logging.LogRecord) -> bool:
        _flatten_record(record)
        return bool(self.inner.handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        self.inner.emit(record)


def _make_logging_safe() -> None:
    root = logging.getLogger()
    root.handlers = [h if isinstance(h, _PicklableRecords) else _PicklableRecords(h) for h in root.handlers]


def _set_title(name: str, actor: str) -> None:
    os.environ.setdefault("SPT_NOENV", "1")  # keep /proc/PID/environ intact (see charger.system)
    try:
        import setproctitle

        setproctitle.setproctitle(f"charger: {name} ({actor})")
    except ImportError:  # optional nicety
        pass
