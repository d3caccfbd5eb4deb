"""Actor types for runtime and supervision tests. They log every start and stop to files in the
state dir, so a test can check exactly which children were restarted, and in what order."""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any, ClassVar

from charger.behaviour import Behaviour, Pending, handles
from charger.errors import CallError, Rejected
from charger.interfaces import Command, Interface, Requirement
from charger.messages import message


@message
class Ping:
    payload: bytes = b""


@message
class Pong:
    payload: bytes
    name: str
    pid: int


@message
class Crash:
    """Make the handler raise."""


@message
class StopNormally:
    """Make the actor stop with reason normal."""


@message
class Sleep:
    """Block the actor's thread (a hung device, for timeouts)."""

    seconds: float


@message
class RefuseMe:
    """The handler answers with Rejected (no crash)."""


@message
class Relay:
    """Ask a Caller to call its peer with Ping and report what happened."""

    timeout: float = 5.0


@message
class RelayResult:
    ok: bool
    code: str
    pid: int


@message
class Blocking:
    """Run a blocking function on the I/O thread and answer with what it returned."""

    value: int
    seconds: float = 0.05


@message
class Blocked:
    value: int
    thread: str


PROBE = Interface(name="probe", commands=(Command(Ping, Pong),))


def _log_line(state_dir: str, file: str, line: str) -> None:
    with open(os.path.join(state_dir, file), "a", encoding="utf-8") as f:
        f.write(line + "\n")


def read_log(state_dir: str, file: str) -> list[str]:
    path = os.path.join(state_dir, file)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return f.read().split()


class Probe(Behaviour):
    provides = {"probe": PROBE}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "init_delay": {"type": "number", "minimum": 0, "default": 0},
            "fail_init": {"type": "boolean", "default": False},
            "fail_on_starts": {"type": "array", "items": {"type": "integer"}, "default": []},
        },
    }

    def init(self) -> None:
        if self.config.get("fail_init"):
            raise RuntimeError("init refused by config")
        _log_line(self.state_dir, f"{self.name}.attempts", "x")
        if len(read_log(self.state_dir, f"{self.name}.attempts")) in self.config["fail_on_starts"]:
            raise RuntimeError("init refused on this start")
        time.sleep(self.config.get("init_delay", 0))
        _log_line(self.state_dir, "starts.log", self.name)

    def terminate(self, reason: str) -> None:
        _log_line(self.state_dir, "stops.log", self.name)

    @handles(Ping)
    def on_ping(self, msg: Ping) -> Pong:
        return Pong(payload=msg.payload, name=self.name, pid=os.getpid())

    @handles(Crash)
    def on_crash(self, msg: Crash) -> None:
        raise RuntimeError("crash requested")

    @handles(StopNormally)
    def on_stop_normally(self, msg: StopNormally) -> None:
        self.stop("normal")

    @handles(Sleep)
    def on_sleep(self, msg: Sleep) -> None:
        time.sleep(msg.seconds)

    @handles(RefuseMe)
    def on_refuse(self, msg: RefuseMe) -> None:
        raise Rejected("refused on purpose")


class Caller(Probe):
    """A probe that requires another probe and relays calls to it."""

    requires = {"peer": Requirement(interface=PROBE)}

    @handles(Relay)
    def on_relay(self, msg: Relay) -> Generator[Pending, Any, RelayResult]:
        peer = self.connections["peer"][0]
        try:
            pong = yield self.call(peer, Ping(), timeout=msg.timeout)
        except CallError as exc:
            return RelayResult(ok=False, code=exc.code, pid=0)
        return RelayResult(ok=True, code="", pid=pong.pid)


class IoUser(Probe):
    @handles(Blocking)
    def on_blocking(self, msg: Blocking) -> Generator[Pending, Any, Blocked]:
        import threading

        def work() -> tuple[int, str]:
            time.sleep(msg.seconds)
            return msg.value * 2, threading.current_thread().name

        value, thread = yield self.run_io(work)
        return Blocked(value=value, thread=thread)


@message
class ArmTimers:
    """Start timers named `keep` and `cancel` (same delay), cancel the second, and a repeating one."""

    delay: float


@message
class TimersFired:
    names: list[str]


@message
class GetFired:
    pass


@message
class AsyncDouble:
    value: int


class TimerUser(Probe):
    def init(self) -> None:
        super().init()
        self.fired: list[str] = []

    @handles(ArmTimers)
    def on_arm(self, msg: ArmTimers) -> None:
        self.start_timer(msg.delay, lambda: self.fired.append("keep"))
        doomed = self.start_timer(msg.delay, lambda: self.fired.append("cancel"))
        doomed.cancel()
        repeating = self.start_timer(msg.delay / 4, lambda: self._tick(repeating), repeat=True)

    def _tick(self, timer: Any) -> None:
        self.fired.append("repeat")
        if self.fired.count("repeat") == 3:
            timer.cancel()

    @handles(GetFired)
    def on_get_fired(self, msg: GetFired) -> TimersFired:
        return TimersFired(names=list(self.fired))

    @handles(AsyncDouble)
    def on_async_double(self, msg: AsyncDouble) -> Generator[Pending, Any, Blocked]:
        import asyncio
        import threading

        async def work() -> tuple[int, str]:
            await asyncio.sleep(0.01)
            return msg.value * 2, threading.current_thread().name

        value, thread = yield self.run_async(work())
        return Blocked(value=value, thread=thread)
