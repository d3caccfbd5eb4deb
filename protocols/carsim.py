"""A simulated car that runs EVerest's car-simulator command language (basic AC, IEC 61851-1).

Pure code: no I/O, no threads, no wall clock. Time moves only through `CarSimulator.step` (or
`CarSimulator.advance_to`), so a test or an actor decides what "now" is.

**Language** (everest.md §7, EVerest ``EvManager/main/simulation_command.cpp``). A script such as
``sleep 1;iec_wait_pwr_ready;sleep 1;draw_power_regulated 16,3;sleep 30;unplug`` is read like this: ASCII
letters are lower-cased, ``\\n`` counts as ``;``, the text is split on ``;``, inside a command ``,`` counts
as a space, the first token is the name and the rest are arguments; a command is looked up by name and
argument count. Every string EVerest accepts means the same here. Where EVerest is looser or fails late,
`parse` is stricter and fails early with a `ScriptError`: numbers must be plain decimals (``std::stod``
reads ``16abc`` as 16), values are range-checked, and ``phases`` must be 1, 2 or 3 (EVerest treats
anything but ``3`` as one phase). Where EVerest is stricter for no reason, this is looser: empty commands
(``;;``) are skipped and runs of blanks, tabs or ``\\r`` separate tokens (EVerest splits on single spaces,
so ``16, 3`` has three arguments there). The ``iso_*`` commands are recognised but rejected: they need an
ISO 15118 EV stack, which this simulator does not have yet.

**Execution** (``car_simulatorImpl.cpp::run_simulation_loop``, ``car_simulation.cpp``). Every 250 ms tick
the car runs commands until one blocks (a blocking command is simply tried again next tick), then
updates its pilot and current from its mode and the PWM it sees. ``sleep s`` blocks for ⌊s / 0.25⌋
ticks, exactly as EVerest counts. After the last command the car keeps its mode: a script ending in
``draw_power_regulated`` keeps charging. (EVerest stops its state machine when the queue runs empty, so
its pilot level freezes; this car keeps obeying PWM, so it breaks IEC 61851 only where the script says
``draw_power_fixed``.)
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

from charger.protocols.battery import Battery

__all__ = [
    "MAX_SLEEP_S",
    "TICK_S",
    "CarOutputs",
    "CarSimulator",
    "CpState",
    "DiodeFail",
    "DrawPowerFixed",
    "DrawPowerRegulated",
    "ErrorE",
    "IecWaitPwrReady",
    "Pause",
    "Plugin",
    "RcdCurrent",
    "ScriptError",
    "SetSoc",
    "SimCommand",
    "Sleep",
    "Unplug",
    "WaitForRealPlugin",
    "parse",
    "pwm_allows_charging",
    "pwm_current_limit_a",
]

TICK_S = 0.25
"""EVerest's simulation loop interval (``DEFAULT_LOOP_INTERVAL_MS``): blocking commands are re-polled per tick."""

MAX_SLEEP_S = 1e9
"""Longest ``sleep`` accepted (about 31 years); it keeps the tick count a finite integer."""


class CpState(enum.Enum):
    """Control-pilot states of IEC 61851-1 Annex A, as the charger would measure them."""

    A = "A"  #: no car (+12 V)
    B = "B"  #: car connected, not ready to charge (+9 V)
    C = "C"  #: car ready, charging (+6 V)
    D = "D"  #: ready, ventilation required (+3 V); no command produces it
    E = "E"  #: short circuit / error (0 V): the ``error_e`` command
    F = "F"  #: EVSE not available (-12 V); driven by the EVSE, never by a car


class ScriptError(ValueError):
    """A script that cannot run: which command (1-based, empty commands not counted), its text, and why."""

    def __init__(self, index: int, command: str, reason: str) -> None:
        super().__init__(f"command {index} {command!r}: {reason}")
        self.index, self.command, self.reason = index, command, reason


# --- commands: one frozen class per command, the parsed form of a script -------------------------


@dataclass(frozen=True, slots=True)
class Sleep:
    """``sleep s``: block for `seconds`, counted in 250 ms ticks."""

    seconds: float


