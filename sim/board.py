"""Simulated charger control board on a pseudo-terminal: the far end of `charger.hal.board.SerialBoard`.

The simulator plays the board's firmware: it reads host frames from the pty master, answers each
command with an Ack or Nack, and sends a `BoardStatus` on every change and every `status_interval_s`.
It models what a real board measures and enforces on its own:

- the control pilot, computed from the vehicle side (`ev_plug`, `ev_set_state`, `ev_error_e`, ...)
  and the PWM the host commands (0 ‰ drives the pilot to -12 V, which reads as F);
- relays with a feedback contact, which can be made to weld (`weld_relays`);
- a connector lock with a feedback contact, which can be made to jam (`jam_lock`);
- the residual-current monitor: above 6 mA DC or 30 mA AC the board opens the relays and latches
  ``rcd_tripped`` until a ResetFaults arrives while nothing is plugged in;
- the interlock: relays close only in pilot C or D with PWM running, and open when the pilot leaves C/D;
- THE WATCHDOG (DESIGN §7, the last line of safety): no valid host frame for `watchdog_s` and the
  board opens the relays, stops PWM and latches ``watchdog_tripped``. The board also powers on in
  that state, so a host always starts with ResetFaults.

One thread per simulator; every public method is thread-safe. Board time comes from `clock`
(default `time.monotonic`), so a test can drive the watchdog with a manual clock.
"""

from __future__ import annotations

import dataclasses
import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

from charger.protocols.board_frames import (
    HOST_TO_BOARD,
    Ack,
    BoardStatus,
    Command,
    DropReason,
    FrameDecoder,
    Nack,
    NackReason,
    Pilot,
    ResetFaults,
    SetLock,
    SetPwm,
    SetRelays,
    encode,
)
from charger.sim._pty import PtyPort

__all__ = ["BoardSimulator", "EvView", "SimStats"]

_TICK_MS = 20  # how long the thread waits for host bytes before it re-checks watchdog, RCD and status
_FRAME_GAP_S = 0.05  # host silence after which a partial frame counts as truncated (line time, not board time)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EvView:
    """What the vehicle sees on the cable: what a car simulator follows."""

    duty_percent: float | None
    """PWM duty in percent; None when PWM is off (steady +12 V); 0.0 when held at -12 V (state F)."""
    relays_closed: bool
    """Power is on the cable (the contactor's actual position, welded or not)."""
    locked: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SimStats:
    """Counters of the board side of the link."""

    frames: int
    dropped: Mapping[DropReason, int]
    garbage_bytes: int
    acks: int
    nacks: int
    statuses_sent: int
    watchdog_trips: int
    rcd_trips: int


