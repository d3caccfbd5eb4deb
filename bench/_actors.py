"""Actor types and messages the benchmarks run inside the actor system.

They live in an importable module (never ``__main__``): Thespian re-imports an actor class by its
module path in the forked processes, and the framework loads behaviours as ``module:Class``.

Every timing is taken *inside* an actor with `time.perf_counter`, so the figures exclude the
benchmark process's own `ask()` round trip. Message class names carry a ``Bench`` prefix because
wire tags are global class names and the test suite already registers ``Ping``/``Pong``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, ClassVar

from thespian.actors import Actor, ActorExitRequest, ChildActorExited

from charger.behaviour import Behaviour, Pending, handles
from charger.errors import CallTimeout, Unavailable
from charger.interfaces import Command, Interface, Requirement
from charger.messages import message
from charger.pickle_allowlist import allow_pickled
from charger.runtime import die_with_parent

__all__ = [
    "DRIVER_ACTOR",
    "ECHO_ACTOR",
    "PROBE_ACTOR",
    "BenchEcho",
    "BenchPing",
    "BenchPong",
    "IAm",
    "MeasureRestarts",
    "PingPongDriver",
    "RawDriver",
    "RawEcho",
    "RawRecreateParent",
    "RawRecreateRun",
    "RawRun",
    "RawSamples",
    "RestartProbe",
    "RestartSamples",
    "RunPingPong",
    "Samples",
    "WhoAreYou",
]

ECHO_ACTOR = "bench._actors:BenchEcho"
DRIVER_ACTOR = "bench._actors:PingPongDriver"
PROBE_ACTOR = "bench._actors:RestartProbe"


# --- framework messages ------------------------------------------------------------------------------
@message
class BenchPing:
    """The request of the messaging benchmark; the echo answers with the same bytes."""

    payload: bytes


@message
class BenchPong:
    payload: bytes


@message
class WhoAreYou:
    """Ask an echo actor for its process id (the restart probe needs it to kill it)."""


@message
class IAm:
    pid: int


@message
class RunPingPong:
    """Benchmark process -> driver: make `n` sequential calls of `BenchPing(payload)` to the peer."""

    n: int
    payload: bytes


@message
class Samples:
    """Driver -> benchmark process: one round-trip time per call, and the loop's wall time (seconds)."""

    seconds: list[float]
    elapsed: float


@message
class MeasureRestarts:
    """Benchmark process -> probe: kill the target `kills` times and time each recovery."""

    kills: int
    retry_s: float = 0.002
    """Pause between two attempts while the target is down."""
    call_timeout: float = 2.0


@message
class RestartSamples:
    seconds: list[float]
    """SIGKILL -> first answer from the new process, per kill."""
    attempts: list[int]
    """Calls made per kill until the new process answered (1 = the first call already did)."""


ECHO = Interface(name="bench-echo", commands=(Command(BenchPing, BenchPong), Command(WhoAreYou, IAm)))


# --- framework behaviours -----------------------------------------------------------------------------
class BenchEcho(Behaviour):
    """Answers `BenchPing` with the same payload, and `WhoAreYou` with its PID."""

    description = "Benchmark echo."
    provides = {"echo": ECHO}
    config_schema: ClassVar = {"type": "object", "additionalProperties": False, "properties": {}}

    @handles(BenchPing)
    def on_ping(self, msg: BenchPing) -> BenchPong:
        return BenchPong(payload=msg.payload)

    @handles(WhoAreYou)
    def on_who(self, msg: WhoAreYou) -> IAm:
        return IAm(pid=os.getpid())


class PingPongDriver(Behaviour):
    """Calls its peer sequentially: each call is issued when the previous reply has arrived."""

    description = "Benchmark driver: sequential calls to the peer, timed inside this actor."
    requires = {"peer": Requirement(interface=ECHO)}
    config_schema: ClassVar = {"type": "object", "additionalProperties": False, "properties": {}}

    @handles(RunPingPong)
    def on_run(self, msg: RunPingPong) -> Generator[Pending, Any, Samples]:
        peer = self.connections["peer"][0]
        ping = BenchPing(payload=msg.payload)
        clock = time.perf_counter
        samples: list[float] = []
        started = clock()
        for _ in range(msg.n):
            t0 = clock()
            pong = yield self.call(peer, ping)
            samples.append(clock() - t0)
            if pong.payload != msg.payload:  # after the clock: a correctness check, not part of the cost
                raise RuntimeError("echo changed the payload")
        return Samples(seconds=samples, elapsed=clock() - started)


