"""SilRig: the simulated hardware of one or more connectors, for software-in-the-loop runs and tests.

Each connector is a `SimulatedConnector` (charger.sim.rig_connector): a `BoardSimulator` behind a pty
(a `BoardDriver` opens its symlink), a Modbus `MeterServer` (a power-meter actor reads it over TCP) and
a `CarSimulator` that runs EVerest's car-simulator scripts. Every 250 ms (the car's tick) each car sees
its board's PWM and relays and acts. Faults are injected with `InjectSimFault`; user scripts that do
not parse are answered with `Rejected`, never a crash.

One rig can simulate a whole park (``connectors:`` in its config): the simulated world is not part of
the charger, and one process for all of it keeps a SIL run close to what the charger itself costs.

The rig owns threads (simulator, meter server), so it creates no child actors (DESIGN §4).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, ClassVar

from charger.actors.charging import (
    CARD_READER_SIM,
    SIL_RIG,
    CarCommand,
    DescribeRig,
    GetRigState,
    InjectSimFault,
    PlugCar,
    PresentCard,
    RigLayout,
    RigState,
    UnplugCar,
)
from charger.protocols.carsim import TICK_S, ScriptError
from charger.sim.rig_connector import FAULTS, LAYOUTS, ConnectorSettings, SimulatedConnector, script_text

from charger.behaviour import Behaviour, Timer, handles
from charger.errors import Rejected
from charger.interfaces import Requirement
from charger.journal import write_file_atomically
from charger.lifecycle import Ack

__all__ = ["FAULTS", "SilRig"]

_PUBLISH_EVERY_S = 1.0

_CONNECTOR_PROPERTIES: dict[str, Any] = {
    "board_link": {
        "type": "string",
        "minLength": 1,
        "description": "Pty symlink; default <name>.board (<name>-<n>.board for several).",
    },
    "watchdog_s": {"type": "number", "exclusiveMinimum": 0},
    "modbus_host": {"type": "string"},
    "modbus_port": {"type": "integer", "minimum": 0, "maximum": 65535, "description": "0: any."},
    "meter_layout": {"enum": list(LAYOUTS)},
    "voltage_v": {"type": "number", "exclusiveMinimum": 0},
    "script": {"type": "string", "description": "Car-simulator script run at start."},
    "repeat": {"type": "boolean", "description": "Run the script again once unplugged."},
    "repeat_pause_s": {"type": "number", "minimum": 0},
    "token": {"type": ["string", "null"], "description": "Card shown when the car plugs in."},
    "battery_kwh": {"type": "number", "exclusiveMinimum": 0},
    "soc_percent": {"type": "number", "minimum": 0, "maximum": 100},
    "port_file": {
        "type": "string",
        "description": "Write the Modbus TCP port actually bound here (relative: under the state dir).",
    },
    "relay_log": {
        "type": "string",
        "minLength": 1,
        "description": "Append every relay, pilot, PWM and board-fault change here as a JSON line (relative: "
        "under the state dir); the safety record `python -m charger.chaos` checks.",
    },
}
_DEFAULTS: dict[str, Any] = {
    "watchdog_s": 0.5,
    "modbus_host": "127.0.0.1",
    "modbus_port": 0,
    "meter_layout": "sdm630",
    "voltage_v": 230,
    "script": "",
    "repeat": False,
    "repeat_pause_s": 5,
    "token": None,
    "battery_kwh": 60,
    "soc_percent": 30,
}


class SilRig(Behaviour):
    description = "Simulated hardware of one or more connectors: board on a pty, car, Modbus meter server."
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
            **{
                key: {**rule, "default": _DEFAULTS[key]} if key in _DEFAULTS else rule
                for key, rule in _CONNECTOR_PROPERTIES.items()
            },
            "connectors": {
                "type": "array",
                "minItems": 1,
                "maxItems": 256,
                "description": "One entry per simulated connector; the keys above are every entry's defaults.",
                "items": {"type": "object", "additionalProperties": False, "properties": _CONNECTOR_PROPERTIES},
            },
        },
    }

    def init(self) -> None:
        entries = self.config.get("connectors") or [{}]
        self._sims: list[SimulatedConnector] = []
        try:
            for number, entry in enumerate(entries, start=1):
                self._sims.append(self._start_connector(number, len(entries), {**self.config, **entry}))
        except BaseException:
            for sim in self._sims:
                sim.close()
            raise
        self._published: list[tuple[RigState | None, float]] = [(None, -math.inf)] * len(self._sims)
        self._t0 = time.monotonic()
        self._timer: Timer | None = self.start_timer(TICK_S, self._tick, repeat=True)

    def _start_connector(self, number: int, of: int, cfg: dict[str, Any]) -> SimulatedConnector:
        stem = self.name if of == 1 else f"{self.name}-{number}"
        settings = ConnectorSettings(
            board_link=os.path.join(self.state_dir, cfg.get("board_link") or f"{stem}.board"),
            energy_journal=os.path.join(self.state_dir, f"{stem}.meter.json"),
            relay_log=os.path.join(self.state_dir, cfg["relay_log"]) if "relay_log" in cfg else None,
            **{key: cfg[key] for key in _DEFAULTS},
        )
        sim = SimulatedConnector(settings)
        if "port_file" in cfg:
            write_file_atomically(os.path.join(self.state_dir, cfg["port_file"]), str(sim.meter.port))
        self.log.info(
            "connector %d: board on %s, meter on %s:%d", number, sim.board.port, cfg["modbus_host"], sim.meter.port
        )
        return sim

    def terminate(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sim in self._sims:
            sim.close()

    # --- commands -------------------------------------------------------------------------------
    def _sim(self, connector: int) -> SimulatedConnector:
        if not 1 <= connector <= len(self._sims):
            raise Rejected(f"{self.name} simulates connectors 1..{len(self._sims)}, not {connector}")
        return self._sims[connector - 1]

    @handles(PlugCar)
    def on_plug(self, msg: PlugCar) -> Ack:
        sim = self._sim(msg.connector)
        self._scripted(lambda: sim.plug(msg.script))
        return self._changed(msg.connector)

    @handles(UnplugCar)
    def on_unplug(self, msg: UnplugCar) -> Ack:
        sim = self._sim(msg.connector)
        self._scripted(sim.unplug)
        return self._changed(msg.connector)

    @handles(CarCommand)
    def on_car_command(self, msg: CarCommand) -> Ack:
        sim = self._sim(msg.connector)
        self._scripted(lambda: sim.run(msg.script))
        return self._changed(msg.connector)

    @handles(InjectSimFault)
    def on_fault(self, msg: InjectSimFault) -> Ack:
        sim = self._sim(msg.connector)
        if msg.fault not in FAULTS:
            raise Rejected(f"unknown fault {msg.fault!r}; known: {', '.join(FAULTS)}")
        sim.set_fault(msg.fault, msg.active)
        return self._changed(msg.connector)

    @handles(GetRigState)
    def on_get_state(self, msg: GetRigState) -> RigState:
        return self._state(msg.connector, self._sim(msg.connector))

    @handles(DescribeRig)
    def on_describe(self, msg: DescribeRig) -> RigLayout:
        return RigLayout(connectors=len(self._sims))

    def _scripted(self, command: Any) -> None:
        try:
            command()
        except ScriptError as exc:
            raise Rejected(f"bad car script: {exc}") from None

    def _changed(self, connector: int) -> Ack:
        self._publish(connector, force=True)
        return Ack()

    # --- the simulated world, every car tick ----------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic() - self._t0
        for number, sim in enumerate(self._sims, start=1):
            if sim.tick(now) and sim.settings.token:
                for reader in self.connections.get("card_reader", []):
                    self.cast(reader, PresentCard(uid=sim.settings.token))
            self._publish(number)

    def _state(self, connector: int, sim: SimulatedConnector) -> RigState:
        out = sim.car.outputs
        return RigState(
            rig=self.name,
            car_pilot=out.pilot.value,
            draw_current_a=out.draw_current_a,
            phases=out.phases,
            soc_percent=sim.car.battery.soc_percent,
            script_pending=[script_text(c) for c in sim.car.pending],
            meter_energy_wh=sim.energy_now(),
            faults=sorted(sim.faults),
            connector=connector,
        )

    def _publish(self, connector: int, *, force: bool = False) -> None:
        """On a change of anything but the creeping numbers (energy, SoC), else once a second."""
        state, now = self._state(connector, self._sims[connector - 1]), time.monotonic()
        old, published_at = self._published[connector - 1]
        steady = old is not None and state == dataclasses.replace(
            old, meter_energy_wh=state.meter_energy_wh, soc_percent=state.soc_percent
        )
        if force or not steady or now - published_at >= _PUBLISH_EVERY_S:
            self.publish(state)
            self._published[connector - 1] = (state, now)
