"""A TCP relay between the station's backend link and its CSMS that can take the CSMS "offline".

Offline means what a charger sees when its backend is unreachable: live connections are cut and new
ones are refused (the listening socket is closed), until the relay is put online again on the same port.
The relay runs an asyncio loop on its own thread; every public method is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["CsmsRelay"]

_CHUNK = 65536


class CsmsRelay:
    """Listens on 127.0.0.1:`port` and forwards every connection to 127.0.0.1:`upstream_port`."""

    def __init__(self, port: int, upstream_port: int) -> None:
        self.port, self.upstream_port = port, upstream_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="csms-relay", daemon=True)
        self._thread.start()
        self.set_online(True)

    @property
    def online(self) -> bool:
        return self._server is not None

    def set_online(self, online: bool) -> None:
        asyncio.run_coroutine_threadsafe(self._set_online(online), self._loop).result(timeout=10.0)

    def close(self) -> None:
        self.set_online(False)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        self._loop.close()

    async def _set_online(self, online: bool) -> None:
        if online and self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        elif not online and self._server is not None:
            self._server.close()
            self._server = None
            for writer in list(self._writers):
                writer.transport.abort()  # the link sees a reset, as when a route disappears
            self._writers.clear()

    async def _relay(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            down_w.transport.abort()
            return
        self._writers |= {down_w, up_w}
        try:
            await asyncio.gather(self._pump(down_r, up_w), self._pump(up_r, down_w))
        finally:
            for w in (down_w, up_w):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()  # one side closed: so does the other, as a plain TCP path would
