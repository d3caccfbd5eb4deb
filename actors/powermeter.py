"""PowerMeter: polls a Modbus billing meter (SDM630 or SunSpec, TCP or RTU) and publishes every reading.

Each poll runs `ModbusMeter.read()` on the I/O thread and publishes a `PowerMeterReading`. A failed read
publishes ``online=False`` with the fault and the last good values, so the EVSE manager turns it into
its meter fault and keeps billing from the last register it trusted; the next good read recovers.

Energy may never run backwards (``hal.meter.implausibility``). The driver keeps the last accepted
register across reads, so it is created once per link and only replaced when a SIL rig's meter server
moves to another port; the actor then carries the last energy over and checks it itself, so a swapped
driver cannot reset the guarantee.

With ``port_file`` the TCP port is read from a file under the state dir that a SIL rig writes; until it
exists every poll publishes an offline reading that says what it waits for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any, ClassVar

from charger.actors.charging import POWERMETER, PowerMeterReading, ReadMeterNow
from charger.hal.meter import MeterFault, MeterOffline, ModbusMeter, implausibility
from charger.protocols.modbus_maps import SDM630, MeterReading, RegisterMap, SunSpecProbe

from charger.behaviour import Behaviour, Pending, handles

__all__ = ["PowerMeter"]

_LAYOUTS: dict[str, RegisterMap | SunSpecProbe] = {"sdm630": SDM630, "sunspec": SunSpecProbe()}


class PowerMeter(Behaviour):
    description = "Polls a Modbus power meter and publishes PowerMeterReading; offline readings on failure."
    provides = {"meter": POWERMETER}
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "transport": {"enum": ["tcp", "rtu"], "default": "tcp"},
            "host": {"type": "string", "minLength": 1, "default": "127.0.0.1"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 502},
            "port_file": {
                "type": ["string", "null"],
                "default": None,
                "description": "Read the TCP port from this file (relative to the state dir); overrides port.",
            },
            "serial_port": {
                "type": ["string", "null"],
                "default": None,
                "description": "RTU: the serial device (relative to the state dir).",
            },
            "baudrate": {"type": "integer", "minimum": 1, "default": 9600},
            "device_id": {"type": "integer", "minimum": 0, "maximum": 255, "default": 1},
            "layout": {"enum": sorted(_LAYOUTS), "default": "sdm630"},
            "poll_s": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
            "timeout_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 0.3,
                "description": "Per answer; a dead meter costs about timeout * 3 per poll.",
            },
        },
        "if": {"properties": {"transport": {"const": "rtu"}}, "required": ["transport"]},
        "then": {"properties": {"serial_port": {"type": "string"}}, "required": ["serial_port"]},
    }

    def init(self) -> None:
        self.driver: ModbusMeter | None = None
        self.driver_port: int | None = None
        self.last: PowerMeterReading | None = None
        """The last good reading: its values ride along in offline readings."""
        self.polling = False
        self.offline_since: float | None = None
        if self.config["transport"] == "rtu":
            self.driver = ModbusMeter.rtu(
                self._path(self.config["serial_port"]),
                _LAYOUTS[self.config["layout"]],
                device_id=self.config["device_id"],
                baudrate=self.config["baudrate"],
                timeout=self.config["timeout_s"],
            )
        self.start_timer(self.config["poll_s"], self._poll, repeat=True)
        self._poll()

    def terminate(self, reason: str) -> None:
        if self.driver is not None:
            self.driver.close()

    @handles(ReadMeterNow)
    def on_read_now(self, msg: ReadMeterNow) -> Generator[Pending, Any, PowerMeterReading]:
        return (yield from self._read())

    def _poll(self) -> None:
        if self.polling:
            return  # a dead meter takes longer than a poll period to time out: never stack reads
        self.polling = True
        self.run_task(self._poll_once())

    def _poll_once(self) -> Generator[Pending, Any, None]:
        try:
            self.publish((yield from self._read()))
        finally:
            self.polling = False

    def _read(self) -> Generator[Pending, Any, PowerMeterReading]:
        """One read, always answered: a good reading, or an offline one saying why."""
        driver = self._current_driver()
        if isinstance(driver, str):
            return self._offline(driver)
        try:
            reading: MeterReading = yield self.run_io(driver.read)
            last_energy = self.last.energy_wh if self.last is not None else None
            problem = implausibility(reading, last_energy)  # the driver checked too, unless it was just replaced
            if problem is not None:
                raise MeterOffline(MeterFault.IMPLAUSIBLE, problem)
        except MeterOffline as exc:
            return self._offline(str(exc))
        except Exception as exc:  # a meter read must never take the actor down (logged with traceback)
            self.log.exception("unexpected error reading the meter")
            self.run_io(driver.close)  # start from a fresh link next time
            return self._offline(f"internal error: {type(exc).__name__}: {exc}")
        good = PowerMeterReading(
            online=True,
            energy_wh=reading.energy_import_wh,
            power_w=reading.power_w,
            currents_a=reading.currents_a,
            voltages_v=reading.voltages_v,
            at=time.time(),
        )
        if self.offline_since is not None:
            self.log.info("meter back online after %.1f s", time.monotonic() - self.offline_since)
            self.offline_since = None
        self.last = good
        return good

    def _offline(self, fault: str) -> PowerMeterReading:
        if self.offline_since is None:
            self.offline_since = time.monotonic()
            self.log.warning("meter offline: %s", fault)
        last = self.last
        return PowerMeterReading(
            online=False,
            energy_wh=last.energy_wh if last else None,
            power_w=last.power_w if last else None,
            currents_a=last.currents_a if last else (None, None, None),
            voltages_v=last.voltages_v if last else (None, None, None),
            at=last.at if last else time.time(),
            fault=fault,
        )

    def _current_driver(self) -> ModbusMeter | str:
        """The driver to read with, or why there is none yet (a port file not written)."""
        if self.config["transport"] == "rtu":
            assert self.driver is not None
            return self.driver
        port: int = self.config["port"]
        if self.config["port_file"] is not None:
            path = self._path(self.config["port_file"])
            try:
                with open(path, encoding="ascii") as f:
                    port = int(f.read().strip())
            except (OSError, ValueError) as exc:
                return f"waiting for the meter server's port in {path}: {exc}"
        if self.driver is None or port != self.driver_port:
            if self.driver is not None:
                self.log.info("meter server moved to port %d", port)
                self.run_io(self.driver.close)  # off the actor thread: it waits for a read in progress
            self.driver_port = port
            self.driver = ModbusMeter.tcp(
                self.config["host"],
                _LAYOUTS[self.config["layout"]],
                port=port,
                device_id=self.config["device_id"],
                timeout=self.config["timeout_s"],
            )
        return self.driver

    def _path(self, path: str) -> str:
        return os.path.join(self.state_dir, path)
