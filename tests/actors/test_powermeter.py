"""PowerMeter in a real actor system against a real Modbus TCP meter server (SDM630 and SunSpec 203):
readings published every poll, energy exactly what the meter serves, offline readings with the last
good values on every kind of failure, recovery, and ReadMeterNow."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from charger.actors.charging import PowerMeterReading, ReadMeterNow
from charger.actors.powermeter import PowerMeter
from charger.sim.meter_server import MeterLayout, MeterServer

from charger.config import InvalidConfig, checked_config
from charger.testing import RunningSystem, running_system
from tests.conftest import free_port, group, worker
from tests.support.recorder import GetRecorded

LAYOUTS = {MeterLayout.SDM630: "sdm630", MeterLayout.SUNSPEC_203: "sunspec"}
START_WH = 1000.0  # SunSpec reads an accumulator at 0 as "not implemented"
Fields = dict[str, Any]


class Meter:
    """The meter server, the system polling it, and a cursor over the readings it published."""

    def __init__(self, server: MeterServer, system: RunningSystem) -> None:
        self.server, self.system = server, system
        self.seen = 0

    def wait(self, want: Callable[[Fields], bool], timeout: float = 15.0) -> Fields:
        """The first reading published after the previous `wait` that `want` accepts."""
        deadline = time.monotonic() + timeout
        last: Fields | None = None
        while True:
            recorded = self.system.client.call("rec", GetRecorded(tag="PowerMeterReading", since=self.seen))
            for index, _tag, fields, _at in recorded.items:
                reading: Fields = fields
                self.seen, last = index + 1, reading
                if want(reading):
                    return reading
            if time.monotonic() > deadline:
                raise AssertionError(f"no such reading within {timeout} s; last: {last}")
            time.sleep(0.05)

    def read_now(self) -> PowerMeterReading:
        reading = self.system.client.call("meter", ReadMeterNow(), timeout=10.0)
        assert isinstance(reading, PowerMeterReading)
        return reading


def meter_tree(config: dict[str, Any]) -> Any:
    return group(
        "root",
        worker("meter", actor="PowerMeter", config={"poll_s": 0.1, "timeout_s": 0.2, **config}),
        worker(
            "rec",
            actor="tests.support.recorder:Recorder",
            config={"subscribe": {"meter": ["PowerMeterReading"]}},
        ),
    )


@pytest.fixture(scope="module", params=list(LAYOUTS), ids=lambda layout: layout.value)
def meter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meter]:
    state = tmp_path_factory.mktemp("meter")
    with MeterServer(request.param, energy_wh=START_WH) as server:
        server.set_load(11040.0, (16.0, 16.0, 16.0), 230.0)
        tree = meter_tree({"transport": "tcp", "port": server.port, "layout": LAYOUTS[request.param]})
        with running_system(tree, free_port(), str(state), log_file=str(state / "system.log")) as system:
            yield Meter(server, system)


@pytest.fixture
def healthy(meter: Meter) -> Meter:
    """Each test starts with a meter that answers and a good reading published."""
    meter.server.set_offline(False)
    meter.server.set_exception(None)
    meter.server.set_load(11040.0, (16.0, 16.0, 16.0), 230.0)
    meter.wait(lambda r: r["online"] and r["power_w"] == 11040.0)
    return meter


def test_readings_are_published_every_poll(healthy: Meter) -> None:
    first = healthy.wait(lambda r: r["online"])
    second = healthy.wait(lambda r: r["online"])
    for reading in (first, second):
        assert reading["power_w"] == 11040.0 and reading["fault"] is None
        assert reading["currents_a"] == [16.0, 16.0, 16.0] and reading["voltages_v"] == [230.0, 230.0, 230.0]
    assert START_WH <= first["energy_wh"] <= second["energy_wh"]
    assert first["at"] <= second["at"]


def test_energy_is_exactly_the_served_register(healthy: Meter) -> None:
    s = healthy.server
    before = healthy.wait(lambda r: r["online"])["energy_wh"]
    healthy.wait(lambda r: r["online"] and r["energy_wh"] > before + 1.0)  # the load has been drawn a while
    s.set_load(0.0)  # the register stops moving, so every answer from now on serves the same value
    now = healthy.read_now()
    assert now.online and now.energy_wh == s.served.energy_import_wh
    assert now.energy_wh is not None and now.energy_wh > before + 1.0
    published = healthy.wait(lambda r: r["online"] and r["power_w"] == 0.0 and r["at"] > now.at)
    assert published["energy_wh"] == s.served.energy_import_wh == now.energy_wh


def test_a_silent_meter_is_published_offline_with_the_last_good_values(healthy: Meter) -> None:
    good = healthy.wait(lambda r: r["online"])
    healthy.server.set_offline(True)
    lost = healthy.wait(lambda r: not r["online"])
    assert "timeout" in lost["fault"]
    assert lost["energy_wh"] >= good["energy_wh"] and lost["power_w"] == 11040.0  # last good values, not None
    assert healthy.wait(lambda r: not r["online"])["energy_wh"] == lost["energy_wh"]  # still the last good one
    healthy.server.set_offline(False)
    back = healthy.wait(lambda r: r["online"])
    assert back["fault"] is None and back["energy_wh"] >= lost["energy_wh"]
    assert "meter" not in healthy.system.status().restarts


def test_an_exception_response_is_offline_until_it_stops(healthy: Meter) -> None:
    healthy.server.set_exception(4)  # device failure
    lost = healthy.wait(lambda r: not r["online"])
    assert "exception_response" in lost["fault"] and "code 4" in lost["fault"]
    answer = healthy.read_now()
    assert not answer.online and answer.fault is not None and "code 4" in answer.fault
    assert answer.energy_wh == lost["energy_wh"]
    healthy.server.set_exception(None)
    healthy.wait(lambda r: r["online"])
    assert healthy.read_now().online
    assert "meter" not in healthy.system.status().restarts


def test_energy_running_backwards_is_a_fault(healthy: Meter) -> None:
    s = healthy.server
    good = healthy.wait(lambda r: r["online"])
    s.set_load(0.0)
    s.set_energy_wh(START_WH / 2)  # a swapped meter: billing must not trust it
    lost = healthy.wait(lambda r: not r["online"])
    assert "backwards" in lost["fault"] and lost["energy_wh"] >= good["energy_wh"]
    s.set_energy_wh(lost["energy_wh"] + 10.0)  # the counter caught up again
    back = healthy.wait(lambda r: r["online"])
    assert back["energy_wh"] == s.served.energy_import_wh and back["energy_wh"] > lost["energy_wh"]


def test_read_meter_now_answers_a_fresh_reading(healthy: Meter) -> None:
    healthy.server.set_load(7360.0, (32.0, 0.0, 0.0), 230.0)
    reading = healthy.read_now()  # no wait for a poll: this read happens now
    assert reading.online and reading.power_w == 7360.0 and reading.currents_a == (32.0, 0.0, 0.0)


def test_the_port_is_taken_from_a_port_file_once_it_exists(start_tree: Any, tmp_path: Path) -> None:
    with MeterServer(MeterLayout.SDM630, energy_wh=START_WH) as server:
        server.set_load(3680.0, (16.0, 0.0, 0.0), 230.0)
        tree = meter_tree({"transport": "tcp", "port_file": "rig.meter-port"})
        with start_tree(tree) as system:
            meter = Meter(server, system)
            waiting = meter.wait(lambda r: not r["online"])
            assert "rig.meter-port" in waiting["fault"] and waiting["energy_wh"] is None
            (tmp_path / "rig.meter-port").write_text(f"{server.port}\n")
            assert meter.wait(lambda r: r["online"])["power_w"] == 3680.0


def test_a_meter_on_modbus_rtu(start_tree: Any) -> None:
    with MeterServer(MeterLayout.SDM630, energy_wh=START_WH, rtu=True) as server:
        server.set_load(3680.0, (16.0, 0.0, 0.0), 230.0)
        tree = meter_tree({"transport": "rtu", "serial_port": server.rtu_port, "timeout_s": 0.5})
        with start_tree(tree) as system:
            meter = Meter(server, system)
            reading = meter.wait(lambda r: r["online"])
            assert reading["power_w"] == 3680.0 and reading["energy_wh"] >= START_WH
            server.set_exception(4)
            assert "code 4" in meter.wait(lambda r: not r["online"])["fault"]
            server.set_exception(None)
            meter.wait(lambda r: r["online"])


def test_rtu_needs_a_serial_port() -> None:
    with pytest.raises(InvalidConfig, match="serial_port"):
        checked_config(PowerMeter, {"transport": "rtu"})
    assert checked_config(PowerMeter, {})["layout"] == "sdm630"