@dataclass(frozen=True, slots=True)
class IecWaitPwrReady:
    """``iec_wait_pwr_ready``: go to B and block until 7 % < duty < 97 %."""


@dataclass(frozen=True, slots=True)
class DrawPowerRegulated:
    """``draw_power_regulated A,phases``: C and draw up to `amps` while the PWM allows it, else B."""

    amps: float
    phases: int


@dataclass(frozen=True, slots=True)
class DrawPowerFixed:
    """``draw_power_fixed A,phases``: C and draw `amps` whatever the PWM says (a rule-breaking test mode)."""

    amps: float
    phases: int


@dataclass(frozen=True, slots=True)
class Pause:
    """``pause``: back to B (the car stops charging, stays plugged)."""


@dataclass(frozen=True, slots=True)
class Unplug:
    """``unplug``: state A; the car leaves, so residual current and diode fault go with it."""


@dataclass(frozen=True, slots=True)
class Plugin:
    """``plugin``: replace the rest of the script with the configured ``plugin_commands``."""


@dataclass(frozen=True, slots=True)
class WaitForRealPlugin:
    """``wait_for_real_plugin``: block until the EV side measures a pilot (a mated cable), then B."""


@dataclass(frozen=True, slots=True)
class ErrorE:
    """``error_e``: CP state E (pilot shorted to PE)."""


@dataclass(frozen=True, slots=True)
class DiodeFail:
    """``diode_fail``: report a failed pilot diode and stop drawing; the pilot level stays as it was."""


@dataclass(frozen=True, slots=True)
class RcdCurrent:
    """``rcd_current mA``: a residual current of `milliamps` (EVerest's SIL trips above 5 mA, everest.md §4)."""

    milliamps: float


@dataclass(frozen=True, slots=True)
class SetSoc:
    """``set_soc pct``: set the battery's state of charge."""

    percent: float


SimCommand: TypeAlias = (
    Sleep
    | IecWaitPwrReady
    | DrawPowerRegulated
    | DrawPowerFixed
    | Pause
    | Unplug
    | Plugin
    | WaitForRealPlugin
    | ErrorE
    | DiodeFail
    | RcdCurrent
    | SetSoc
)


# --- parser -------------------------------------------------------------------------------------


class _Invalid(ValueError):
    """Why one command is wrong; `parse` adds its position and text and raises `ScriptError`."""


_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?")  # after lower-casing
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")  # C tolower, not Unicode's
_BLANKS = re.compile(r"[ \t\r\f\v]+")


def _number(label: str, token: str, high: float = math.inf) -> float:
    if not _NUMBER.fullmatch(token):
        raise _Invalid(f"{label}: {token!r} is not a number")
    value = float(token)
    if math.isinf(value):
        raise _Invalid(f"{label}: {token} is too large")
    if value < 0:
        raise _Invalid(f"{label}: {token} is negative")
    if value > high:
        raise _Invalid(f"{label}: {token} is above {high:g}")
    return value


def _phases(label: str, token: str) -> int:
    if token not in ("1", "2", "3"):
        raise _Invalid(f"{label}: {token!r} is not 1, 2 or 3")
    return int(token)


_Arg: TypeAlias = tuple[str, Callable[[str, str], float]]
_SECONDS: _Arg = ("s", lambda label, token: _number(label, token, MAX_SLEEP_S))
_AMPS: _Arg = ("A", _number)
_PHASES: _Arg = ("phases", _phases)

_COMMANDS: dict[str, tuple[tuple[_Arg, ...], Callable[..., SimCommand]]] = {
    "sleep": ((_SECONDS,), Sleep),
    "iec_wait_pwr_ready": ((), IecWaitPwrReady),
    "draw_power_regulated": ((_AMPS, _PHASES), DrawPowerRegulated),
    "draw_power_fixed": ((_AMPS, _PHASES), DrawPowerFixed),
    "pause": ((), Pause),
    "unplug": ((), Unplug),
    "plugin": ((), Plugin),
    "wait_for_real_plugin": ((), WaitForRealPlugin),
    "error_e": ((), ErrorE),
    "diode_fail": ((), DiodeFail),
    "rcd_current": ((("mA", _number),), RcdCurrent),
    "set_soc": ((("pct", lambda label, token: _number(label, token, 100)),), SetSoc),
}

