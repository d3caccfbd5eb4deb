"""The simulated hardware of one connector: a board behind a pty, a Modbus meter server and a car.

Every car tick the car sees the board's PWM and relays, and what the car then does goes to the board
(pilot, diode, residual current) and to the meter (load). A `SilRig` actor owns one or more of these.

The meter's energy register must never run backwards, not even across a SIGKILL of the rig: a billed
session would otherwise end below its start. So the register is journalled every second *ahead* of
itself: the value written is what the register can reach before the next write is overdue
(`_HEADROOM_S` at the present power), and a power increase is journalled at once. A restart after
a kill may thus jump forward by a few seconds of energy, never back; a clean stop writes the exact value.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass

from charger.protocols.battery import Battery
from charger.protocols.board_frames import BoardStatus, Pilot
from charger.protocols.carsim import (
    CarOutputs,
    CarSimulator,
    CpState,
    DrawPowerFixed,
    DrawPowerRegulated,
    RcdCurrent,
    SetSoc,
    SimCommand,
    Sleep,
    WaitForRealPlugin,
    parse,
)
from charger.sim.board import BoardSimulator
from charger.sim.meter_server import MeterLayout, MeterServer

from charger.journal import write_file_atomically

__all__ = ["FAULTS", "LAYOUTS", "ConnectorSettings", "SimulatedConnector", "relay_record", "script_text"]

FAULTS = ("rcd", "meter_offline", "lock_failure", "pilot_error_e", "diode_failure")
"""What `InjectSimFault` understands (see its docstring)."""
_CAR_FAULTS = frozenset({"rcd", "pilot_error_e", "diode_failure"})

LAYOUTS = {"sdm630": MeterLayout.SDM630, "sunspec": MeterLayout.SUNSPEC_203}
_FAULT_RCD_MA = 30.0  # DC: five times the board's 6 mA DC trip level
_JOURNAL_EVERY_S = 1.0
_HEADROOM_S = 3.0  # covers a journal write that is up to two periods late


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorSettings:
    """One connector's part of a rig's config (see `SilRig.config_schema`); paths are absolute."""

    board_link: str
    energy_journal: str
    watchdog_s: float = 0.5
    modbus_host: str = "127.0.0.1"
    modbus_port: int = 0
    meter_layout: str = "sdm630"
    voltage_v: float = 230.0
    script: str = ""
    repeat: bool = False
    repeat_pause_s: float = 5.0
    token: str | None = None
    battery_kwh: float = 60.0
    soc_percent: float = 30.0
    relay_log: str | None = None
    """Append a JSON line here on every change of relays, pilot, PWM or latched board faults (see
    `relay_record`); None: keep no record."""


def relay_record(now: float, status: BoardStatus) -> str:
    """One line of the relay record: monotonic time (comparable across processes on one host), relay
    contact, pilot, PWM in per mille (None: off) and the board's latched faults."""
    return json.dumps(
        {
            "t": now,
            "relays": status.relays_closed,
            "pilot": status.pilot.value,
            "pwm": status.pwm_permille,
            "watchdog": status.watchdog_tripped,
            "rcd": status.rcd_tripped,
        }
    )


def script_text(command: SimCommand) -> str:
    """A parsed command as script text (what `RigState.script_pending` shows)."""
    name = "".join(f"_{c.lower()}" if c.isupper() else c for c in type(command).__name__).lstrip("_")
    match command:
        case Sleep(value) | RcdCurrent(value) | SetSoc(value):
            return f"{name} {value:g}"
        case DrawPowerRegulated(amps, phases) | DrawPowerFixed(amps, phases):
            return f"{name} {amps:g},{phases}"
    return name


