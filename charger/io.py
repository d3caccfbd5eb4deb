"""Blocking and asyncio I/O for an actor without blocking its message loop.

One daemon thread runs an asyncio loop; blocking functions go to its default executor. Results
are put on a queue and announced by one byte on a socketpair, which the actor watches with
Thespian's ``ThespianWatch``, so every callback and all actor state stay on the actor's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from charger.behaviour import Pending

__all__ = ["IoBridge"]


class IoBridge:
    def __init__(self, name: str) -> None:
        self._rx, self._tx = socket.socketpair()
        self._rx.setblocking(False)
        self._done: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"io:{name}", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._rx.fileno()

    def _post(self, fn: Callable[[], Any]) -> None:
        """Any thread: queue `fn` to run on the actor's thread."""
        self._done.put(fn)
        with contextlib.suppress(OSError):
            self._tx.send(b"\0")

    def poster(self, callback: Callable[[], Any]) -> Callable[[], None]:
        return lambda: self._post(callback)

    def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Pending:
        async def on_executor() -> Any:
            return await self.loop.run_in_executor(None, fn, *args)

        return self.run_coroutine(on_executor())

    def run_coroutine(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> Pending:
        pending = Pending()
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self.loop)

        def finished(fut: Any) -> None:  # runs on the loop thread
            if fut.cancelled():
                self._post(lambda: pending.fail(asyncio.CancelledError()))
            elif fut.exception() is not None:
                exc = fut.exception()
                self._post(lambda: pending.fail(exc))
            else:
                value = fut.result()
                self._post(lambda: pending.resolve(value))

        future.add_done_callback(finished)
        return pending

    def drain(self) -> None:
        """Actor thread: run every queued completion."""
        with contextlib.suppress(BlockingIOError):
            while self._rx.recv(4096):
                pass
        while True:
            try:
                fn = self._done.get_nowait()
            except queue.Empty:
                return
            fn()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=1.0)
        self._rx.close()
        self._tx.close()


async def _as_coroutine(aw: Awaitable[Any]) -> Any:
    return await aw
