"""BoardDriver: one charger control board behind a serial port, as the `BOARD` interface.

Every byte goes through `charger.hal.board.SerialBoard` on the I/O thread, and one task, `_run`,
does all of it in turn: poll statuses, feed the watchdog, apply the outputs asked for. One task
rather than a job per request, because the driver's lock serialises jobs in no particular order and
a burst of commands could then starve the heartbeat; here a heartbeat is never more than one short
poll or one command away.

Outputs are compared with what the board *reports* (feedback), not with what was last sent: the
board opens relays on its own (pilot left C, RCD, watchdog), and an EVSE manager that resends its
wish at 1 Hz must then get them closed again. A board seen with its watchdog tripped after we had
reset it has restarted (or lost us): it is reset again and gets PWM and lock back, but never the
relays, which stay open until the EVSE manager asks again.

The link is "down" when the port fails, when no status arrives for `offline_after_s`, or when
commands time out for that long; the driver then publishes ``online=False`` and reopens the port
every 0.5 s, which is how it finds a restarted SIL rig's new pty behind the same symlink.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, ClassVar

from charger.actors.charging import BOARD, BoardState, SetBoardOutputs
from charger.hal.board import BoardError, BoardLinkError, BoardRefused, BoardTimeout, SerialBoard
from charger.protocols.board_frames import BoardStatus, Pilot

from charger.behaviour import Behaviour, Pending, handles
from charger.errors import Rejected
from charger.lifecycle import Ack

__all__ = ["BoardDriver"]

_SERVE_S = 0.5  # longest stay on the I/O thread: offline checks and the 1 s republish run this often
_WAKE_CHECK_S = 0.02  # a request waits at most about this long for the I/O thread to notice it
_REOPEN_S = 0.5
_REPUBLISH_S = 1.0
_RCD_RESET_EVERY_S = 1.0

_Reading = tuple[BoardStatus | None, float | None]
"""What every I/O job returns: the latest status and its age (no lock is ever taken on the actor thread)."""


def _open(port: str, baudrate: int) -> SerialBoard:
    try:
        return SerialBoard(port, baudrate=baudrate)
    except BoardError:
        raise
    except Exception as exc:  # a path that is no tty (termios.error, ...) is a link that is not there
        raise BoardLinkError(f"cannot open {port}: {exc}") from exc


def _do(board: SerialBoard, command: Callable[..., None], *args: Any) -> _Reading:
    command(*args)
    return board.read_status(), board.status_age()


def _serve(
    board: SerialBoard, heartbeat_s: float, last_beat: float, wake: threading.Event
) -> tuple[list[BoardStatus], BoardStatus | None, float | None, float, bool]:
    """On the I/O thread: read statuses and feed the watchdog until a status changes, the actor
    wakes us (a request) or `_SERVE_S` pass. Returns the changes, the latest status and its age,
    when the last heartbeat went out, and whether it timed out.

    Staying here instead of handing every poll and heartbeat back to the actor thread is what keeps
    an idle connector's board link cheap (bench.park): the actor only wakes up for news."""
    deadline = time.monotonic() + _SERVE_S
    while True:
        now = time.monotonic()
        if now - last_beat >= heartbeat_s:
            last_beat = now
            try:
                board.heartbeat()
            except BoardTimeout:
                return [], board.read_status(), board.status_age(), last_beat, True
            except BoardRefused:
                pass  # silence is judged from the statuses
        changes = board.poll(max(0.0, min(_WAKE_CHECK_S, last_beat + heartbeat_s - time.monotonic())))
        if changes or wake.is_set() or time.monotonic() >= deadline:
            wake.clear()
            return changes, board.read_status(), board.status_age(), last_beat, False


def _close(board: SerialBoard) -> None:
    with contextlib.suppress(Exception):  # the port is gone anyway; closing only frees the descriptor
        board.close()


