"""The control board seen from the host: the `Board` interface and `SerialBoard`, its pyserial driver.

`SerialBoard` speaks the framing of `charger.protocols.board_frames` (specified in
``docs/board-protocol.md``). It is blocking by design and meant for an actor's I/O thread, never
its message loop (DESIGN §4). Every public method takes one lock, so calls from several executor
threads are serialised: a command holds the line for at most ``(1 + retries) * ack_timeout`` and
waits for a `poll` in progress, so keep poll timeouts short (50 ms) when commands come from
another thread, or the heartbeat may reach the board too late.

Commands wait for their Ack (`ack_timeout`, default 0.2 s), are retried once with the same sequence
number (all commands are idempotent, so a duplicate is harmless), and then raise `BoardTimeout`.
A Nack raises `BoardRefused`. A dead port (adapter unplugged, closed driver) raises `BoardLinkError`.
Garbage on the line is counted and dropped; it never raises.

The driver does not heartbeat by itself: the watchdog must be fed by the control loop that makes
the decisions, so that a hung actor lets the board fall back to its safe state.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import serial
from charger.protocols.board_frames import (
    BOARD_TO_HOST,
    Ack,
    BoardStatus,
    Command,
    DropReason,
    FrameDecoder,
    Heartbeat,
    Nack,
    NackReason,
    ResetFaults,
    SetLock,
    SetPwm,
    SetRelays,
    encode,
)

__all__ = [
    "Board",
    "BoardError",
    "BoardLinkError",
    "BoardRefused",
    "BoardTimeout",
    "LinkStats",
    "SerialBoard",
]


class BoardError(Exception):
    """Base of everything the board driver raises."""


class BoardTimeout(BoardError, TimeoutError):
    """No Ack or Nack for a command, after the retry. The board may be off, hung or disconnected."""


class BoardRefused(BoardError):
    """The board answered Nack: the command had no effect."""

    def __init__(self, command: str, reason: NackReason) -> None:
        super().__init__(f"board refused {command}: {reason.name}")
        self.reason = reason


class BoardLinkError(BoardError):
    """The serial port itself failed (cannot open, adapter gone, driver closed). Reopen to recover."""


class Board(Protocol):
    """What the EVSE manager needs from a control board. Commands return once the board applied them."""

    def set_pwm(self, duty_permille: int | None) -> None:
        """Pilot PWM duty in ‰ (0 holds the pilot at -12 V, state F), or None to stop PWM (+12 V)."""
        ...

    def set_relays(self, closed: bool) -> None: ...

    def set_lock(self, locked: bool) -> None: ...

    def reset_faults(self) -> None:
        """Clear latched faults; needed after power-on and after a watchdog trip."""
        ...

    def heartbeat(self) -> None:
        """Feed the board's watchdog (any command does too)."""
        ...

    def poll(self, timeout: float) -> list[BoardStatus]:
        """Wait up to `timeout` s for status changes; return them oldest first (empty if none)."""
        ...

    def read_status(self) -> BoardStatus | None:
        """The latest status received, or None before the first one. No I/O."""
        ...

    def status_age(self) -> float | None:
        """Seconds since the latest status arrived (None before the first): a board sends one at
        least every 100 ms, so an age of a few hundred ms means the link or the board is broken."""
        ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LinkStats:
    """Counters of the host side of the link, for logs and health checks."""

    frames: int
    """Valid frames received."""
    dropped: Mapping[DropReason, int]
    garbage_bytes: int
    retries: int
    """Commands sent a second time because the first Ack did not arrive in time."""
    timeouts: int
    """Commands that ended in BoardTimeout."""
    nacks: int
    stale_answers: int
    """Acks or Nacks for a command no longer waited for (late answers to a retried command)."""
    statuses_lost: int
    """Statuses missed, from gaps in the board's sequence numbers."""
    board_restarts: int
    """Statuses with sequence number 0, which a board sends only first after power-on."""


_READ_SLICE_S = 0.02  # pyserial read timeout: how often a wait re-checks its deadline


