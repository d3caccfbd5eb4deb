"""The meter simulator seen from the wire: a plain pymodbus client reads its registers."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence
from contextlib import closing

import pytest
from charger.protocols.modbus_maps import SUNS_MARKER, MeterReading
from charger.sim.meter_server import SUNSPEC_BASE, SUNSPEC_MODEL_ADDRESS, MeterLayout, MeterServer
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from charger.testing import free_port
from tests.support.resources import ManualClock, no_leaks


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sdm(clock: ManualClock) -> Iterator[MeterServer]:
    with MeterServer(MeterLayout.SDM630, clock=clock) as server:
        yield server


@pytest.fixture
def sunspec(clock: ManualClock) -> Iterator[MeterServer]:
    with MeterServer(MeterLayout.SUNSPEC_203, energy_wh=1000.0, clock=clock) as server:
        yield server


def client_for(server: MeterServer) -> ModbusTcpClient:
    return ModbusTcpClient("127.0.0.1", port=server.port, timeout=0.3, retries=0)


def float32(words: Sequence[int]) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", *words))[0]
    return value


def read_sdm_energy_kwh(client: ModbusTcpClient) -> float:
    return float32(client.read_input_registers(0x48, count=2, device_id=1).registers)


def test_port_zero_picks_a_free_port_and_a_given_port_is_used() -> None:
    with MeterServer() as picked:
        assert picked.port > 0
    port = free_port()
    with MeterServer(port=port) as given:
        assert given.port == port


def test_a_busy_port_fails_start_without_leaving_a_thread() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = MeterServer(port=busy.getsockname()[1])
        with pytest.raises(RuntimeError, match="failed to start"):
            server.start()
        server.stop()


def test_stop_is_idempotent_and_rtu_needs_rtu() -> None:
    server = MeterServer()
    server.stop()  # never started
    with server, pytest.raises(RuntimeError, match="rtu=True"):
        _ = server.rtu_port
    server.stop()
    with pytest.raises(RuntimeError, match="twice"):
        server.start()


def test_sdm630_register_layout_on_the_wire(sdm: MeterServer) -> None:
    sdm.set_load(11040.0, (16.0, 16.0, 0.5), 230.0)
    with closing(client_for(sdm)) as client:
        block = client.read_input_registers(0, count=12, device_id=1).registers
        assert block == [0x4366, 0, 0x4366, 0, 0x4366, 0, 0x4180, 0, 0x4180, 0, 0x3F00, 0]
        assert client.read_input_registers(0x34, count=2, device_id=1).registers == [0x462C, 0x8000]
        assert client.read_input_registers(0x46, count=2, device_id=1).registers == [0x4248, 0]
        assert read_sdm_energy_kwh(client) == 0.0
        gap = client.read_input_registers(0x0C, count=2, device_id=1)  # per-phase power: not simulated
        assert gap.isError() and gap.exception_code == 2
        holding = client.read_holding_registers(0x48, count=2, device_id=1)  # the SDM630 uses input registers
        assert holding.isError() and holding.exception_code == 2


def test_sunspec_register_layout_on_the_wire(sunspec: MeterServer) -> None:
    sunspec.set_load(11040.0, (16.0, 16.0, 0.5), 230.0)
    m = SUNSPEC_MODEL_ADDRESS
    with closing(client_for(sunspec)) as client:
        assert tuple(client.read_holding_registers(SUNSPEC_BASE, count=2, device_id=1).registers) == SUNS_MARKER
        assert client.read_holding_registers(SUNSPEC_BASE + 2, count=2, device_id=1).registers == [1, 66]
        model = client.read_holding_registers(m, count=107, device_id=1).registers
        assert model[:2] == [203, 105]
        assert model[3:7] == [1600, 1600, 50, 0xFFFE]  # AphA..C in 0.01 A, A_SF -2
        assert model[8:11] == [2300, 2300, 2300] and model[15] == 0xFFFF  # PhVph in 0.1 V, V_SF -1
        assert model[16:18] == [5000, 0xFFFE]  # Hz, Hz_SF -2
        assert model[18] == 1104 and model[22] == 1  # W in 10 W, W_SF 1
        assert model[46:48] == [0, 1000] and model[54] == 0  # TotWhImp 1000 Wh, TotWh_SF 0
        assert model[2] == 0x8000 and model[38:40] == [0, 0]  # not implemented: A, TotWhExp
        assert client.read_holding_registers(m + 107, count=2, device_id=1).registers == [0xFFFF, 0]


def test_energy_integrates_over_the_clock_on_each_read(sdm: MeterServer, clock: ManualClock) -> None:
    with closing(client_for(sdm)) as client:
        sdm.set_load(11000.0, (16.0, 16.0, 16.0))
        clock.advance(1.0)
        assert sdm.energy_wh == 0.0  # nothing read yet: the counter moves when someone looks
        kwh = read_sdm_energy_kwh(client)
        assert sdm.energy_wh == 11000.0 / 3600
        assert kwh * 1000 == pytest.approx(11000.0 / 3600, rel=1e-6)  # float32 kWh
        assert sdm.served.energy_import_wh == kwh * 1000


def test_a_new_load_first_books_the_old_one(sunspec: MeterServer, clock: ManualClock) -> None:
    sunspec.set_load(11000.0)
    clock.advance(3600.0)
    sunspec.set_load(0.0)
    clock.advance(3600.0)
    with closing(client_for(sunspec)) as client:
        words = client.read_holding_registers(SUNSPEC_MODEL_ADDRESS + 46, count=2, device_id=1).registers
        assert (words[0] << 16) | words[1] == 12000  # 1000 Wh start + 11 kWh, then nothing
        assert sunspec.energy_wh == 12000.0


def test_served_tracks_only_what_was_answered(sdm: MeterServer) -> None:
    assert sdm.served == MeterReading()
    sdm.set_load(3680.0, (16.0, 0.0, 0.0))
    with closing(client_for(sdm)) as client:
        client.read_input_registers(0x34, count=2, device_id=1)
        assert sdm.served == MeterReading(power_w=3680.0)
        sdm.set_offline(True)
        sdm.set_load(7360.0, (32.0, 0.0, 0.0))
        with pytest.raises(ModbusIOException):
            client.read_input_registers(0x34, count=2, device_id=1)
        assert sdm.served.power_w == 3680.0  # the dropped answer was never served


def test_faults_seen_on_the_wire(sdm: MeterServer) -> None:
    with closing(client_for(sdm)) as client:
        sdm.set_exception(4)
        response = client.read_input_registers(0, count=2, device_id=1)
        assert response.isError() and response.exception_code == 4
        sdm.set_exception(None)
        sdm.set_garbage(True)
        assert client.read_input_registers(0, count=2, device_id=1).registers == [0x7FC0, 0]  # NaN
        sdm.set_garbage(False)
        sdm.set_offline(True)
        with pytest.raises(ModbusIOException):
            client.read_input_registers(0, count=2, device_id=1)
        client.close()  # type: ignore[no-untyped-call]  # a fresh connection: no late answer lingers
        sdm.set_offline(False)
        assert client.read_input_registers(0, count=2, device_id=1).registers == [0x4366, 0]
        requests = sdm.request_count
        write = client.write_register(0, 1, device_id=1)
        assert write.isError()  # a meter's measurements are read-only
        assert sdm.request_count == requests  # writes are not read requests


def test_setters_reject_what_the_meter_cannot_show(sunspec: MeterServer) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        sunspec.set_load(11000.0, (400.0, 0.0, 0.0))  # int16 at A_SF -2 ends at 327.67 A
    with pytest.raises(ValueError, match=">= 0"):
        sunspec.set_load(-1.0)
    with pytest.raises(ValueError, match=">= 0"):
        sunspec.set_energy_wh(float("nan"))
    with pytest.raises(ValueError, match="ExcCodes"):
        sunspec.set_exception(0x42)


def test_rtu_on_a_pty_serves_the_same_registers() -> None:
    with MeterServer(MeterLayout.SDM630, rtu=True) as server:
        server.set_load(0.0, (0.0, 0.0, 0.0), 231.5)
        with closing(ModbusSerialClient(server.rtu_port, baudrate=9600, timeout=0.3, retries=0)) as rtu:
            assert rtu.read_input_registers(0, count=2, device_id=1).registers == [0x4367, 0x8000]
        with closing(client_for(server)) as tcp:  # TCP works beside RTU, from the same state
            assert tcp.read_input_registers(0, count=2, device_id=1).registers == [0x4367, 0x8000]