class RestartProbe(Behaviour):
    """Kills its target by PID and times until a new process answers a call through the registry."""

    description = "Benchmark probe: SIGKILL the target, time until the restarted target answers."
    requires = {"target": Requirement(interface=ECHO)}
    config_schema: ClassVar = {"type": "object", "additionalProperties": False, "properties": {}}

    @handles(MeasureRestarts)
    def on_measure(self, msg: MeasureRestarts) -> Generator[Pending, Any, RestartSamples]:
        target = self.connections["target"][0]
        clock = time.perf_counter
        samples: list[float] = []
        attempts: list[int] = []
        for _ in range(msg.kills):
            old = (yield self.call(target, WhoAreYou(), timeout=msg.call_timeout)).pid
            os.kill(old, signal.SIGKILL)
            t0 = clock()
            tries = 0
            while True:
                tries += 1
                try:
                    who = yield self.call(target, WhoAreYou(), timeout=msg.call_timeout)
                except (Unavailable, CallTimeout):
                    # down (unregistered) or the call went to the dead address before Unbound came
                    who = None
                if who is not None and who.pid != old:
                    break
                yield self._sleep(msg.retry_s)
            samples.append(clock() - t0)
            attempts.append(tries)
        return RestartSamples(seconds=samples, attempts=attempts)

    def _sleep(self, seconds: float) -> Pending:
        done = Pending()
        self.start_timer(seconds, lambda: done.resolve(None))
        return done


# --- bare Thespian baselines (pickled tuples and bytes, no charger runtime) ---------------------------
@dataclass(frozen=True, slots=True)
class RawRun:
    """Benchmark process -> `RawDriver`: send `frame` to the echo `n` times, sequentially."""

    n: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class RawSamples:
    seconds: list[float]
    elapsed: float


@dataclass(frozen=True, slots=True)
class RawRecreateRun:
    """Benchmark process -> `RawRecreateParent`: kill and re-create the child `kills` times."""

    kills: int


_PID_QUESTION = "pid"


# The bare-Thespian baseline pickles these dataclasses through the transport, whose unpickler takes
# only an allowlist (charger.pickle_allowlist, DESIGN §8).
allow_pickled(RawRun, RawSamples, RawRecreateRun)


class RawEcho(Actor):  # type: ignore[misc]
    """Returns any bytes unchanged (no decode); answers ``"pid"`` with its PID."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        die_with_parent()  # thespian.md §4: orphans otherwise survive their parent's SIGKILL
        super().__init__(*args, **kwargs)

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 - Thespian's name
        if isinstance(msg, bytes):
            self.send(sender, msg)
        elif msg == _PID_QUESTION:
            self.send(sender, os.getpid())


class RawDriver(Actor):  # type: ignore[misc]
    """Plain-Thespian counterpart of `PingPongDriver`: bytes out, bytes back, timed here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        die_with_parent()
        super().__init__(*args, **kwargs)
        self._echo: Any = None
        self._requester: Any = None
        self._frame = b""
        self._left = 0
        self._samples: list[float] = []
        self._t0 = 0.0
        self._started = 0.0

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 - Thespian's name
        if isinstance(msg, RawRun):
            if self._echo is None:
                self._echo = self.createActor(RawEcho)
            self._requester, self._frame, self._left, self._samples = sender, msg.frame, msg.n, []
            self._started = self._t0 = time.perf_counter()
            self.send(self._echo, self._frame)
        elif isinstance(msg, bytes) and self._left > 0:
            now = time.perf_counter()
            self._samples.append(now - self._t0)
            self._left -= 1
            if self._left == 0:
                self.send(self._requester, RawSamples(self._samples, now - self._started))
                return
            self._t0 = time.perf_counter()
            self.send(self._echo, self._frame)


class RawRecreateParent(Actor):  # type: ignore[misc]
    """Plain-Thespian restart baseline: SIGKILL the child, re-create it on `ChildActorExited`,
    time until the new child answers its first message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        die_with_parent()
        super().__init__(*args, **kwargs)
        self._child: Any = None
        self._requester: Any = None
        self._left = 0
        self._samples: list[float] = []
        self._t0: float | None = None

    def receiveMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 - Thespian's name
        if isinstance(msg, RawRecreateRun):
            self._requester, self._left, self._samples, self._t0 = sender, msg.kills, [], None
            if self._child is None:
                self._child = self.createActor(RawEcho)
            self.send(self._child, _PID_QUESTION)
        elif isinstance(msg, int) and not isinstance(msg, bool) and self._left > 0:
            if self._t0 is not None:  # the re-created child answered
                self._samples.append(time.perf_counter() - self._t0)
                self._left -= 1
                if self._left == 0:
                    self.send(self._requester, RawSamples(self._samples, sum(self._samples)))
                    return
            os.kill(msg, signal.SIGKILL)
            self._t0 = time.perf_counter()
        elif isinstance(msg, ChildActorExited):
            # Thespian may report one exit twice (thespian.md §4): only the current child counts
            if self._child is not None and msg.childAddress == self._child:
                self._child = self.createActor(RawEcho)
                self.send(self._child, _PID_QUESTION)
        elif isinstance(msg, ActorExitRequest):
            pass  # Thespian stops the children and this actor after this returns