class SerialBoard:
    """The real driver: one board on one serial port (115200 8N1 by default)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        ack_timeout: float = 0.2,
        retries: int = 1,
        frame_gap: float = 0.05,
    ) -> None:
        """Open `port` and discard whatever the board sent before we listened.

        `frame_gap` is the silence after which a partial frame is dropped as truncated; keep it above
        a USB-serial adapter's latency timer (16 ms on FTDI), which can split a frame.
        """
        if not 0.1 <= ack_timeout <= 0.3:
            raise ValueError("ack_timeout must be within 0.1..0.3 s (the protocol's Ack deadline)")
        self._ack_timeout, self._retries, self._frame_gap = ack_timeout, retries, frame_gap
        self._lock = threading.Lock()
        try:
            # write_timeout: a board that stopped reading must not block us forever on a full buffer
            self._port = serial.Serial(port, baudrate, timeout=_READ_SLICE_S, write_timeout=ack_timeout)
        except (serial.SerialException, OSError) as exc:
            raise BoardLinkError(f"cannot open {port}: {exc}") from exc
        try:
            self._port.reset_input_buffer()  # statuses queued before we listened are history
        except (serial.SerialException, OSError) as exc:
            self._port.close()
            raise BoardLinkError(f"cannot use {port}: {exc}") from exc
        self._decoder = FrameDecoder(BOARD_TO_HOST)
        self._seq = 0
        self._status: BoardStatus | None = None
        self._status_at: float | None = None
        self._changes: list[BoardStatus] = []
        self._last_rx = time.monotonic()
        self._retried = self._timeouts = self._nacks = self._stale = self._lost = self._restarts = 0
        self._closed = False

    # --- commands -----------------------------------------------------------------------------------

    def set_pwm(self, duty_permille: int | None) -> None:
        self._command(lambda seq: SetPwm(seq=seq, duty_permille=duty_permille))

    def set_relays(self, closed: bool) -> None:
        self._command(lambda seq: SetRelays(seq=seq, closed=closed))

    def set_lock(self, locked: bool) -> None:
        self._command(lambda seq: SetLock(seq=seq, locked=locked))

    def reset_faults(self) -> None:
        self._command(lambda seq: ResetFaults(seq=seq))

    def heartbeat(self) -> None:
        self._command(lambda seq: Heartbeat(seq=seq))

    # --- statuses -----------------------------------------------------------------------------------

    def poll(self, timeout: float) -> list[BoardStatus]:
        """Read the line until a status change arrives or `timeout` s pass; return the changes."""
        with self._lock:
            self._check_open()
            deadline = time.monotonic() + timeout
            while not self._changes:
                self._receive(wait=timeout > 0)
                if time.monotonic() >= deadline:
                    break
            changes, self._changes = self._changes, []
            return changes

    def read_status(self) -> BoardStatus | None:
        with self._lock:
            return self._status

    def status_age(self) -> float | None:
        with self._lock:
            return None if self._status_at is None else time.monotonic() - self._status_at

    def stats(self) -> LinkStats:
        with self._lock:
            return LinkStats(
                frames=self._decoder.frames,
                dropped=self._decoder.dropped,
                garbage_bytes=self._decoder.garbage_bytes,
                retries=self._retried,
                timeouts=self._timeouts,
                nacks=self._nacks,
                stale_answers=self._stale,
                statuses_lost=self._lost,
                board_restarts=self._restarts,
            )

    def close(self) -> None:
        """Close the port. Idempotent; later calls raise BoardLinkError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._port.close()

    def __enter__(self) -> SerialBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the line -----------------------------------------------------------------------------------

    def _command(self, make: Callable[[int], Command]) -> None:
        with self._lock:
            self._check_open()
            self._seq = (self._seq + 1) & 0xFF
            msg = make(self._seq)
            frame = encode(msg)
            for attempt in range(1 + self._retries):
                if attempt:
                    self._retried += 1
                self._write(frame)
                answer = self._await_answer(msg.seq, time.monotonic() + self._ack_timeout)
                if isinstance(answer, Nack):
                    self._nacks += 1
                    raise BoardRefused(type(msg).__name__, answer.reason)
                if answer is not None:
                    return
            self._timeouts += 1
            # A command that was never answered must not reach a board that comes back later.
            self._port.reset_output_buffer()
            raise BoardTimeout(f"no answer to {type(msg).__name__} (seq {msg.seq}) within {self._ack_timeout} s")

    def _await_answer(self, seq: int, deadline: float) -> Ack | Nack | None:
        while time.monotonic() < deadline:
            for answer in self._receive(wait=True):
                if answer.seq == seq:
                    return answer
                self._stale += 1
        return None

    def _receive(self, *, wait: bool) -> list[Ack | Nack]:
        """Read what the line has (waiting up to one read slice if `wait`); keep statuses, return answers."""
        try:
            data = bytes(self._port.read(1)) if wait else b""
            waiting = int(self._port.in_waiting)
            if waiting:
                data += bytes(self._port.read(waiting))
        except (serial.SerialException, OSError) as exc:
            raise BoardLinkError(f"serial port failed: {exc}") from exc
        now = time.monotonic()
        if data:
            self._last_rx = now
            messages = self._decoder.feed(data)
        elif self._decoder.pending and now - self._last_rx > self._frame_gap:
            messages = self._decoder.expire()
        else:
            return []
        answers: list[Ack | Nack] = []
        for msg in messages:
            if isinstance(msg, BoardStatus):
                self._on_status(msg)
            else:
                answers.append(msg)
        return answers

    def _on_status(self, status: BoardStatus) -> None:
        previous = self._status
        if previous is not None:
            if status.seq == 0:
                self._restarts += 1
            else:  # after 255 comes 1: 0 is never reused
                self._lost += (status.seq - (previous.seq % 255 + 1)) % 255
        self._status, self._status_at = status, time.monotonic()
        if previous is None or dataclasses.replace(previous, seq=status.seq) != status:
            self._changes.append(status)

    def _write(self, frame: bytes) -> None:
        try:
            self._port.write(frame)
        except serial.SerialTimeoutException:
            return  # the board is not draining the line: the Ack wait below times out and says so
        except (serial.SerialException, OSError) as exc:
            raise BoardLinkError(f"serial port failed: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise BoardLinkError("the board driver is closed")
