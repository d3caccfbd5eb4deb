"""RFID readers seen from the host: the `RfidReader` interface and `SerialRfidReader` on pyserial.

`SerialRfidReader` reads RDM6300-style frames (`charger.protocols.rfid_frames`) and turns them into
`TokenPresented` events. A reader repeats its frame while a card stays in the field; reads of the
same UID less than `hold_s` apart are one presentation, so one event. Bad frames and garbage are
counted and dropped. Blocking, like every driver here: run it on an actor's I/O thread.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import serial
from charger.protocols.rfid_frames import RfidDecoder, RfidDropReason

__all__ = ["RfidLinkError", "RfidReader", "RfidStats", "SerialRfidReader", "TokenPresented"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TokenPresented:
    """A card was held to the reader."""

    uid: str
    """The card's ID as upper-case hex digits (10 for EM4100), as OCPP's idTag / IdToken carries it."""


class RfidLinkError(Exception):
    """The serial port failed (cannot open, adapter gone, driver closed)."""


class RfidReader(Protocol):
    """What an authorization actor needs from a card reader."""

    def poll(self, timeout: float) -> list[TokenPresented]:
        """Wait up to `timeout` s for presentations; return them in order (empty if none)."""
        ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RfidStats:
    frames: int
    dropped: Mapping[RfidDropReason, int]
    garbage_bytes: int
    repeats: int
    """Reads folded into an earlier presentation of the same card."""


_READ_SLICE_S = 0.01


class SerialRfidReader:
    """One reader on one serial port (9600 8N1, as RDM6300 modules ship)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        hold_s: float = 1.0,
        frame_gap: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hold_s, self._frame_gap, self._clock = hold_s, frame_gap, clock
        self._lock = threading.Lock()
        try:
            self._port = serial.Serial(port, baudrate, timeout=_READ_SLICE_S)
            self._port.reset_input_buffer()  # a card read before we listened is not a presentation now
        except (serial.SerialException, OSError) as exc:
            raise RfidLinkError(f"cannot open {port}: {exc}") from exc
        self._decoder = RfidDecoder()
        self._last_seen: dict[str, float] = {}
        self._last_rx = time.monotonic()
        self._repeats = 0
        self._closed = False

    def poll(self, timeout: float) -> list[TokenPresented]:
        with self._lock:
            if self._closed:
                raise RfidLinkError("the reader driver is closed")
            deadline = time.monotonic() + timeout
            events: list[TokenPresented] = []
            while not events:
                events = [TokenPresented(uid=uid) for uid in self._read(wait=timeout > 0) if self._is_new(uid)]
                if time.monotonic() >= deadline:
                    break
            return events

    def stats(self) -> RfidStats:
        with self._lock:
            return RfidStats(
                frames=self._decoder.frames,
                dropped=self._decoder.dropped,
                garbage_bytes=self._decoder.garbage_bytes,
                repeats=self._repeats,
            )

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._port.close()

    def __enter__(self) -> SerialRfidReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, *, wait: bool) -> list[str]:
        try:
            data = bytes(self._port.read(1)) if wait else b""
            waiting = int(self._port.in_waiting)
            if waiting:
                data += bytes(self._port.read(waiting))
        except (serial.SerialException, OSError) as exc:
            raise RfidLinkError(f"serial port failed: {exc}") from exc
        now = time.monotonic()
        if data:
            self._last_rx = now
            return self._decoder.feed(data)
        if self._decoder.pending and now - self._last_rx > self._frame_gap:
            return self._decoder.expire()
        return []

    def _is_new(self, uid: str) -> bool:
        """True if this read starts a presentation; every read of a card held in the field extends it."""
        now = self._clock()
        self._last_seen = {u: t for u, t in self._last_seen.items() if now - t < self._hold_s}
        new = uid not in self._last_seen
        self._last_seen[uid] = now
        if not new:
            self._repeats += 1
        return new