class BoardDriver(Behaviour):
    description = "A control board on a serial port: pilot, PWM, relays, lock, RCD, watchdog heartbeats."
    provides = {"board": BOARD}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "required": ["port"],
        "properties": {
            "port": {
                "type": "string",
                "minLength": 1,
                "description": "Serial device; a relative path is under the state dir (a SilRig's pty link).",
            },
            "baudrate": {"type": "integer", "minimum": 1, "default": 115200},
            "heartbeat_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 0.25,
                "default": 0.1,
                "description": "Seconds between heartbeats; well below the board's 0.5 s watchdog.",
            },
            "offline_after_s": {
                "type": "number",
                "minimum": 0.2,
                "default": 1.0,
                "description": "Silence (no status, or only timeouts) after which the link counts as down.",
            },
        },
    }

    def init(self) -> None:
        port = self.config["port"]
        self._port = port if os.path.isabs(port) else os.path.join(self.state_dir, port)
        self._board: SerialBoard | None = None
        self._status: BoardStatus | None = None
        """Latest status ever received; stale while offline."""
        self._heard = False
        """A status arrived since the port was (re)opened."""
        self._online = False
        self._down_reason = "not connected yet"
        self._opened_at = self._last_command = -math.inf
        self._failing_since: float | None = None
        """When commands started timing out (None while they are answered)."""
        self._rcd_reset_at = -math.inf
        self._ever_reset = False
        """We reset a board once: a later watchdog trip means it restarted."""
        self._in_trip = False
        self._restarts = 0
        self._wanted: SetBoardOutputs | None = None
        self._apply_due = False
        self._waiters: list[Pending] = []
        self._published: BoardState | None = None
        self._published_at = -math.inf
        self._closing = False
        self._wake = threading.Event()
        self._publish()
        self.run_task(self._run())

    def terminate(self, reason: str) -> None:
        self._closing = True
        board, self._board = self._board, None
        if board is not None:
            _close(board)  # waits for at most one poll or command in progress

    @handles(SetBoardOutputs)
    def on_set_outputs(self, msg: SetBoardOutputs) -> Generator[Pending, Any, Ack]:
        if msg.pwm_permille is not None and not 0 <= msg.pwm_permille <= 1000:
            raise Rejected(f"pwm_permille must be 0..1000 or None, got {msg.pwm_permille}")
        self._wanted = msg  # kept while offline too: PWM and lock are restored from it after a restart
        if not self._online:
            raise Rejected(f"board offline: {self._down_reason}")
        done = Pending()
        self._waiters.append(done)
        self._apply_due = True
        self._wake.set()
        yield done
        return Ack()

    # --- the one task that talks to the board ---------------------------------------------------
    def _run(self) -> Generator[Pending, Any, None]:
        while not self._closing:
            if self._board is None:
                try:
                    board = yield self.run_io(_open, self._port, self.config["baudrate"])
                except BoardLinkError as exc:
                    self._down(str(exc))
                    yield self.sleep(_REOPEN_S)
                    continue
                if self._closing:  # terminate ran while the port was opening
                    _close(board)
                    return
                self._board, self._heard = board, False
                self._opened_at, self._failing_since = time.monotonic(), None
                self.log.info("opened %s", self._port)
            try:
                yield from self._turn(self._board)
            except BoardLinkError as exc:
                yield from self._drop(str(exc))
                yield self.sleep(_REOPEN_S)

    def _turn(self, board: SerialBoard) -> Generator[Pending, Any, None]:
        status = self._status if self._heard else None
        if status is not None and status.watchdog_tripped:
            if not self._in_trip:  # once per trip, however many resets it takes
                self._in_trip = True
                self._tripped()
            yield from self._reset(board)
        elif status is not None:
            self._in_trip = False
            if status.rcd_tripped and status.pilot is Pilot.A:
                yield from self._reset_rcd(board)
        if self._apply_due and self._heard and not self._in_trip:
            yield from self._apply(board)
        if not (self._apply_due and self._heard and not self._in_trip):  # else apply first, next turn
            served = yield self.run_io(_serve, board, self.config["heartbeat_s"], self._last_command, self._wake)
            changes, latest, age, self._last_command, beat_timed_out = served
            if not beat_timed_out:
                self._failing_since = None
            elif self._failing_since is None:
                self._failing_since = time.monotonic()
            for change in changes:
                self._on_status(change)
            self._reading(latest, age)
        now = time.monotonic()
        silent_since = self._opened_at if age is None else now - age
        if now - silent_since > self.config["offline_after_s"]:
            raise BoardLinkError(f"no status for {now - silent_since:.1f} s")
        if self._failing_since is not None and now - self._failing_since > self.config["offline_after_s"]:
            raise BoardLinkError(f"commands unanswered for {now - self._failing_since:.1f} s")
        self._publish()

    def _command(self, board: SerialBoard, command: Callable[..., None], *args: Any) -> Generator[Pending, Any, None]:
        """One command on the I/O thread; a timeout starts the `offline_after_s` clock, an answer stops it."""
        self._last_command = time.monotonic()  # sent or not, the board heard from us (or will say why not)
        try:
            reading = yield self.run_io(_do, board, command, *args)
        except BoardTimeout:
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            raise
        self._failing_since = None
        self._reading(*reading)

    def _tripped(self) -> None:
        """The board is in its safe state; after a reset of ours that means it restarted (or lost us)."""
        if not self._ever_reset:
            return  # power-on, or the previous driver instance went quiet: the usual start
        self._restarts += 1
        self.log.warning("board restarted (watchdog tripped); restart %d", self._restarts)
        if self._wanted is not None:
            # PWM and lock come back at once; relays wait for a fresh request from the EVSE manager
            self._wanted = dataclasses.replace(self._wanted, relays_closed=False)
            self._apply_due = True

    def _reset(self, board: SerialBoard) -> Generator[Pending, Any, None]:
        try:
            yield from self._command(board, board.reset_faults)
        except BoardRefused as exc:  # the watchdog part is cleared even when a latched RCD is not
            self.log.info("reset_faults: %s", exc)
        except BoardTimeout:
            return  # tried again next turn
        self._ever_reset = True

    def _reset_rcd(self, board: SerialBoard) -> Generator[Pending, Any, None]:
        """A latched RCD trip is cleared once the car is gone (the board refuses while one is plugged)."""
        if time.monotonic() - self._rcd_reset_at < _RCD_RESET_EVERY_S:
            return
        self._rcd_reset_at = time.monotonic()
        with contextlib.suppress(BoardTimeout, BoardRefused):
            yield from self._command(board, board.reset_faults)

    def _apply(self, board: SerialBoard) -> Generator[Pending, Any, None]:
        """Bring the board to `_wanted`, safest step first: open, lock, PWM, close. Idempotent."""
        wanted, status, waiters = self._wanted, self._status, self._waiters
        self._apply_due, self._waiters = False, []
        steps: list[tuple[Callable[[Any], None], Any]] = []
        if wanted is not None and status is not None:
            if status.relays_closed and not wanted.relays_closed:
                steps.append((board.set_relays, False))
            if status.locked != wanted.locked:
                steps.append((board.set_lock, wanted.locked))
            if status.pwm_permille != wanted.pwm_permille:
                steps.append((board.set_pwm, wanted.pwm_permille))
            if wanted.relays_closed and not status.relays_closed:
                steps.append((board.set_relays, True))
        error: Rejected | None = None
        try:
            for command, value in steps:
                yield from self._command(board, command, value)
        except (BoardRefused, BoardTimeout) as exc:
            error = Rejected(str(exc))  # the rest is not applied: never close relays after a failed step
        except BoardLinkError:
            self._waiters = waiters + self._waiters  # `_drop` fails them
            raise
        for waiter in waiters:
            if error is None:
                waiter.resolve(None)
            else:
                waiter.fail(error)

    # --- statuses and the link --------------------------------------------------------------------
    def _reading(self, latest: BoardStatus | None, age: float | None) -> None:
        if latest is not None and age is not None and age <= self.config["offline_after_s"]:
            self._status, self._heard = latest, True
            if not self._online:
                self._online = True
                self.log.info("board online on %s", self._port)

    def _on_status(self, status: BoardStatus) -> None:
        """Every change the board reported, in order, so that a short pilot glitch is published too."""
        self._status, self._heard = status, True
        if self._online:
            self._publish()

    def _down(self, reason: str) -> None:
        if self._online or reason != self._down_reason:
            self.log.warning("board offline: %s", reason)
        self._online, self._heard, self._down_reason = False, False, reason
        waiters, self._waiters = self._waiters, []
        self._apply_due = False
        for waiter in waiters:
            waiter.fail(Rejected(f"board offline: {reason}"))
        self._publish()

    def _drop(self, reason: str) -> Generator[Pending, Any, None]:
        board, self._board = self._board, None
        self._down(reason)
        if board is not None:
            yield self.run_io(_close, board)

    def _publish(self) -> None:
        """Publish on change and at least every second."""
        s = self._status
        state = BoardState(
            online=self._online,
            # never heard a board: report F (EVSE not available); consumers must look at `online` first
            pilot=s.pilot.value if s is not None else Pilot.F.value,
            pwm_permille=s.pwm_permille if s is not None else None,
            relays_closed=s.relays_closed if s is not None else False,
            locked=s.locked if s is not None else False,
            rcd_milliamps=s.rcd_milliamps if s is not None else 0,
            rcd_tripped=s.rcd_tripped if s is not None else False,
            diode_fault=s.diode_fault if s is not None else False,
            relay_welded=s.relay_welded if s is not None else False,
            watchdog_tripped=s.watchdog_tripped if s is not None else False,
            board_restarts=self._restarts,
        )
        now = time.monotonic()
        if state != self._published or now - self._published_at >= _REPUBLISH_S:
            self.publish(state)
            self._published, self._published_at = state, now
