"""Power meters: the `PowerMeter` seam and `ModbusMeter`, the real driver over Modbus TCP or RTU.

`read()` blocks: run it on the meter actor's I/O thread (DESIGN.md §4), never on the actor loop. Every
failure is one typed exception, `MeterOffline`, with a `MeterFault` saying why; the caller marks the
meter offline and simply reads again later. The driver reconnects on the next read after a link
failure and, for SunSpec, discovers the model again after every reconnect (the device may have been
replaced or reconfigured while the link was down).

Timeouts are hard: pymodbus's synchronous clients use `timeout` for the connect and for each answer,
and `retries` resends, so a dead meter costs at most about ``timeout * (retries + 2)`` per read
(0.9 s with the defaults) before `MeterOffline` is raised.
"""

from __future__ import annotations

import enum
import math
import threading
from collections.abc import Sequence
from typing import Protocol

from charger.protocols.modbus_maps import (
    MeterReading,
    ReadBlock,
    RegisterDecodeError,
    RegisterMap,
    SunSpecError,
    SunSpecProbe,
    Table,
    decode_points,
    discover_models,
    find_meter_model,
    plan_reads,
    sunspec_meter_map,
)
from pymodbus.client import ModbusBaseSyncClient, ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

__all__ = [
    "MAX_VOLTAGE_V",
    "MeterFault",
    "MeterOffline",
    "MeterReading",
    "ModbusMeter",
    "PowerMeter",
    "implausibility",
]

MAX_VOLTAGE_V = 1000.0
"""Highest plausible phase voltage: the upper bound of "low voltage" (IEC 60038). A mis-scaled value
(wrong scale factor, wrong word order) lands far outside it."""

_ILLEGAL_ADDRESS = 0x02  # Modbus exception code: the device has no register at that address


class PowerMeter(Protocol):
    """What a meter actor needs from a meter, real or simulated."""

    def read(self) -> MeterReading:
        """Read every value once. Blocks (bounded by the driver's timeouts); raises `MeterOffline`."""
        ...

    def close(self) -> None:
        """Release the link. A later `read` may reconnect."""
        ...


class MeterFault(enum.Enum):
    """Why a read failed. Every fault means "offline until a read succeeds"; the split is for logs and
    for the error the meter actor raises (e.g. CommunicationFault vs VendorError in EVerest terms)."""

    CONNECTION = "connection"
    """Could not connect, or the link broke (socket reset, serial port gone)."""
    TIMEOUT = "timeout"
    """Connected, but no answer within the timeout after all retries."""
    EXCEPTION_RESPONSE = "exception_response"
    """The device answered with a Modbus exception (illegal address, device failure, busy, ...)."""
    BAD_DATA = "bad_data"
    """The answer could not be decoded: wrong register count, scale factor out of range."""
    IMPLAUSIBLE = "implausible"
    """Decoded, but not believable: NaN or infinite, voltage out of range, energy going backwards."""
    NOT_SUNSPEC = "not_sunspec"
    """SunSpec discovery found no marker, a malformed model list, or no meter model."""


