"""SilRig on its own, in a real actor system: user input it must refuse without crashing, faults,
the meter register that never runs backwards across restarts, and the card shown at every plug-in."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from charger.actors.charging import (
    CARD_READER_SIM,
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
from charger.hal.meter import MeterOffline, ModbusMeter
from charger.protocols.modbus_maps import SDM630

from charger.behaviour import Behaviour, handles
from charger.errors import Rejected
from charger.messages import message
from charger.testing import RunningSystem
from tests.conftest import group, worker
from tests.support.recorder import GetRecorded


@message
class RigTestGetCards:
    """Ask the card reader probe which cards it was shown."""


@message
class RigTestCards:
    uids: list[str]


class CardReaderProbe(Behaviour):
    """Stands in for a simulated card reader and remembers every card the rig presents."""

    provides = {"reader": CARD_READER_SIM}
    config_schema: ClassVar = {"type": "object", "additionalProperties": False, "properties": {}}

    def init(self) -> None:
        self.uids: list[str] = []

    @handles(PresentCard)
    def on_card(self, msg: PresentCard) -> None:
        self.uids.append(msg.uid)

    @handles(RigTestGetCards)
    def on_get(self, msg: RigTestGetCards) -> RigTestCards:
        return RigTestCards(uids=list(self.uids))


def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)


def rig_state(system: RunningSystem) -> RigState:
    state = system.client.call("rig", GetRigState())
    assert isinstance(state, RigState)
    return state


def rig_alone(**config: Any) -> Any:
    return group("root", worker("rig", actor="SilRig", config=config), intensity=20)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (PlugCar(script="fly 3"), "unknown command 'fly'"),
        (PlugCar(script="draw_power_regulated 16,4"), "not 1, 2 or 3"),
        (CarCommand(script="sleep soon"), "is not a number"),
        (CarCommand(script="plugin"), "needs plugin_commands"),
        (CarCommand(script="iso_wait_slac_matched"), "ISO 15118"),
        (InjectSimFault(fault="smoke"), "unknown fault 'smoke'"),
    ],
)
def test_bad_requests_are_rejected_and_the_rig_keeps_running(start_tree, request_, reason):
    with start_tree(rig_alone()) as system:
        with pytest.raises(Rejected, match=reason):
            system.client.call("rig", request_)
        state = rig_state(system)
        assert state.car_pilot == "A" and state.script_pending == [] and state.faults == []
        assert "rig" not in system.status().restarts


def test_commands_faults_and_the_meter_going_offline(start_tree, tmp_path):
    port_file = tmp_path / "meter.port"
    with start_tree(rig_alone(port_file=str(port_file), meter_layout="sunspec")) as system:
        system.client.call("rig", PlugCar(script="sleep 30;draw_power_regulated 16,1"))
        state = eventually(lambda: (s := rig_state(system)).car_pilot == "B" and s, what="car plugged in")
        assert state.script_pending[-1] == "draw_power_regulated 16,1"
        system.client.call("rig", CarCommand(script="set_soc 80"))
        eventually(lambda: rig_state(system).soc_percent == pytest.approx(80), what="soc set")

        for fault in ("rcd", "lock_failure", "meter_offline"):
            system.client.call("rig", InjectSimFault(fault=fault))
        assert rig_state(system).faults == ["lock_failure", "meter_offline", "rcd"]
        meter = ModbusMeter.tcp("127.0.0.1", _sunspec_probe(), port=int(port_file.read_text()))
        try:
            with pytest.raises(MeterOffline):
                meter.read()
            system.client.call("rig", InjectSimFault(fault="meter_offline", active=False))
            assert meter.read().voltages_v == (230, 230, 230)
        finally:
            meter.close()

        system.client.call("rig", UnplugCar())
        eventually(lambda: rig_state(system).car_pilot == "A", what="car unplugged")
        assert rig_state(system).faults == ["lock_failure"]  # the car's faults leave with the car


def _sunspec_probe() -> Any:
    from charger.protocols.modbus_maps import SunSpecProbe

    return SunSpecProbe()


def test_meter_energy_never_runs_backwards_across_restarts(start_tree, tmp_path):
    journal = tmp_path / "rig.meter.json"
    journal.write_text(json.dumps({"energy_wh": 1234.5}))
    port_file = tmp_path / "meter.port"
    with start_tree(rig_alone(port_file=str(port_file))) as system:
        assert rig_state(system).meter_energy_wh == 1234.5
        meter = ModbusMeter.tcp("127.0.0.1", SDM630, port=int(port_file.read_text()))
        try:
            assert meter.read().energy_import_wh == pytest.approx(1234.5, abs=0.1)  # float32 kWh register
        finally:
            meter.close()
        killed = system.pid_of("rig")
        os.kill(killed, signal.SIGKILL)
        eventually(lambda: system.status().actors.get("rig") not in (None, killed), what="rig restarted")
        assert rig_state(system).meter_energy_wh >= 1234.5
    assert json.loads(journal.read_text())["energy_wh"] >= 1234.5  # written again on the clean stop


def test_the_token_is_shown_at_every_plug_in_of_a_repeated_script(start_tree, tmp_path):
    tree = group(
        "root",
        worker("reader", actor="tests.actors.test_sil_rig:CardReaderProbe"),
        worker(
            "rig",
            actor="SilRig",
            config={
                "script": "wait_for_real_plugin;sleep 0.5;unplug",
                "repeat": True,
                "repeat_pause_s": 0.25,
                "token": "CARD-1",
            },
            requires={"card_reader": ("reader",)},
        ),
        worker("rec", actor="tests.support.recorder:Recorder", config={"subscribe": {"rig": ["RigState"]}}),
    )
    with start_tree(tree) as system:
        cards = eventually(
            lambda: len(uids := system.client.call("reader", RigTestGetCards()).uids) >= 2 and uids,
            what="the script's plug-in, then the repeat's",
        )
        assert set(cards) == {"CARD-1"}
        pilots = [fields["car_pilot"] for *_, fields, _at in system.client.call("rec", GetRecorded()).items]
        assert "A" in pilots and "B" in pilots


def test_one_rig_simulates_several_connectors_each_with_its_own_world(start_tree, tmp_path):
    connectors = [
        {"port_file": "m1.port", "token": "CARD-1"},
        {"port_file": "m2.port", "token": "CARD-2", "meter_layout": "sunspec", "soc_percent": 80},
    ]
    tree = group(
        "root",
        worker("reader", actor="tests.actors.test_sil_rig:CardReaderProbe"),
        worker("rig", actor="SilRig", config={"connectors": connectors}, requires={"card_reader": ("reader",)}),
    )
    with start_tree(tree) as system:
        assert system.client.call("rig", DescribeRig()) == RigLayout(connectors=2)
        assert (tmp_path / "rig-1.board").is_symlink() and (tmp_path / "rig-2.board").is_symlink()
        system.client.call("rig", PlugCar(script="sleep 30", connector=2))
        eventually(lambda: system.client.call("rig", GetRigState(connector=2)).car_pilot == "B", what="car 2 in")
        one, two = (system.client.call("rig", GetRigState(connector=n)) for n in (1, 2))
        assert (one.connector, one.car_pilot, one.soc_percent) == (1, "A", 30)
        assert (two.connector, two.soc_percent) == (2, 80)
        assert system.client.call("reader", RigTestGetCards()).uids == ["CARD-2"]

        system.client.call("rig", InjectSimFault(fault="meter_offline", connector=1))
        one_meter = ModbusMeter.tcp("127.0.0.1", SDM630, port=int((tmp_path / "m1.port").read_text()))
        two_meter = ModbusMeter.tcp("127.0.0.1", _sunspec_probe(), port=int((tmp_path / "m2.port").read_text()))
        try:
            with pytest.raises(MeterOffline):
                one_meter.read()
            assert two_meter.read().voltages_v == (230, 230, 230)
        finally:
            one_meter.close()
            two_meter.close()

        with pytest.raises(Rejected, match=r"simulates connectors 1\.\.2, not 3"):
            system.client.call("rig", UnplugCar(connector=3))
        assert "rig" not in system.status().restarts
