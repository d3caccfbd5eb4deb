"""The CSMS simulator on its own thread and asyncio loop, for synchronous tests and actors.

`CsmsThread` is a context manager: entering starts the loop thread and the server, leaving stops both.
Its methods block the caller until the loop has done the work; `run` gives access to anything else on
the `CsmsSimulator` (``csms.run(lambda sim: sim.go_offline(duration=5))``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar

from charger.sim.csms_record import CallAnswer, EventKind, Frame, LinkEvent
from charger.sim.csms_server import CsmsSimulator, OutageMode

__all__ = ["CsmsThread"]

_T = TypeVar("_T")
_MARGIN = 5.0  # seconds the caller waits beyond the loop-side timeout before giving up on the loop itself


class CsmsThread:
    """A `CsmsSimulator` served from a background thread."""

    def __init__(self, simulator: CsmsSimulator) -> None:
        self.simulator = simulator
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="csms-simulator", daemon=True)

    def __enter__(self) -> CsmsThread:
        self._thread.start()
        try:
            self.run(lambda sim: sim.start())
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.run(lambda sim: sim.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        async def shut_down() -> None:
            await self._loop.shutdown_asyncgens()
            await self._loop.shutdown_default_executor()  # ocpp validates schemas on executor threads

        asyncio.run_coroutine_threadsafe(shut_down(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def run(self, work: Callable[[CsmsSimulator], Coroutine[Any, Any, _T]], timeout: float | None = 60.0) -> _T:
        """Run `work(simulator)` on the loop and return its result (or raise its exception)."""

        async def on_loop() -> _T:
            return await work(self.simulator)

        return asyncio.run_coroutine_threadsafe(on_loop(), self._loop).result(timeout)

    # -- the common operations, blocking ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.simulator.url

    @property
    def port(self) -> int:
        return self.simulator.port

    def frames(self, cp_id: str | None = None) -> list[Frame]:
        return self.simulator.log.frames(cp_id)

    def events(self, kind: EventKind | None = None) -> list[LinkEvent]:
        return self.simulator.log.events(kind)

    def next_seq(self) -> int:
        return self.simulator.log.next_seq

    def wait_for(self, match: Callable[[Frame], bool], *, after: int = 0, timeout: float = 10.0) -> Frame:
        return self.run(lambda sim: sim.log.wait_for(match, after=after, timeout=timeout), timeout + _MARGIN)

    def wait_for_event(
        self,
        kind: EventKind,
        *,
        after: int = 0,
        where: Callable[[LinkEvent], bool] | None = None,
        timeout: float = 10.0,
    ) -> LinkEvent:
        return self.run(
            lambda sim: sim.log.wait_for_event(kind, after=after, where=where, timeout=timeout), timeout + _MARGIN
        )

    def wait_connected(self, cp_id: str, timeout: float = 10.0) -> None:
        self.run(lambda sim: sim.wait_connected(cp_id, timeout), timeout + _MARGIN)

    def call_action(
        self, cp_id: str, action: str, payload: Mapping[str, Any], *, timeout: float = 30.0, validate: bool = True
    ) -> CallAnswer:
        return self.run(
            lambda sim: sim.call_action(cp_id, action, payload, timeout=timeout, validate=validate), timeout + _MARGIN
        )

    def send_raw(self, cp_id: str, text: str) -> Frame:
        return self.run(lambda sim: sim.send_raw(cp_id, text))

    def go_offline(self, *, mode: OutageMode = OutageMode.CONNECTION_REFUSED, duration: float | None = None) -> None:
        self.run(lambda sim: sim.go_offline(mode=mode, duration=duration))

    def go_online(self) -> None:
        self.run(lambda sim: sim.go_online())