_ISO_COMMANDS = frozenset(
    {
        "iso_wait_pwm_is_running",
        "iso_wait_slac_matched",
        "iso_start_v2g_session",
        "iso_wait_pwr_ready",
        "iso_dc_power_on",
        "iso_draw_power_regulated",
        "iso_stop_charging",
        "iso_pause_charging",
        "iso_wait_for_stop",
        "iso_wait_v2g_session_stopped",
        "iso_wait_for_resume",
        "iso_start_bcb_toggle",
    }
)


def _compile(tokens: list[str]) -> SimCommand:
    name, args = tokens[0], tokens[1:]
    if name in _ISO_COMMANDS:
        raise _Invalid("needs ISO 15118 support, which this simulator does not have yet")
    if name not in _COMMANDS:
        raise _Invalid(f"unknown command {name!r}")
    params, make = _COMMANDS[name]
    if len(args) != len(params):
        labels = ", ".join(label for label, _ in params)
        wanted = f"{len(params)} argument{'s' if len(params) > 1 else ''} ({labels})" if params else "no arguments"
        raise _Invalid(f"expects {wanted}")
    return make(*(convert(label, token) for (label, convert), token in zip(params, args, strict=True)))


def parse(script: str) -> tuple[SimCommand, ...]:
    """Parse a car-simulator script; raise `ScriptError` for the first command that cannot run."""
    commands: list[SimCommand] = []
    # EVerest lower-cases the whole string before splitting; lower-casing per piece is the same (it
    # never makes or removes ';' or '\n') and lets an error quote the command as it was written.
    for raw in re.split(r"[;\n]", script):
        tokens = [t for t in _BLANKS.split(raw.translate(_LOWER).replace(",", " ")) if t]
        if not tokens:
            continue
        try:
            commands.append(_compile(tokens))
        except _Invalid as exc:
            raise ScriptError(len(commands) + 1, raw.strip(), str(exc)) from None
    return tuple(commands)


# --- IEC 61851-1 PWM ----------------------------------------------------------------------------


def pwm_allows_charging(duty_percent: float | None) -> bool:
    """Whether a basic-charging car may be in C: 7 % < duty < 97 % (EVerest ``car_simulation.cpp``)."""
    return duty_percent is not None and 7.0 < duty_percent < 97.0


def pwm_current_limit_a(duty_percent: float | None) -> float:
    """The current per phase a PWM duty cycle allows (IEC 61851-1:2017 Table A.7); 0 where none is allowed.

    Below 8 % (including the 5 % that asks for ISO 15118) and above 97 % the table allows no current.
    """
    d = duty_percent
    if d is None or d < 8.0 or d > 97.0:
        return 0.0
    if d < 10.0:
        return 6.0
    if d <= 85.0:
        return d * 0.6
    if d <= 96.0:
        return (d - 64.0) * 2.5
    return 80.0


# --- the car ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CarOutputs:
    """What the charger observes from the car."""

    pilot: CpState
    """The pilot state the car presents (what the EVSE measures on CP)."""
    draw_current_a: float
    """Current drawn per phase now; 0 unless the relays are closed."""
    phases: int
    """Phases the car draws on, from the last ``draw_power_*`` command (3 before any, EVerest's default)."""
    rcd_milliamps: float
    """Residual current the car leaks to earth (``rcd_current``); the RCD decides whether that trips."""
    diode_fault: bool
    """The pilot diode has failed (``diode_fail``), until the car is unplugged."""


class _Mode(enum.Enum):
    """EVerest's ``SimState`` for basic charging."""

    UNPLUGGED = enum.auto()
    PLUGGED_IN = enum.auto()
    REGULATED = enum.auto()
    FIXED = enum.auto()
    ERROR_E = enum.auto()
    DIODE_FAIL = enum.auto()


