"""A simulated Modbus power meter: a real pymodbus server that a `ModbusMeter` reads like hardware.

`MeterServer` runs pymodbus's TCP server (and optionally its RTU server on a pty) on its own thread
with its own asyncio loop, serving the register layout of an Eastron SDM630 or of a SunSpec 203 meter
(both from `charger.protocols.modbus_maps`, so the driver and the simulator share one map). The test or
SIL scenario sets the load; the energy register integrates power over monotonic time and is brought up
to date on every read request, so the energy a client reads is exactly the integral of what was set.

Fault injection: `set_offline` (requests are received but never answered, so the client times out),
`set_exception` (every read gets a Modbus exception response), `set_garbage` (implausible values:
NaN on the SDM630, 3276.7 V on SunSpec), `set_energy_wh` (a counter that jumps, e.g. a swapped meter),
`set_words` (any raw words at any served address, e.g. a corrupted SunSpec model list).

RTU: pymodbus opens serial ports by path, and only the slave side of a pty has one. So there are two
ptys (`charger.sim._pty.PtyPort`): the server opens one slave, the client opens the other (`rtu_port`),
and the server's loop copies bytes between the two masters, like ``socat pty pty``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from charger.protocols.modbus_maps import (
    NOT_IMPLEMENTED,
    SDM630,
    SUNS_MARKER,
    SUNSPEC_METER_LENGTH,
    DataType,
    MeterReading,
    ModelHeader,
    Quantity,
    RegisterMap,
    Table,
    decode_points,
    encode_point,
    sunspec_meter_map,
)
from charger.sim._pty import PtyPort
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

__all__ = ["SUNSPEC_BASE", "SUNSPEC_MODEL_ADDRESS", "MeterLayout", "MeterServer"]

SUNSPEC_BASE = 40000
_COMMON_LENGTH = 66  # SunSpec model 1 with its Pad register: Mn 16, Md 16, Opt 8, Vr 8, SN 16, DA, Pad
SUNSPEC_MODEL_ADDRESS = SUNSPEC_BASE + 2 + 2 + _COMMON_LENGTH
"""Where the simulated 203 model's ID register sits: after "SunS" and the common model."""
_SUNSPEC_END = SUNSPEC_MODEL_ADDRESS + 2 + SUNSPEC_METER_LENGTH  # end marker 0xFFFF, 0

# Scale factors served, by offset in the 203 model. Chosen for headroom in int16: 327.67 A, 3276.7 V,
# 327.67 Hz and 327.67 kW (10 W steps, enough for DC chargers); energy in whole Wh.
_SUNSPEC_SCALE_FACTORS = {6: -2, 15: -1, 17: -2, 22: 1, 54: 0}  # A_SF, V_SF, Hz_SF, W_SF, TotWh_SF
# Not-implemented filler by offset range of models 201-204 (from the model definition): int16 and sunssf
# points, then acc32 energy groups, each closed by its scale factor; Evt (bitfield32) ends the model.
_SUNSPEC_FILL = (
    (range(2, 38), NOT_IMPLEMENTED[DataType.INT16]),
    (range(38, 54, 2), NOT_IMPLEMENTED[DataType.ACC32]),  # TotWhExp.., TotWhImp..
    (range(54, 55), NOT_IMPLEMENTED[DataType.SUNSSF]),
    (range(55, 71, 2), NOT_IMPLEMENTED[DataType.ACC32]),  # TotVAh..
    (range(71, 72), NOT_IMPLEMENTED[DataType.SUNSSF]),
    (range(72, 104, 2), NOT_IMPLEMENTED[DataType.ACC32]),  # TotVArh..
    (range(104, 105), NOT_IMPLEMENTED[DataType.SUNSSF]),
    (range(105, 107, 2), (0, 0)),  # Evt: mandatory, no event flags set
)
_GARBAGE_SUNSPEC_VOLTAGE_WORD = 0x7FFF  # 3276.7 V at V_SF = -1: far beyond any low-voltage supply
_VOLTAGES = frozenset({Quantity.VOLTAGE_L1_V, Quantity.VOLTAGE_L2_V, Quantity.VOLTAGE_L3_V})


class MeterLayout(enum.Enum):
    """Which meter the server pretends to be."""

    SDM630 = "sdm630"
    SUNSPEC_203 = "sunspec_203"