class BoardSimulator:
    """A control board behind a pty. `port` is what `SerialBoard` opens."""

    def __init__(
        self,
        *,
        link: str | os.PathLike[str] | None = None,
        watchdog_s: float = 0.5,
        status_interval_s: float = 0.05,
        rcd_dc_trip_ma: float = 6.0,
        rcd_ac_trip_ma: float = 30.0,
        has_lock: bool = True,
        clock: Callable[[], float] = time.monotonic,
        observer: Callable[[float, BoardStatus], None] | None = None,
    ) -> None:
        """`observer` is called (board time, status) whenever the relay contact, pilot, PWM or a latched
        fault changes: the safety record a fault-injection run checks (`charger.chaos`). It runs with the
        board's lock held, so it must be quick and must not call back into the simulator."""
        if watchdog_s <= 0 or status_interval_s <= 0:
            raise ValueError("watchdog_s and status_interval_s must be positive")
        self._watchdog_s, self._status_interval_s = watchdog_s, status_interval_s
        self._rcd_dc_trip_ma, self._rcd_ac_trip_ma = rcd_dc_trip_ma, rcd_ac_trip_ma
        self._has_lock, self._clock = has_lock, clock
        self._observer = observer
        self._observed: tuple[object, ...] | None = None
        self._lock = threading.Lock()  # guards every field below; the thread and callers share them
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # The vehicle, and the hardware that survives a power cycle.
        self._plugged = False
        self._ev_state = Pilot.B
        self._error_e = False
        self._diode_failed = False
        self._residual_ma, self._residual_dc = 0.0, True
        self._locked = False
        self._lock_jammed = False
        self._welded = False
        self._contact = False
        self._decoder = FrameDecoder(HOST_TO_BOARD)  # counters cover the simulator's whole life
        self._acks = self._nacks = self._statuses_sent = self._watchdog_trips = self._rcd_trips = 0
        self._power_on()
        self._pty = PtyPort(link)  # last: nothing above can leak its descriptors

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The device a driver opens: the symlink if one was given, else the slave, e.g. ``/dev/pts/3``."""
        return self._pty.port

    def start(self) -> None:
        """Power the board on (again): outputs off, watchdog tripped, then serve the line on a thread."""
        with self._lock:
            if self._thread is not None:
                return
            self._power_on()
            self._pty.drain()
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="board-sim", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Power the board off: the thread ends and nothing answers, but the port stays (like a dead MCU
        behind a USB-serial adapter). `start` boots it again."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            thread.join()

    def close(self) -> None:
        """Stop and release the pty and the symlink. Idempotent."""
        self.stop()
        self._pty.close()

    def __enter__(self) -> BoardSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the vehicle side ---------------------------------------------------------------------------

    def ev_plug(self) -> None:
        """Connect a vehicle: pilot B."""
        self._ev(plugged=True, state=Pilot.B)

    def ev_unplug(self) -> None:
        """Disconnect: pilot A; the vehicle's error, failed diode and residual current go with it."""
        with self._lock:
            self._plugged, self._error_e, self._diode_failed, self._residual_ma = False, False, False, 0.0
            self._update(self._clock())

    def ev_set_state(self, state: Literal["B", "C", "D"] | Pilot) -> None:
        """The vehicle switches its pilot resistors: B (not ready), C (ready), D (ready, ventilation)."""
        pilot = Pilot(state)
        if pilot not in (Pilot.B, Pilot.C, Pilot.D):
            raise ValueError(f"a vehicle presents B, C or D, not {pilot}")
        self._ev(plugged=None, state=pilot)

    def ev_error_e(self) -> None:
        """Short the pilot to PE (state E) until the next `ev_set_state`, `ev_plug` or `ev_unplug`."""
        with self._lock:
            self._error_e = True
            self._update(self._clock())

    def ev_diode_fail(self, failed: bool) -> None:
        """Remove (or restore) the vehicle's pilot diode until unplugged; the board notices while PWM runs."""
        with self._lock:
            self._diode_failed = failed

    def ev_rcd_current(self, milliamps: float, *, dc: bool = True) -> None:
        """Residual current through the vehicle; trips above 6 mA DC or 30 mA AC (by default)."""
        if milliamps < 0:
            raise ValueError("residual current is a magnitude")
        with self._lock:
            self._residual_ma, self._residual_dc = milliamps, dc
            self._update(self._clock())

    def ev_view(self) -> EvView:
        """PWM, power and lock as the vehicle sees them."""
        with self._lock:
            duty = None if self._pwm is None else self._pwm / 10
            return EvView(duty_percent=duty, relays_closed=self._contact, locked=self._locked)

    def _ev(self, *, plugged: bool | None, state: Pilot) -> None:
        with self._lock:
            if plugged is not None:
                self._plugged = plugged
            if not self._plugged:
                raise RuntimeError("no vehicle is plugged in: call ev_plug first")
            self._ev_state, self._error_e = state, False
            self._update(self._clock())

    # --- the board side -----------------------------------------------------------------------------

    def weld_relays(self, welded: bool) -> None:
        """Fault injection: a welded contactor stays closed (once closed) whatever the board commands."""
        with self._lock:
            self._welded = welded
            self._update(self._clock())

    def jam_lock(self, jammed: bool) -> None:
        """Fault injection: a jammed lock actuator keeps its feedback where it is, whatever SetLock says.

        The board still Acks SetLock (its firmware drove the actuator); only the feedback tells the host
        that the lock did not move, which is how a real host notices a lock failure."""
        with self._lock:
            self._lock_jammed = jammed

    def inject(self, data: bytes) -> None:
        """Write raw bytes towards the host, between whole frames (garbage, corrupted or foreign frames)."""
        self._pty.write(data)

    def status(self) -> BoardStatus:
        """What the board reports right now (with the sequence number of the last status it sent)."""
        with self._lock:
            return self._measure(self._status_seq)

    def stats(self) -> SimStats:
        with self._lock:
            return SimStats(
                frames=self._decoder.frames,
                dropped=self._decoder.dropped,
                garbage_bytes=self._decoder.garbage_bytes,
                acks=self._acks,
                nacks=self._nacks,
                statuses_sent=self._statuses_sent,
                watchdog_trips=self._watchdog_trips,
                rcd_trips=self._rcd_trips,
            )

    # --- firmware: everything below runs with self._lock held, except _run -------------------------

    def _power_on(self) -> None:
        self._pwm: int | None = None
        self._relays = False
        self._watchdog_tripped = True  # no host has spoken yet: boot into the safe state
        self._rcd_tripped = False
        self._last_host = self._clock()
        self._decoder.expire()  # a frame cut by the power cycle is lost (and counted as truncated)
        self._status_seq = 0
        self._last_sent: tuple[float, BoardStatus] | None = None
        self._update(self._last_host)

    def _run(self) -> None:
        poller = select.poll()  # poll, not epoll: no descriptor of its own to leak
        poller.register(self._pty.fd, select.POLLIN)
        last_rx = time.monotonic()
        while not self._stopping.is_set():
            data = self._pty.read() if poller.poll(_TICK_MS) else b""
            if data:
                last_rx = time.monotonic()
            out: list[bytes] = []
            with self._lock:
                messages = self._decoder.feed(data)
                if not data and self._decoder.pending and time.monotonic() - last_rx > _FRAME_GAP_S:
                    messages += self._decoder.expire()
                now = self._clock()
                for msg in messages:
                    self._last_host = now  # any valid frame, command or heartbeat, feeds the watchdog
                    answer = self._apply(msg)
                    self._update(now)
                    out += self._status_frame(now, periodic=False)  # the new state before the Ack
                    out.append(encode(answer))
                self._update(now)
                out += self._status_frame(now, periodic=True)
            for frame in out:
                self._pty.write(frame)

    def _apply(self, msg: Command) -> Ack | Nack:
        refusal = self._refusal(msg)
        if refusal is not None:
            self._nacks += 1
            return Nack(seq=msg.seq, reason=refusal)
        self._acks += 1
        return Ack(seq=msg.seq)

    def _refusal(self, msg: Command) -> NackReason | None:
        """Apply `msg` as far as the board's rules allow; return why not, if they do not."""
        match msg:
            case SetPwm(duty_permille=duty):
                if self._watchdog_tripped and duty not in (None, 0):
                    return NackReason.FAULT_ACTIVE  # stopping PWM or signalling F is always allowed
                self._pwm = duty
            case SetRelays(closed=True):
                return self._close_relays()
            case SetRelays(closed=False):
                self._relays = False  # opening is always allowed
            case SetLock(locked=locked):
                if not self._has_lock:
                    return NackReason.UNSUPPORTED
                if not self._lock_jammed:
                    self._locked = locked
            case ResetFaults():
                return self._reset_faults()
        return None  # Heartbeat: receiving it was the point

    def _close_relays(self) -> NackReason | None:
        if self._watchdog_tripped or self._rcd_tripped:
            return NackReason.FAULT_ACTIVE
        if self._pilot() not in (Pilot.C, Pilot.D) or not self._pwm_running():
            return NackReason.INTERLOCK
        self._relays = True
        return None

    def _reset_faults(self) -> NackReason | None:
        self._watchdog_tripped = False  # the host is back and says so on purpose
        if self._rcd_tripped:
            if self._pilot() is not Pilot.A:
                return NackReason.NOT_UNPLUGGED
            self._rcd_tripped = False  # re-trips on the next tick if the residual current persists
        return None

    def _update(self, now: float) -> None:
        """The board's own safety rules, evaluated on every tick and after every change."""
        if not self._watchdog_tripped and now - self._last_host > self._watchdog_s:
            self._watchdog_tripped, self._relays, self._pwm = True, False, None
            self._watchdog_trips += 1
        trip_ma = self._rcd_dc_trip_ma if self._residual_dc else self._rcd_ac_trip_ma
        if self._residual_ma > trip_ma and not self._rcd_tripped:
            self._rcd_tripped, self._relays = True, False
            self._rcd_trips += 1
        if self._pilot() not in (Pilot.C, Pilot.D):
            self._relays = False  # IEC 61851-1: the vehicle stopped asking for power (or left)
        self._contact = self._relays or (self._welded and self._contact)
        if self._observer is not None:
            seen = (self._contact, self._pilot(), self._pwm, self._watchdog_tripped, self._rcd_tripped)
            if seen != self._observed:
                self._observed = seen
                self._observer(now, self._measure(0))

    def _pilot(self) -> Pilot:
        if self._error_e:
            return Pilot.E
        if self._pwm == 0:
            return Pilot.F
        if not self._plugged:
            return Pilot.A
        return self._ev_state

    def _pwm_running(self) -> bool:
        return self._pwm is not None and 0 < self._pwm < 1000

    def _measure(self, seq: int) -> BoardStatus:
        return BoardStatus(
            seq=seq,
            pilot=self._pilot(),
            pwm_permille=self._pwm,
            relays_closed=self._contact,
            rcd_milliamps=min(round(self._residual_ma), 0xFFFF),
            locked=self._locked,
            watchdog_tripped=self._watchdog_tripped,
            rcd_tripped=self._rcd_tripped,
            diode_fault=self._plugged and self._diode_failed and self._pwm_running() and not self._error_e,
            relay_welded=self._contact and not self._relays,
        )

    def _status_frame(self, now: float, *, periodic: bool) -> list[bytes]:
        """A status frame if anything changed (or, when `periodic`, if the interval is up)."""
        current = self._measure(self._status_seq)
        if self._last_sent is not None:
            sent_at, sent = self._last_sent
            due = periodic and now - sent_at >= self._status_interval_s
            if current == sent and not due:
                return []
        # 0 marks the first status after power-on; later ones count 1..255 and wrap to 1
        self._status_seq = 0 if self._last_sent is None else self._status_seq % 255 + 1
        current = dataclasses.replace(current, seq=self._status_seq)
        self._last_sent = (now, current)
        self._statuses_sent += 1
        return [encode(current)]