_SETS_MODE: dict[type, _Mode] = {
    Pause: _Mode.PLUGGED_IN,
    Unplug: _Mode.UNPLUGGED,
    ErrorE: _Mode.ERROR_E,
    DiodeFail: _Mode.DIODE_FAIL,
}
_PILOT = {_Mode.UNPLUGGED: CpState.A, _Mode.PLUGGED_IN: CpState.B, _Mode.ERROR_E: CpState.E}


def _as_commands(script: str | Iterable[SimCommand]) -> tuple[SimCommand, ...]:
    return parse(script) if isinstance(script, str) else tuple(script)


class CarSimulator:
    """Runs a script against what the car sees from the charger: PWM duty and relay state.

    Args:
        script: the commands, as text (parsed with `parse`) or already parsed.
        plugin_commands: what ``plugin`` runs (EVerest's ``plugin_commands`` setting). A script that uses
            ``plugin`` without them is rejected here rather than half-way through a session.
        battery: the battery model; a default `Battery` (60 kWh at 30 %) if not given.
    """

    def __init__(
        self,
        script: str | Iterable[SimCommand] = (),
        *,
        plugin_commands: str | Iterable[SimCommand] = (),
        battery: Battery | None = None,
    ) -> None:
        self._plugin_commands = _as_commands(plugin_commands)
        self.battery = battery if battery is not None else Battery()
        self._queue: deque[SimCommand] = deque()
        self._sleep_ticks_left: int | None = None
        self._mode = _Mode.UNPLUGGED
        self._pilot = CpState.A
        self._full_current_a = 0.0
        self._phases = 3
        self._request_a = 0.0
        self._rcd_ma = 0.0
        self._diode_fault = False
        self._relays_closed = False
        self._now = 0.0
        self._ticks = 0
        self.load(script)

    def load(self, script: str | Iterable[SimCommand]) -> None:
        """Replace the commands still to run (EVerest's ``modify_charging_session``).

        The car keeps its pilot, battery, residual current and diode fault; a sleep in progress is dropped.
        """
        commands = _as_commands(script)
        for index, command in enumerate(commands, 1):
            if isinstance(command, Plugin) and not self._plugin_commands:
                raise ScriptError(index, "plugin", "needs plugin_commands, and none are configured")
        self._queue = deque(commands)
        self._sleep_ticks_left = None

    @property
    def now(self) -> float:
        """Simulated seconds since the car was made."""
        return self._now

    @property
    def finished(self) -> bool:
        """Every command has run; the car stays in its last mode."""
        return not self._queue

    @property
    def pending(self) -> tuple[SimCommand, ...]:
        """Commands still to run; the first is the one running (or blocked) now."""
        return tuple(self._queue)

    @property
    def outputs(self) -> CarOutputs:
        """What the charger sees now."""
        return CarOutputs(
            pilot=self._pilot,
            draw_current_a=self._request_a if self._relays_closed else 0.0,
            phases=self._phases,
            rcd_milliamps=self._rcd_ma,
            diode_fault=self._diode_fault,
        )

    def step(
        self, dt: float, pwm_duty_percent: float | None, relays_closed: bool, *, pilot_present: bool = True
    ) -> CarOutputs:
        """Advance `dt` seconds during which the car sees these inputs; return what the charger sees after.

        Ticks fall at 0, 0.25, 0.5 … s; those in [now, now + dt) run, so `step(0, …)` changes nothing.
        A tick reacts to the inputs at once, which models a car that answers within 250 ms. Energy is
        integrated over the whole `dt` with the current the car asks for and the relay state given here.

        Args:
            dt: seconds to advance, >= 0.
            pwm_duty_percent: the PWM duty cycle the car measures, or None for no PWM (steady ±12 V).
            relays_closed: whether the charger's contactor is closed; no current flows otherwise.
            pilot_present: whether the EV side measures a pilot at all (a mated cable), for
                ``wait_for_real_plugin``. A pure software loop leaves it True.
        """
        if isinstance(dt, bool) or not isinstance(dt, int | float) or not (math.isfinite(dt) and dt >= 0):
            raise ValueError(f"dt must be a finite number of seconds >= 0, got {dt!r}")
        if pwm_duty_percent is not None and not (0.0 <= pwm_duty_percent <= 100.0):
            raise ValueError(f"pwm_duty_percent must be None or in [0, 100], got {pwm_duty_percent!r}")
        self._relays_closed = bool(relays_closed)
        end = self._now + dt
        while self._ticks * TICK_S < end:
            tick_at = self._ticks * TICK_S
            self._integrate(tick_at - self._now)
            self._now = tick_at
            self._tick(pwm_duty_percent, pilot_present)
            self._ticks += 1
        self._integrate(end - self._now)
        self._now = end
        return self.outputs

    def advance_to(
        self, now: float, pwm_duty_percent: float | None, relays_closed: bool, *, pilot_present: bool = True
    ) -> CarOutputs:
        """`step` to the absolute simulated time `now` (for a caller that keeps its own clock)."""
        if not now >= self._now:
            raise ValueError(f"time cannot go back: now={now!r} is before {self._now!r}")
        return self.step(now - self._now, pwm_duty_percent, relays_closed, pilot_present=pilot_present)

    # --- one tick: commands until one blocks, then pilot and current (EVerest's state_machine) ---

    def _integrate(self, seconds: float) -> None:
        if seconds > 0 and self._relays_closed and self._request_a > 0:
            self.battery.charge(self._request_a, self._phases, seconds)

    def _tick(self, duty: float | None, pilot_present: bool) -> None:
        while self._queue:
            command = self._queue[0]
            if isinstance(command, Plugin):
                # EVerest's plugin blocks and swaps the queue after the tick, so the new commands
                # start next tick; that also keeps a plugin_commands that calls plugin from spinning.
                self._queue = deque(self._plugin_commands)
                break
            if not self._run(command, duty, pilot_present):
                break
            self._queue.popleft()
        self._update(duty)

    def _run(self, command: SimCommand, duty: float | None, pilot_present: bool) -> bool:
        """Apply one command; False means it blocks and is tried again next tick."""
        match command:
            case Sleep(seconds):
                if self._sleep_ticks_left is None:
                    # EVerest's count, kept exactly: it blocks for floor(s / 0.25) ticks.
                    self._sleep_ticks_left = int(seconds * 1000 / 250) + 1
                self._sleep_ticks_left -= 1
                if self._sleep_ticks_left > 0:
                    return False
                self._sleep_ticks_left = None
            case IecWaitPwrReady():
                self._mode = _Mode.PLUGGED_IN
                return pwm_allows_charging(duty)
            case WaitForRealPlugin():
                if not pilot_present:
                    return False
                self._mode = _Mode.PLUGGED_IN
            case DrawPowerRegulated(amps, phases) | DrawPowerFixed(amps, phases):
                fixed = isinstance(command, DrawPowerFixed)
                self._mode = _Mode.FIXED if fixed else _Mode.REGULATED
                self._full_current_a, self._phases = amps, phases
            case RcdCurrent(milliamps):
                self._rcd_ma = milliamps
            case SetSoc(percent):
                self.battery.set_soc(percent)
            case _:
                self._mode = _SETS_MODE[type(command)]
                if isinstance(command, DiodeFail):
                    self._diode_fault = True
                elif isinstance(command, Unplug):
                    self._diode_fault, self._rcd_ma = False, 0.0
        return True

    def _update(self, duty: float | None) -> None:
        """Set pilot and requested current from the mode and the PWM seen this tick."""
        mode = self._mode
        if mode is _Mode.DIODE_FAIL:
            self._request_a = 0.0  # EVerest sets no new pilot level here; the car only stops drawing
        elif mode not in (_Mode.REGULATED, _Mode.FIXED):
            self._pilot, self._request_a = _PILOT[mode], 0.0
        elif self.battery.full:
            self._pilot, self._request_a = CpState.B, 0.0  # EV pause: a full battery asks for no power
        elif mode is _Mode.REGULATED and not pwm_allows_charging(duty):
            self._pilot, self._request_a = CpState.B, 0.0  # EVSE pause: PWM gone or out of range
        else:
            request = self.battery.requested_current_a(self._full_current_a)
            if mode is _Mode.REGULATED:
                request = min(request, pwm_current_limit_a(duty))
            self._pilot, self._request_a = CpState.C, request