class MeterOffline(Exception):
    """The meter gave no usable reading; `reason` says why, `detail` is for the log, and
    `exception_code` is the Modbus exception code when `reason` is EXCEPTION_RESPONSE."""

    def __init__(self, reason: MeterFault, detail: str, *, exception_code: int | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.exception_code = exception_code


def implausibility(reading: MeterReading, last_energy_wh: float | None) -> str | None:
    """Why `reading` cannot be believed, or None if it can. Pure, so the policy is testable on its own.

    Energy may never fall below `last_energy_wh` (the last accepted energy): for billing, a counter that
    runs backwards is a fault (rollover, swapped meter, corrupted register), not a new baseline.
    """
    named = {
        "energy_import_wh": reading.energy_import_wh,
        "power_w": reading.power_w,
        "frequency_hz": reading.frequency_hz,
        **{f"current_l{i}_a": v for i, v in enumerate(reading.currents_a, 1)},
        **{f"voltage_l{i}_v": v for i, v in enumerate(reading.voltages_v, 1)},
    }
    for name, value in named.items():
        if value is not None and not math.isfinite(value):
            return f"{name} is {value}"
    for i, volts in enumerate(reading.voltages_v, 1):
        if volts is not None and not 0 <= volts <= MAX_VOLTAGE_V:
            return f"voltage_l{i}_v {volts} V outside 0..{MAX_VOLTAGE_V:g} V"
    energy = reading.energy_import_wh
    if energy is not None and energy < 0:
        return f"energy_import_wh {energy} is negative"
    if energy is not None and last_energy_wh is not None and energy < last_energy_wh:
        return f"energy went backwards from {last_energy_wh} to {energy} Wh"
    return None


class ModbusMeter:
    """A power meter on pymodbus's synchronous client: `tcp(...)` or `rtu(...)`, fixed map or SunSpec.

    `device_id` is the Modbus unit id: the meter's bus address on RTU (1..247), 1 or 255 for most
    TCP-native meters, the bus address of the meter behind an RS-485 gateway.

    Thread-safe (one lock): the actor's I/O executor may call `read` from any of its threads and
    `close` from another; calls run one at a time, so a `close` waits for a read in progress (at most
    the bounded read time).
    """

    def __init__(self, client: ModbusBaseSyncClient, layout: RegisterMap | SunSpecProbe, *, device_id: int = 1) -> None:
        if not 0 <= device_id <= 255:
            raise ValueError(f"device_id {device_id} outside 0..255")
        self._client = client
        self._layout = layout
        self._device_id = device_id
        self._lock = threading.Lock()
        self._map: RegisterMap | None = layout if isinstance(layout, RegisterMap) else None
        self._blocks: tuple[ReadBlock, ...] = plan_reads(self._map) if self._map else ()
        self._last_energy_wh: float | None = None

    @classmethod
    def tcp(
        cls,
        host: str,
        layout: RegisterMap | SunSpecProbe,
        *,
        port: int = 502,
        device_id: int = 1,
        timeout: float = 0.3,
        retries: int = 1,
    ) -> ModbusMeter:
        """A meter behind Modbus TCP (a meter's own Ethernet port or an RS-485 gateway)."""
        return cls(ModbusTcpClient(host, port=port, timeout=timeout, retries=retries), layout, device_id=device_id)

    @classmethod
    def rtu(
        cls,
        port: str,
        layout: RegisterMap | SunSpecProbe,
        *,
        device_id: int = 1,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        timeout: float = 0.3,
        retries: int = 1,
    ) -> ModbusMeter:
        """A meter on an RS-485 line (Modbus RTU). 9600 8N1 is the SDM630's factory setting."""
        client = ModbusSerialClient(
            port, baudrate=baudrate, parity=parity, stopbits=stopbits, timeout=timeout, retries=retries
        )
        return cls(client, layout, device_id=device_id)

    @property
    def register_map(self) -> RegisterMap | None:
        """The map in use: the fixed one, or the SunSpec model found (None until discovery succeeds)."""
        return self._map

    def read(self) -> MeterReading:
        """Read all points in block reads and decode them; raise `MeterOffline` on any failure."""
        with self._lock:
            register_map = self._map if self._map is not None else self._discover()
            image: dict[Table, dict[int, int]] = {}
            for block in self._blocks:
                words = self._read_block(block.table, block.address, block.count)
                addresses = range(block.address, block.address + block.count)
                image.setdefault(block.table, {}).update(zip(addresses, words, strict=True))
            try:
                reading = decode_points(register_map, image)
            except RegisterDecodeError as exc:
                raise MeterOffline(MeterFault.BAD_DATA, str(exc)) from exc
            problem = implausibility(reading, self._last_energy_wh)
            if problem is not None:
                raise MeterOffline(MeterFault.IMPLAUSIBLE, problem)
            if reading.energy_import_wh is not None:
                self._last_energy_wh = reading.energy_import_wh
            return reading

    def close(self) -> None:
        """Close the link; the next `read` reconnects (and rediscovers a SunSpec model)."""
        with self._lock:
            self._drop_link()

    def _drop_link(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]  # pymodbus leaves close() unannotated
        if isinstance(self._layout, SunSpecProbe):
            self._map, self._blocks = None, ()

    def _discover(self) -> RegisterMap:
        assert isinstance(self._layout, SunSpecProbe)  # a fixed map is set in __init__ and never dropped
        try:
            models = discover_models(self._read_or_none, self._layout.bases)
            register_map = sunspec_meter_map(find_meter_model(models, self._layout.model_ids))
        except SunSpecError as exc:
            raise MeterOffline(MeterFault.NOT_SUNSPEC, str(exc)) from exc
        self._map, self._blocks = register_map, plan_reads(register_map)
        return register_map

    def _read_or_none(self, address: int, count: int) -> Sequence[int] | None:
        """Discovery's reader: "illegal address" means "no model here", not a failure."""
        try:
            return self._read_block(Table.HOLDING, address, count)
        except MeterOffline as exc:
            if exc.exception_code == _ILLEGAL_ADDRESS:
                return None
            raise

    def _read_block(self, table: Table, address: int, count: int) -> list[int]:
        read = self._client.read_holding_registers if table is Table.HOLDING else self._client.read_input_registers
        try:
            response = read(address, count=count, device_id=self._device_id)
        except ConnectionException as exc:
            self._drop_link()
            raise MeterOffline(MeterFault.CONNECTION, str(exc)) from exc
        except ModbusIOException as exc:
            # No answer in time. Close too, so a late answer cannot be mistaken for the next one.
            self._drop_link()
            raise MeterOffline(MeterFault.TIMEOUT, str(exc)) from exc
        except (ModbusException, OSError) as exc:
            self._drop_link()
            raise MeterOffline(MeterFault.CONNECTION, f"{type(exc).__name__}: {exc}") from exc
        if response.isError():
            raise MeterOffline(
                MeterFault.EXCEPTION_RESPONSE,
                f"exception code {response.exception_code} reading {count} {table.name.lower()} registers at {address}",
                exception_code=response.exception_code,
            )
        registers = list(response.registers)
        if len(registers) != count:
            raise MeterOffline(MeterFault.BAD_DATA, f"asked for {count} registers at {address}, got {len(registers)}")
        return registers