def _text_words(text: str, count: int) -> list[int]:
    """A SunSpec string point: UTF-8, NUL-padded to `count` registers."""
    raw = text.encode().ljust(2 * count, b"\0")[: 2 * count]
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def _sunspec_static() -> dict[int, int]:
    """The SunSpec image apart from live values: marker, common model, 203 header, filler, end marker."""
    image: dict[int, int] = dict(enumerate(SUNS_MARKER, SUNSPEC_BASE))
    common = [1, _COMMON_LENGTH, *_text_words("charger", 16), *_text_words("meter-sim 203", 16)]
    common += [*_text_words("", 8), *_text_words("1.0", 8), *_text_words("SIM0001", 16), 1, 0]  # Opt Vr SN DA Pad
    image.update(enumerate(common, SUNSPEC_BASE + 2))
    model = SUNSPEC_MODEL_ADDRESS
    image.update({model: 203, model + 1: SUNSPEC_METER_LENGTH})
    for offsets, words in _SUNSPEC_FILL:
        for offset in offsets:
            image.update(enumerate(words, model + offset))
    image.update({model + offset: sf & 0xFFFF for offset, sf in _SUNSPEC_SCALE_FACTORS.items()})
    image.update({_SUNSPEC_END: 0xFFFF, _SUNSPEC_END + 1: 0})
    return image