class SimulatedConnector:
    """Board, meter and car of one connector. Not thread-safe: one owner calls every method."""

    def __init__(self, settings: ConnectorSettings) -> None:
        self.settings = settings
        self.script = parse(settings.script)  # a bad script in the topology fails the start, with its reason
        battery = Battery(
            capacity_kwh=settings.battery_kwh, soc_percent=settings.soc_percent, nominal_voltage_v=settings.voltage_v
        )
        self.car = CarSimulator(self.script, battery=battery)
        # O_APPEND writes reach the file whole, and stay there when this process is SIGKILLed
        self._relay_fd = (
            None if settings.relay_log is None else os.open(settings.relay_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        )
        try:
            self.board = BoardSimulator(
                link=settings.board_link,
                watchdog_s=settings.watchdog_s,
                status_interval_s=0.1,
                observer=None if self._relay_fd is None else self._record_relays,
            )
        except BaseException:
            self._close_relay_log()
            raise
        try:
            self.meter = MeterServer(
                LAYOUTS[settings.meter_layout],
                host=settings.modbus_host,
                port=settings.modbus_port,
                energy_wh=self._restore_energy(),
            )
            self.meter.start()
        except BaseException:
            self.board.close()
            self._close_relay_log()
            raise
        self.board.start()
        self.faults: set[str] = set()
        self._ev: tuple[bool, CpState, bool, bool, float] = (False, CpState.B, False, False, 0.0)
        """What the board simulator was last told: plugged, pilot B/C/D, error E, diode failed, residual mA."""
        self._load = (0.0, 0.0, 0.0, 0.0)  # power W and the three phase currents the meter was last given
        self._pilot = CpState.A
        self._repeat_at: float | None = None
        self._journalled: tuple[float, float] = (-math.inf, -1.0)  # when, and the value written

    def close(self) -> None:
        """Stop the board and the meter; the exact register goes to the journal."""
        self.board.close()
        self.meter.set_load(0.0, (0.0, 0.0, 0.0), self.settings.voltage_v)  # integrates up to now
        self.meter.stop()
        write_file_atomically(self.settings.energy_journal, json.dumps({"energy_wh": self.meter.energy_wh}))
        self._close_relay_log()

    def _record_relays(self, now: float, status: BoardStatus) -> None:
        if self._relay_fd is not None:
            os.write(self._relay_fd, relay_record(now, status).encode() + b"\n")

    def _close_relay_log(self) -> None:
        if self._relay_fd is not None:
            os.close(self._relay_fd)
            self._relay_fd = None

    # --- commands (ScriptError for a script that does not parse or load) ------------------------------
    def plug(self, script: str) -> None:
        self._load_script((WaitForRealPlugin(), *parse(script)))  # pilot B at the next tick

    def unplug(self) -> None:
        self.faults -= _CAR_FAULTS  # they are the car's: its short, its diode, its leak leave with it
        self._load_script(parse("unplug"))

    def run(self, script: str) -> None:
        self._load_script(parse(script))

    def set_fault(self, fault: str, active: bool) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        if active:
            self.faults.add(fault)
        else:
            self.faults.discard(fault)
        if fault == "meter_offline":
            self.meter.set_offline(active)
        elif fault == "lock_failure":
            self.board.jam_lock(active)
        else:
            self._drive_board(self.car.outputs)  # at once, not at the next tick

    def _load_script(self, commands: tuple[SimCommand, ...]) -> None:
        self.car.load(commands)  # ScriptError e.g. for `plugin` without plugin_commands
        self._repeat_at = None

    # --- the simulated world, every car tick ----------------------------------------------------
    def tick(self, now: float) -> bool:
        """Advance to `now` (seconds on the owner's clock); True when a car has just plugged in."""
        view = self.board.ev_view()
        out = self.car.advance_to(now, view.duty_percent, view.relays_closed)
        arrived = self._pilot is CpState.A and out.pilot is not CpState.A
        self._pilot = out.pilot
        self._drive_board(out)
        self._drive_meter(out)
        self._maybe_repeat(now, out)
        if time.monotonic() - self._journalled[0] >= _JOURNAL_EVERY_S:
            self._save_energy()
        return arrived

    def _drive_board(self, out: CarOutputs) -> None:
        """Tell the board simulator what changed on the vehicle side (car outputs plus injected faults)."""
        board = self.board
        plugged = out.pilot is not CpState.A
        state = out.pilot if out.pilot in (CpState.B, CpState.C, CpState.D) else self._ev[1]
        error_e = out.pilot is CpState.E or "pilot_error_e" in self.faults
        diode = plugged and (out.diode_fault or "diode_failure" in self.faults)
        rcd = max(out.rcd_milliamps, _FAULT_RCD_MA if "rcd" in self.faults else 0.0) if plugged else 0.0
        was_plugged, was_state, was_error, was_diode, was_rcd = self._ev
        if plugged != was_plugged or (was_error and not error_e):
            if plugged:
                board.ev_plug()  # also clears error E
                was_state = CpState.B
            else:
                board.ev_unplug()  # also clears error E, diode and residual current
                was_diode, was_rcd = False, 0.0
            was_error = False
        if plugged and state != was_state:
            board.ev_set_state(Pilot(state.value))
        if error_e and not was_error:
            board.ev_error_e()
        if diode != was_diode:
            board.ev_diode_fail(diode)
        if rcd != was_rcd:
            board.ev_rcd_current(rcd)
        self._ev = (plugged, state, error_e, diode, rcd)

    def _drive_meter(self, out: CarOutputs) -> None:
        amps, volts, phases = out.draw_current_a, self.settings.voltage_v, out.phases
        load = (amps * volts * phases, amps, amps if phases >= 2 else 0.0, amps if phases >= 3 else 0.0)
        if load != self._load:
            self.meter.set_load(load[0], load[1:], volts)
            rising = load[0] > self._load[0]
            self._load = load
            if rising:  # the journalled headroom was computed at the lower power
                self._save_energy()

    def _maybe_repeat(self, now: float, out: CarOutputs) -> None:
        settings = self.settings
        if not (settings.repeat and self.script and self.car.finished and out.pilot is CpState.A):
            self._repeat_at = None
            return
        if self._repeat_at is None:
            self._repeat_at = now + settings.repeat_pause_s
        elif now >= self._repeat_at:
            self.car.load(self.script)
            self._repeat_at = None

    # --- energy journal -------------------------------------------------------------------------
    def energy_now(self) -> float:
        """The register brought up to now (the server itself integrates only when read)."""
        power, l1, l2, l3 = self._load
        self.meter.set_load(power, (l1, l2, l3), self.settings.voltage_v)
        return self.meter.energy_wh

    def _save_energy(self) -> None:
        ahead = self.energy_now() + self._load[0] * _HEADROOM_S / 3600.0
        if ahead != self._journalled[1]:  # an idle rig does not fsync every second
            write_file_atomically(self.settings.energy_journal, json.dumps({"energy_wh": ahead}))
        self._journalled = (time.monotonic(), ahead)

    def _restore_energy(self) -> float:
        path = self.settings.energy_journal
        try:
            with open(path, encoding="utf-8") as f:
                energy = float(json.load(f)["energy_wh"])
        except FileNotFoundError:
            return 0.0
        except (ValueError, KeyError, TypeError) as exc:
            # refusing to start is better than a meter that silently restarts from zero
            raise RuntimeError(f"{path} is unreadable: {exc}") from exc
        if not (math.isfinite(energy) and energy >= 0):
            raise RuntimeError(f"{path} holds an impossible energy {energy!r}")
        return energy
