"""SilRig: the simulated hardware of one connector, for software-in-the-loop runs and tests.

One rig owns a `BoardSimulator` behind a pty (a `BoardDriver` opens its symlink), a Modbus
`MeterServer` (a power-meter actor reads it over TCP) and a `CarSimulator` that runs EVerest's
car-simulator scripts. Every 250 ms (the car's tick) the car sees the board's PWM and relays, and
what the car then does goes to the board (pilot, diode, residual current) and to the meter (load).
Faults are injected with `InjectSimFault`; user scripts that do not parse are answered with
`Rejected`, never a crash.

The meter's energy register must never run backwards, not even across a SIGKILL of the rig: a billed
session would otherwise end below its start. So the register is journalled every second *ahead* of
itself: the value written is what the register can reach before the next write is overdue
(`_HEADROOM_S` at the present power), and a power increase is journalled at once. A restart after
a kill may thus jump forward by a few seconds of energy, never back; a clean stop writes the exact value.

The rig owns threads (simulator, meter server), so it creates no child actors (DESIGN §4).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import ClassVar

from charger.actors.charging import (
    CARD_READER_SIM,
    SIL_RIG,
    CarCommand,
    GetRigState,
    InjectSimFault,
    PlugCar,
    PresentCard,
    RigState,
    UnplugCar,
)
from charger.protocols.battery import Battery
from charger.protocols.board_frames import Pilot
from charger.protocols.carsim import (
    TICK_S,
    CarOutputs,
    CarSimulator,
    CpState,
    DrawPowerFixed,
    DrawPowerRegulated,
    RcdCurrent,
    ScriptError,
    SetSoc,
    SimCommand,
    Sleep,
    WaitForRealPlugin,
    parse,
)
from charger.sim.board import BoardSimulator
from charger.sim.meter_server import MeterLayout, MeterServer

from charger.behaviour import Behaviour, Timer, handles
from charger.errors import Rejected
from charger.interfaces import Requirement
from charger.journal import write_file_atomically
from charger.lifecycle import Ack

__all__ = ["FAULTS", "SilRig"]

FAULTS = ("rcd", "meter_offline", "lock_failure", "pilot_error_e", "diode_failure")
_CAR_FAULTS = frozenset({"rcd", "pilot_error_e", "diode_failure"})
"""What `InjectSimFault` understands (see its docstring)."""

_FAULT_RCD_MA = 30.0  # DC: five times the board's 6 mA DC trip level
_JOURNAL_EVERY_S = 1.0
_HEADROOM_S = 3.0  # covers a journal write that is up to two periods late
_PUBLISH_EVERY_S = 1.0
_LAYOUTS = {"sdm630": MeterLayout.SDM630, "sunspec": MeterLayout.SUNSPEC_203}


def _text(command: SimCommand) -> str:
    """A parsed command as script text (what `RigState.script_pending` shows)."""
    name = "".join(f"_{c.lower()}" if c.isupper() else c for c in type(command).__name__).lstrip("_")
    match command:
        case Sleep(value) | RcdCurrent(value) | SetSoc(value):
            return f"{name} {value:g}"
        case DrawPowerRegulated(amps, phases) | DrawPowerFixed(amps, phases):
            return f"{name} {amps:g},{phases}"
    return name


class SilRig(Behaviour):
    description = "Simulated hardware of one connector: board on a pty, car, Modbus meter server."
    provides = {"rig": SIL_RIG}
    requires = {
        "card_reader": Requirement(
            interface=CARD_READER_SIM, min_connections=0, max_connections=1, description="Shown the car's token."
        )
    }
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "board_link": {"type": "string", "minLength": 1, "description": "Pty symlink; default <name>.board."},
            "watchdog_s": {"type": "number", "exclusiveMinimum": 0, "default": 0.5},
            "modbus_host": {"type": "string", "default": "127.0.0.1"},
            "modbus_port": {"type": "integer", "minimum": 0, "maximum": 65535, "default": 0, "description": "0: any."},
            "meter_layout": {"enum": list(_LAYOUTS), "default": "sdm630"},
            "voltage_v": {"type": "number", "exclusiveMinimum": 0, "default": 230},
            "script": {"type": "string", "default": "", "description": "Car-simulator script run at start."},
            "repeat": {"type": "boolean", "default": False, "description": "Run the script again once unplugged."},
            "repeat_pause_s": {"type": "number", "minimum": 0, "default": 5},
            "token": {"type": ["string", "null"], "default": None, "description": "Card shown when the car plugs in."},
            "battery_kwh": {"type": "number", "exclusiveMinimum": 0, "default": 60},
            "soc_percent": {"type": "number", "minimum": 0, "maximum": 100, "default": 30},
            "port_file": {
                "type": "string",
                "description": "Write the Modbus TCP port actually bound here (relative: under the state dir).",
            },
        },
    }

    def init(self) -> None:
        cfg = self.config
        self._script = parse(cfg["script"])  # a bad script in the topology fails the start, with its reason
        battery = Battery(
            capacity_kwh=cfg["battery_kwh"], soc_percent=cfg["soc_percent"], nominal_voltage_v=cfg["voltage_v"]
        )
        self._car = CarSimulator(self._script, battery=battery)
        self._journal = os.path.join(self.state_dir, f"{self.name}.meter.json")
        link = cfg.get("board_link") or f"{self.name}.board"
        self._board = BoardSimulator(
            link=os.path.join(self.state_dir, link), watchdog_s=cfg["watchdog_s"], status_interval_s=0.1
        )
        try:
            self._meter = MeterServer(
                _LAYOUTS[cfg["meter_layout"]],
                host=cfg["modbus_host"],
                port=cfg["modbus_port"],
                energy_wh=self._restore_energy(),
            )
            self._meter.start()
        except BaseException:
            self._board.close()
            raise
        self._board.start()
        if "port_file" in cfg:
            write_file_atomically(os.path.join(self.state_dir, cfg["port_file"]), str(self._meter.port))
        self._faults: set[str] = set()
        self._ev: tuple[bool, CpState, bool, bool, float] = (False, CpState.B, False, False, 0.0)
        """What the board simulator was last told: plugged, pilot B/C/D, error E, diode failed, residual mA."""
        self._load = (0.0, 0.0, 0.0, 0.0)  # power W and the three phase currents the meter was last given
        self._pilot = CpState.A
        self._repeat_at: float | None = None
        self._journalled: tuple[float, float] = (-math.inf, -1.0)  # when, and the value written
        self._published: RigState | None = None
        self._published_at = -math.inf
        self._t0 = time.monotonic()
        self._timer: Timer | None = self.start_timer(TICK_S, self._tick, repeat=True)
        self.log.info("board on %s, meter on %s:%d", self._board.port, cfg["modbus_host"], self._meter.port)

    def terminate(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._board.close()
        self._meter.set_load(0.0, (0.0, 0.0, 0.0), self.config["voltage_v"])  # integrates up to now
        self._meter.stop()
        write_file_atomically(self._journal, json.dumps({"energy_wh": self._meter.energy_wh}))

    # --- commands -------------------------------------------------------------------------------
    @handles(PlugCar)
    def on_plug(self, msg: PlugCar) -> Ack:
        self._load_script((WaitForRealPlugin(), *self._parse(msg.script)))  # pilot B at the next tick
        return Ack()

    @handles(UnplugCar)
    def on_unplug(self, msg: UnplugCar) -> Ack:
        self._faults -= _CAR_FAULTS  # they are the car's: its short, its diode, its leak leave with it
        self._load_script(parse("unplug"))
        return Ack()

    @handles(CarCommand)
    def on_car_command(self, msg: CarCommand) -> Ack:
        self._load_script(self._parse(msg.script))
        return Ack()

    @handles(InjectSimFault)
    def on_fault(self, msg: InjectSimFault) -> Ack:
        if msg.fault not in FAULTS:
            raise Rejected(f"unknown fault {msg.fault!r}; known: {', '.join(FAULTS)}")
        if msg.active:
            self._faults.add(msg.fault)
        else:
            self._faults.discard(msg.fault)
        if msg.fault == "meter_offline":
            self._meter.set_offline(msg.active)
        elif msg.fault == "lock_failure":
            self._board.jam_lock(msg.active)
        else:
            self._drive_board(self._car.outputs)  # at once, not at the next tick
        self._publish(force=True)
        return Ack()

    @handles(GetRigState)
    def on_get_state(self, msg: GetRigState) -> RigState:
        return self._state()

    def _parse(self, script: str) -> tuple[SimCommand, ...]:
        try:
            return parse(script)
        except ScriptError as exc:
            raise Rejected(f"bad car script: {exc}") from None

    def _load_script(self, commands: tuple[SimCommand, ...]) -> None:
        try:
            self._car.load(commands)
        except ScriptError as exc:  # e.g. `plugin` without plugin_commands
            raise Rejected(f"bad car script: {exc}") from None
        self._repeat_at = None
        self._publish(force=True)

    # --- the simulated world, every car tick ----------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic() - self._t0
        view = self._board.ev_view()
        out = self._car.advance_to(now, view.duty_percent, view.relays_closed)
        if self._pilot is CpState.A and out.pilot is not CpState.A:
            self._car_arrived()
        self._pilot = out.pilot
        self._drive_board(out)
        self._drive_meter(out)
        self._maybe_repeat(now, out)
        if time.monotonic() - self._journalled[0] >= _JOURNAL_EVERY_S:
            self._save_energy()
        self._publish()

    def _car_arrived(self) -> None:
        token = self.config["token"]
        if token:
            for reader in self.connections.get("card_reader", []):
                self.cast(reader, PresentCard(uid=token))

    def _drive_board(self, out: CarOutputs) -> None:
        """Tell the board simulator what changed on the vehicle side (car outputs plus injected faults)."""
        board = self._board
        plugged = out.pilot is not CpState.A
        state = out.pilot if out.pilot in (CpState.B, CpState.C, CpState.D) else self._ev[1]
        error_e = out.pilot is CpState.E or "pilot_error_e" in self._faults
        diode = plugged and (out.diode_fault or "diode_failure" in self._faults)
        rcd = max(out.rcd_milliamps, _FAULT_RCD_MA if "rcd" in self._faults else 0.0) if plugged else 0.0
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
        amps, volts, phases = out.draw_current_a, self.config["voltage_v"], out.phases
        load = (amps * volts * phases, amps, amps if phases >= 2 else 0.0, amps if phases >= 3 else 0.0)
        if load != self._load:
            self._meter.set_load(load[0], load[1:], volts)
            rising = load[0] > self._load[0]
            self._load = load
            if rising:  # the journalled headroom was computed at the lower power
                self._save_energy()

    def _maybe_repeat(self, now: float, out: CarOutputs) -> None:
        if not (self.config["repeat"] and self._script and self._car.finished and out.pilot is CpState.A):
            self._repeat_at = None
            return
        if self._repeat_at is None:
            self._repeat_at = now + self.config["repeat_pause_s"]
        elif now >= self._repeat_at:
            self._car.load(self._script)
            self._repeat_at = None

    # --- state, energy journal ------------------------------------------------------------------
    def _state(self) -> RigState:
        out = self._car.outputs
        return RigState(
            rig=self.name,
            car_pilot=out.pilot.value,
            draw_current_a=out.draw_current_a,
            phases=out.phases,
            soc_percent=self._car.battery.soc_percent,
            script_pending=[_text(c) for c in self._car.pending],
            meter_energy_wh=self._energy_now(),
            faults=sorted(self._faults),
        )

    def _publish(self, *, force: bool = False) -> None:
        """On a change of anything but the creeping numbers (energy, SoC), else once a second."""
        state, now = self._state(), time.monotonic()
        old = self._published
        steady = old is not None and state == dataclasses.replace(
            old, meter_energy_wh=state.meter_energy_wh, soc_percent=state.soc_percent
        )
        if force or not steady or now - self._published_at >= _PUBLISH_EVERY_S:
            self.publish(state)
            self._published, self._published_at = state, now

    def _energy_now(self) -> float:
        """The register brought up to now (the server itself integrates only when read)."""
        power, l1, l2, l3 = self._load
        self._meter.set_load(power, (l1, l2, l3), self.config["voltage_v"])
        return self._meter.energy_wh

    def _save_energy(self) -> None:
        ahead = self._energy_now() + self._load[0] * _HEADROOM_S / 3600.0
        if ahead != self._journalled[1]:  # an idle rig does not fsync every second
            write_file_atomically(self._journal, json.dumps({"energy_wh": ahead}))
        self._journalled = (time.monotonic(), ahead)

    def _restore_energy(self) -> float:
        try:
            with open(self._journal, encoding="utf-8") as f:
                energy = float(json.load(f)["energy_wh"])
        except FileNotFoundError:
            return 0.0
        except (ValueError, KeyError, TypeError) as exc:
            # refusing to start is better than a meter that silently restarts from zero
            raise RuntimeError(f"{self._journal} is unreadable: {exc}") from exc
        if not (math.isfinite(energy) and energy >= 0):
            raise RuntimeError(f"{self._journal} holds an impossible energy {energy!r}")
        return energy