class MeterServer:
    """A Modbus meter on 127.0.0.1 (port 0 = any free port, see `port`) and optionally on a pty (`rtu_port`).

    Start with `start()` or a `with` block; `stop()` stops the servers, joins the thread and closes every
    socket and pty. Setters may be called from any thread while the server runs.
    """

    def __init__(
        self,
        layout: MeterLayout = MeterLayout.SDM630,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rtu: bool = False,
        device_id: int = 1,
        energy_wh: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.layout = layout
        self._host, self._requested_port, self._rtu, self._device_id = host, port, rtu, device_id
        self._clock = clock
        if layout is MeterLayout.SDM630:
            self.register_map: RegisterMap = SDM630
            self._static: dict[int, int] = {}
        else:
            self.register_map = sunspec_meter_map(ModelHeader(203, SUNSPEC_MODEL_ADDRESS, SUNSPEC_METER_LENGTH))
            self._static = _sunspec_static()
        self._table = self.register_map.points[0].table  # both layouts keep every point in one table
        self._lock = threading.Lock()
        self._power_w, self._currents_a, self._voltage_v, self._frequency_hz = 0.0, (0.0, 0.0, 0.0), 230.0, 50.0
        self._energy_wh, self._stamp = 0.0, clock()
        self._offline, self._garbage = False, False
        self._words: dict[int, int] = {}
        self._exception: ExcCodes | None = None
        self._served: dict[Quantity, float | None] = {}
        self._requests = 0
        self.set_energy_wh(energy_wh)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port: int | None = None
        self._rtu_port: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving; returns once the servers listen (raises if they cannot)."""
        if self._thread is not None:
            raise RuntimeError("MeterServer.start() called twice")
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="meter-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"meter server failed to start: {self._error}") from self._error

    def stop(self) -> None:
        """Stop serving and release the thread, sockets and ptys. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed by itself
            loop.call_soon_threadsafe(stopping.set)
        thread.join()

    def __enter__(self) -> MeterServer:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port actually listened on (the free one picked when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("MeterServer is not running")
        return self._port

    @property
    def rtu_port(self) -> str:
        """Path of the pty a Modbus RTU client opens (any baud rate works on a pty)."""
        if self._rtu_port is None:
            raise RuntimeError("MeterServer was not started with rtu=True")
        return self._rtu_port

    # --- load and faults -----------------------------------------------------------------------------

    def set_load(
        self,
        power_w: float,
        currents_a: tuple[float, float, float] = (0.0, 0.0, 0.0),
        voltage_v: float = 230.0,
        *,
        frequency_hz: float = 50.0,
    ) -> None:
        """What the meter measures from now on. Energy up to now is integrated at the previous power.

        Only import is modelled, so every value must be finite and >= 0. Raises `ValueError` for values
        the served layout cannot represent (e.g. more than 327.67 A on SunSpec).
        """
        values = (power_w, *currents_a, voltage_v, frequency_hz)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"load values must be finite and >= 0, got {values}")
        candidate = _quantities(power_w, currents_a, voltage_v, frequency_hz, 0.0)
        for point in self.register_map.points:  # fail here, in the caller, not later in the server
            encode_point(point, candidate[point.quantity], scale_factor=self._scale_factor(point.scale_factor_address))
        with self._lock:
            self._integrate()
            self._power_w, self._currents_a, self._voltage_v = power_w, currents_a, voltage_v
            self._frequency_hz = frequency_hz

    def set_energy_wh(self, energy_wh: float) -> None:
        """Set the energy counter (a meter swapped or reset); integration continues from here."""
        if not math.isfinite(energy_wh) or energy_wh < 0:
            raise ValueError(f"energy_wh must be finite and >= 0, got {energy_wh}")
        with self._lock:
            self._energy_wh, self._stamp = energy_wh, self._clock()

    def set_offline(self, offline: bool) -> None:
        """Receive requests but never answer them (a meter without power behind a gateway, a cut bus)."""
        with self._lock:
            self._offline = offline

    def set_exception(self, code: int | None) -> None:
        """Answer every read with Modbus exception `code` (e.g. 4, device failure); None to stop."""
        with self._lock:
            self._exception = None if code is None else ExcCodes(code)  # ValueError for a code Modbus lacks

    def set_garbage(self, garbage: bool) -> None:
        """Serve implausible values: NaN on the SDM630, 3276.7 V phase voltages on SunSpec."""
        with self._lock:
            self._garbage = garbage

    def set_words(self, words: Mapping[int, int]) -> None:
        """Serve these raw words at these addresses (of the layout's table) instead of what the meter
        would; an empty mapping serves the meter again. Only addresses the layout serves can be
        overridden. While any are set, `served` is not updated: what was served may not decode."""
        if any(not 0 <= w <= 0xFFFF for w in words.values()):
            raise ValueError("a register holds a word: 0..65535")
        with self._lock:
            self._words = dict(words)

    # --- what was served -----------------------------------------------------------------------------

    @property
    def energy_wh(self) -> float:
        """The exact integrated energy as of the last read request (or setter)."""
        with self._lock:
            return self._energy_wh

    @property
    def served(self) -> MeterReading:
        """Each value as a client decodes it from the latest answer that carried it (None: never served)."""
        with self._lock:
            s = self._served
        q = Quantity
        return MeterReading(
            energy_import_wh=s.get(q.ENERGY_IMPORT_WH),
            power_w=s.get(q.POWER_W),
            currents_a=(s.get(q.CURRENT_L1_A), s.get(q.CURRENT_L2_A), s.get(q.CURRENT_L3_A)),
            voltages_v=(s.get(q.VOLTAGE_L1_V), s.get(q.VOLTAGE_L2_V), s.get(q.VOLTAGE_L3_V)),
            frequency_hz=s.get(q.FREQUENCY_HZ),
        )

    @property
    def request_count(self) -> int:
        """Read requests received so far (answered or not)."""
        with self._lock:
            return self._requests

    # --- inside the server ---------------------------------------------------------------------------

    def _integrate(self) -> None:
        """Bring the energy up to now at the current power (caller holds the lock)."""
        now = self._clock()
        self._energy_wh += self._power_w * (now - self._stamp) / 3600.0
        self._stamp = now

    def _scale_factor(self, address: int | None) -> int:
        return 0 if address is None else _SUNSPEC_SCALE_FACTORS[address - SUNSPEC_MODEL_ADDRESS]

    def _render(self) -> dict[int, int]:
        """Every live register as of now (caller holds the lock)."""
        values = _quantities(self._power_w, self._currents_a, self._voltage_v, self._frequency_hz, self._energy_wh)
        words: dict[int, int] = {}
        for point in self.register_map.points:
            sf = self._scale_factor(point.scale_factor_address)
            value: float = values[point.quantity]
            if self._garbage and self.layout is MeterLayout.SDM630:
                value = math.nan
            encoded = encode_point(point, value, scale_factor=sf)
            if self._garbage and self.layout is MeterLayout.SUNSPEC_203 and point.quantity in _VOLTAGES:
                encoded = (_GARBAGE_SUNSPEC_VOLTAGE_WORD,)
            words.update(enumerate(encoded, point.address))
        return words

    async def _action(  # noqa: PLR0917 - pymodbus's SimAction signature
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this before answering any request for a valid address range."""
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's measurements are read-only
        with self._lock:
            self._requests += 1
            self._integrate()
            if self._exception is not None:
                return self._exception
            if function_code != self._table:
                return None  # the placeholder register of the other table
            live = self._render()
            # `registers` is the server's own store: static words overridden earlier must come back too
            for register, word in {**self._static, **live, **self._words}.items():
                if 0 <= register - start_address < len(registers):
                    registers[register - start_address] = word
            if not self._offline and not self._words:  # an answer that is dropped was never served
                served = _by_quantity(decode_points(self.register_map, {self._table: {**self._static, **live}}))
                for point in self.register_map.points:
                    if address <= point.address and point.address + point.words <= address + count:
                        self._served[point.quantity] = served[point.quantity]
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet hook: an empty answer is never written, so offline means silent."""
        with self._lock:
            offline = self._offline
        return b"" if sending and offline else data

    def _device(self) -> SimDevice:
        """A fresh device per server (pymodbus copies the registers into each server it builds)."""
        image = {**self._static, **self._render_locked()}
        # One SimData per contiguous run, so gaps (SDM630) stay invalid: reading them is "illegal address".
        runs: list[SimData] = []
        run: list[int] = []
        for address in sorted(image):
            if run and address != run[-1] + 1:
                runs.append(_registers(image, run))
                run = []
            run.append(address)
        runs.append(_registers(image, run))
        # pymodbus wants every table non-empty; the other table gets one placeholder register.
        placeholder = [SimData(0, values=0, datatype=SimType.REGISTERS)]
        holding, inputs = (runs, placeholder) if self._table is Table.HOLDING else (placeholder, runs)
        bits = [SimData(0, values=0, datatype=SimType.BITS)]
        return SimDevice(self._device_id, simdata=(bits, list(bits), holding, inputs), action=self._action)

    def _render_locked(self) -> dict[int, int]:
        with self._lock:
            return self._render()

    async def _main(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        servers: list[ModbusBaseServer] = []
        ptys: list[PtyPort] = []
        try:
            try:
                address = (self._host, self._requested_port)
                tcp = ModbusTcpServer(self._device(), address=address, trace_packet=self._trace_packet)
                servers.append(tcp)  # before listening, so a failed listen is shut down too
                await tcp.serve_forever(background=True)
                # pymodbus keeps the asyncio.Server of a listener in `transport` (typed as a transport).
                listener: asyncio.Server = tcp.transport  # type: ignore[assignment]
                self._port = int(listener.sockets[0].getsockname()[1])
                if self._rtu:
                    await self._start_rtu(servers, ptys)
            except Exception as exc:  # noqa: BLE001 - handed to start(), which raises it in the caller's thread
                self._error = exc
            finally:
                self._ready.set()  # whatever happened, start() must not wait forever
            if self._error is None:
                await self._stopping.wait()
        finally:
            for server in servers:
                await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
            if ModbusBaseServer.active_server in servers:
                ModbusBaseServer.active_server = None  # pymodbus's class-level "last server" would pin ours
            for pty in ptys:
                self._loop.remove_reader(pty.fd)
                pty.close()

    async def _start_rtu(self, servers: list[ModbusBaseServer], ptys: list[PtyPort]) -> None:
        """Two raw ptys bridged by this loop; the server opens one slave, clients the other."""
        server_side = PtyPort()
        ptys.append(server_side)
        client_side = PtyPort()
        ptys.append(client_side)
        assert self._loop is not None
        self._loop.add_reader(server_side.fd, _relay, server_side, client_side)
        self._loop.add_reader(client_side.fd, _relay, client_side, server_side)
        self._rtu_port = client_side.port
        device, trace = self._device(), self._trace_packet
        server = ModbusSerialServer(device, port=server_side.port, baudrate=9600, trace_packet=trace)
        servers.append(server)
        await server.serve_forever(background=True)


def _relay(source: PtyPort, target: PtyPort) -> None:
    """Copy what arrived on one pty master to the other. Bytes nobody reads are dropped, as on a bus."""
    with contextlib.suppress(OSError):  # a failing pty must not kill the loop; the client just times out
        target.write(source.read())


def _quantities(
    power: float, currents: tuple[float, float, float], volts: float, hz: float, energy: float
) -> dict[Quantity, float]:
    """A load as a value per quantity (every phase at the same voltage)."""
    q = Quantity
    return {
        q.ENERGY_IMPORT_WH: energy,
        q.POWER_W: power,
        q.CURRENT_L1_A: currents[0],
        q.CURRENT_L2_A: currents[1],
        q.CURRENT_L3_A: currents[2],
        q.VOLTAGE_L1_V: volts,
        q.VOLTAGE_L2_V: volts,
        q.VOLTAGE_L3_V: volts,
        q.FREQUENCY_HZ: hz,
    }


def _by_quantity(reading: MeterReading) -> dict[Quantity, float | None]:
    q = Quantity
    return {
        q.ENERGY_IMPORT_WH: reading.energy_import_wh,
        q.POWER_W: reading.power_w,
        q.CURRENT_L1_A: reading.currents_a[0],
        q.CURRENT_L2_A: reading.currents_a[1],
        q.CURRENT_L3_A: reading.currents_a[2],
        q.VOLTAGE_L1_V: reading.voltages_v[0],
        q.VOLTAGE_L2_V: reading.voltages_v[1],
        q.VOLTAGE_L3_V: reading.voltages_v[2],
        q.FREQUENCY_HZ: reading.frequency_hz,
    }


def _registers(image: dict[int, int], addresses: list[int]) -> SimData:
    return SimData(addresses[0], values=[image[a] for a in addresses], datatype=SimType.REGISTERS)
