"""The real driver against the real simulator on loopback (TCP) and on a pty pair (RTU): no mocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from charger.hal.meter import MeterFault, MeterOffline, ModbusMeter, PowerMeter, implausibility
from charger.protocols.modbus_maps import SDM630, MeterReading, RegisterMap, SunSpecProbe, plan_reads
from charger.sim.meter_server import MeterLayout, MeterServer

from charger.testing import free_port
from tests.support.resources import no_leaks

LAYOUTS: dict[MeterLayout, RegisterMap | SunSpecProbe] = {
    MeterLayout.SDM630: SDM630,
    MeterLayout.SUNSPEC_203: SunSpecProbe(),
}
START_WH = 1000.0  # SunSpec reads an accumulator at 0 as "not implemented", so start where a used meter would
ENERGY_STEP_WH = {MeterLayout.SDM630: 0.001, MeterLayout.SUNSPEC_203: 1.0}  # resolution served (float32 kWh, Wh)


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks()


@pytest.fixture(params=list(LAYOUTS), ids=lambda layout: layout.value)
def server(request: pytest.FixtureRequest) -> Iterator[MeterServer]:
    with MeterServer(request.param, energy_wh=START_WH) as sim:
        sim.set_load(11040.0, (16.0, 16.0, 16.0), 230.0)
        yield sim


@pytest.fixture
def meter(server: MeterServer) -> Iterator[ModbusMeter]:
    driver = ModbusMeter.tcp("127.0.0.1", LAYOUTS[server.layout], port=server.port)
    yield driver
    driver.close()


def offline(meter: ModbusMeter) -> MeterOffline:
    with pytest.raises(MeterOffline) as caught:
        meter.read()
    return caught.value


def test_modbus_meter_is_a_power_meter(meter: ModbusMeter) -> None:
    assert isinstance(meter.read(), MeterReading)
    _: PowerMeter = meter  # the structural check is mypy's; this line is what it checks


def test_reads_exactly_what_the_meter_serves(server: MeterServer, meter: ModbusMeter) -> None:
    reading = meter.read()
    assert reading == server.served
    assert reading.power_w == 11040.0
    assert reading.currents_a == (16.0, 16.0, 16.0)
    assert reading.voltages_v == (230.0, 230.0, 230.0)
    assert reading.frequency_hz == 50.0
    assert reading.energy_import_wh is not None and reading.energy_import_wh >= START_WH


def test_each_read_is_one_request_per_contiguous_block(server: MeterServer, meter: ModbusMeter) -> None:
    meter.read()  # SunSpec discovers its model on the first read
    assert meter.register_map is not None
    before = server.request_count
    meter.read()
    assert server.request_count - before == len(plan_reads(meter.register_map))
    assert server.request_count - before == {MeterLayout.SDM630: 3, MeterLayout.SUNSPEC_203: 1}[server.layout]


def test_energy_integrates_the_power_drawn(server: MeterServer, meter: ModbusMeter) -> None:
    server.set_load(11000.0, (16.0, 16.0, 16.0), 230.0)
    t0 = time.monotonic()
    first = meter.read()
    t1 = time.monotonic()
    served_first = server.served.energy_import_wh
    time.sleep(1.0)  # ~3.06 Wh at 11 kW
    t2 = time.monotonic()
    second = meter.read()
    t3 = time.monotonic()
    served_second = server.served.energy_import_wh
    assert first.energy_import_wh is not None and second.energy_import_wh is not None
    assert served_first is not None and served_second is not None
    # Exactly what the meter served: the driver neither loses nor invents energy.
    assert second.energy_import_wh - first.energy_import_wh == served_second - served_first
    # And the meter integrated 11 kW over the time between the two reads (bounds, not a timing).
    step = ENERGY_STEP_WH[server.layout]
    assert 11000.0 * (t2 - t1) / 3600 - step <= second.energy_import_wh - first.energy_import_wh
    assert second.energy_import_wh - first.energy_import_wh <= 11000.0 * (t3 - t0) / 3600 + step


def test_exception_response_then_recovery(server: MeterServer, meter: ModbusMeter) -> None:
    meter.read()
    server.set_exception(4)  # server device failure
    error = offline(meter)
    assert (error.reason, error.exception_code) == (MeterFault.EXCEPTION_RESPONSE, 4)
    server.set_exception(None)
    assert meter.read() == server.served


def test_exception_before_discovery_is_reported_as_such(server: MeterServer, meter: ModbusMeter) -> None:
    server.set_exception(6)  # busy
    assert offline(meter).reason is MeterFault.EXCEPTION_RESPONSE
    server.set_exception(None)
    assert meter.read().power_w == 11040.0


def test_no_answer_is_offline_within_a_bounded_time_then_recovers(server: MeterServer, meter: ModbusMeter) -> None:
    meter.read()
    server.set_offline(True)
    started = time.monotonic()
    assert offline(meter).reason is MeterFault.TIMEOUT
    # timeout 0.3 s x (1 + 1 retry), plus slack for a loaded machine: the point is that it is bounded.
    assert time.monotonic() - started < 5.0
    server.set_offline(False)
    assert meter.read() == server.served


def test_implausible_values_are_offline(server: MeterServer, meter: ModbusMeter) -> None:
    meter.read()
    server.set_garbage(True)
    error = offline(meter)
    assert error.reason is MeterFault.IMPLAUSIBLE
    assert ("nan" if server.layout is MeterLayout.SDM630 else "3276.7 V") in error.detail
    server.set_garbage(False)
    assert meter.read().voltages_v == (230.0, 230.0, 230.0)


def test_energy_going_backwards_is_offline_until_it_catches_up(server: MeterServer, meter: ModbusMeter) -> None:
    meter.read()
    server.set_energy_wh(500.0)
    error = offline(meter)
    assert error.reason is MeterFault.IMPLAUSIBLE and "backwards" in error.detail
    server.set_energy_wh(2000.0)
    assert meter.read().energy_import_wh == pytest.approx(2000.0, abs=ENERGY_STEP_WH[server.layout] + 1)


def test_connection_loss_then_recovery_with_rediscovery(server: MeterServer, meter: ModbusMeter) -> None:
    last = meter.read().energy_import_wh
    assert last is not None
    server.stop()
    assert offline(meter).reason is MeterFault.CONNECTION
    if server.layout is MeterLayout.SUNSPEC_203:
        assert meter.register_map is None  # rediscovered after the reconnect
    with MeterServer(server.layout, port=server.port, energy_wh=last + 10.0) as restarted:
        assert meter.read() == restarted.served
        assert meter.register_map is not None


def test_nothing_listening_is_a_connection_fault() -> None:
    meter = ModbusMeter.tcp("127.0.0.1", SDM630, port=free_port())
    try:
        error = offline(meter)
        assert error.reason is MeterFault.CONNECTION
    finally:
        meter.close()


@pytest.mark.parametrize("server", [MeterLayout.SDM630], indirect=True)
def test_sunspec_probe_on_a_non_sunspec_meter(server: MeterServer) -> None:
    meter = ModbusMeter.tcp("127.0.0.1", SunSpecProbe(), port=server.port)
    try:
        assert offline(meter).reason is MeterFault.NOT_SUNSPEC
    finally:
        meter.close()


def test_close_then_read_reconnects(server: MeterServer, meter: ModbusMeter) -> None:
    meter.read()
    meter.close()
    assert meter.read() == server.served


def test_reads_from_several_threads_are_serialised(server: MeterServer, meter: ModbusMeter) -> None:
    results: list[MeterReading | BaseException] = []

    def hammer() -> None:
        for _ in range(5):
            try:
                results.append(meter.read())
            except MeterOffline as exc:
                results.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 20
    assert all(isinstance(r, MeterReading) and r.power_w == 11040.0 for r in results)


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=lambda layout: layout.value)
def test_rtu_over_a_pty_pair(layout: MeterLayout) -> None:
    with MeterServer(layout, rtu=True, energy_wh=START_WH) as server:
        server.set_load(7360.0, (32.0, 0.0, 0.0), 230.0)
        meter = ModbusMeter.rtu(server.rtu_port, LAYOUTS[layout])
        try:
            reading = meter.read()
            assert reading == server.served
            assert (reading.power_w, reading.currents_a) == (7360.0, (32.0, 0.0, 0.0))
            server.set_offline(True)
            assert offline(meter).reason is MeterFault.TIMEOUT
            server.set_offline(False)
            server.set_exception(4)
            assert offline(meter).reason is MeterFault.EXCEPTION_RESPONSE
            server.set_exception(None)
            assert meter.read() == server.served
        finally:
            meter.close()


# --- the plausibility policy on its own ---------------------------------------------------------------

GOOD = MeterReading(
    energy_import_wh=100.0, power_w=0.0, currents_a=(0.0, 0.0, 0.0), voltages_v=(230.0, 230.0, 230.0), frequency_hz=50.0
)


@pytest.mark.parametrize(
    ("reading", "last", "problem"),
    [
        (GOOD, None, None),
        (GOOD, 100.0, None),
        (MeterReading(), 100.0, None),  # nothing provided is not implausible
        (GOOD, 100.5, "backwards"),
        (MeterReading(energy_import_wh=-1.0), None, "negative"),
        (MeterReading(power_w=float("nan")), None, "power_w is nan"),
        (MeterReading(currents_a=(None, float("inf"), None)), None, "current_l2_a is inf"),
        (MeterReading(voltages_v=(230.0, 2300.0, 230.0)), None, "voltage_l2_v 2300.0 V"),
        (MeterReading(voltages_v=(-1.0, None, None)), None, "voltage_l1_v -1.0 V"),
    ],
)
def test_implausibility(reading: MeterReading, last: float | None, problem: str | None) -> None:
    found = implausibility(reading, last)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_fixed_map_is_known_before_the_first_read() -> None:
    meter = ModbusMeter.tcp("127.0.0.1", SDM630, port=free_port())
    try:
        register_map: RegisterMap | None = meter.register_map
        assert register_map is SDM630
    finally:
        meter.close()
