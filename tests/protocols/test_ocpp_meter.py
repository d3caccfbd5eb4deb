"""OCPP 1.6 sampled values for configured measurands and phases, and clock-aligned instants."""

from __future__ import annotations

from datetime import UTC, datetime

from charger.protocols.ocpp_config_keys import Measurand
from charger.protocols.ocpp_meter import (
    MeterSnapshot,
    meter_value,
    next_aligned,
    ocpp_time,
    sampled_values,
    supported_measurands,
)
from hypothesis import given
from hypothesis import strategies as st

SNAPSHOT = MeterSnapshot(
    energy_wh=12345.6789,
    power_w=11040.0,
    currents_a=(16.0, 15.9, None),
    voltages_v=(230.1, 229.9, 231.0),
    current_offered_a=16.0,
)


def test_every_phase_is_reported_unless_one_is_named() -> None:
    values = sampled_values(["Energy.Active.Import.Register", "Current.Import"], SNAPSHOT, "Sample.Periodic")
    assert [(v["measurand"], v.get("phase"), v["value"], v["unit"]) for v in values] == [
        ("Energy.Active.Import.Register", None, "12345.679", "Wh"),
        ("Current.Import", "L1", "16", "A"),
        ("Current.Import", "L2", "15.9", "A"),  # L3 is unknown: left out, not invented
    ]
    assert all(v["context"] == "Sample.Periodic" and v["location"] == "Outlet" for v in values)
    (l2,) = sampled_values(["Current.Import.L2"], SNAPSHOT, "Trigger")
    assert (l2["phase"], l2["value"], l2["context"]) == ("L2", "15.9", "Trigger")
    voltages = sampled_values(["Voltage"], SNAPSHOT, "Sample.Clock")
    assert [v["phase"] for v in voltages] == ["L1-N", "L2-N", "L3-N"]


def test_what_is_not_known_is_left_out() -> None:
    assert sampled_values(["Energy.Active.Import.Register", "Power.Active.Import"], MeterSnapshot(), "Trigger") == []
    assert sampled_values(["SoC", "Nonsense", "Current.Import.L9"], SNAPSHOT, "Trigger") == []
    offered = sampled_values(["Current.Offered", "Power.Active.Import"], SNAPSHOT, "Trigger")
    assert [(v["measurand"], v["value"]) for v in offered] == [
        ("Current.Offered", "16"),
        ("Power.Active.Import", "11040"),
    ]


def test_supported_measurands_depend_on_a_meter_being_wired() -> None:
    assert Measurand.CURRENT_IMPORT not in supported_measurands(with_meter=False)
    assert {Measurand.CURRENT_IMPORT, Measurand.VOLTAGE} <= supported_measurands(with_meter=True)


def test_times_are_utc_with_milliseconds() -> None:
    at = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC).timestamp()
    assert ocpp_time(at) == "2024-05-01T12:00:00.250Z"
    assert meter_value(at, []) == {"timestamp": "2024-05-01T12:00:00.250Z", "sampledValue": []}


def test_aligned_readings_fall_on_the_quarter_hours() -> None:
    at = datetime(2024, 5, 1, 12, 7, 30, tzinfo=UTC).timestamp()
    assert ocpp_time(next_aligned(at, 900)) == "2024-05-01T12:15:00.000Z"
    on_the_dot = datetime(2024, 5, 1, 12, 15, tzinfo=UTC).timestamp()
    assert ocpp_time(next_aligned(on_the_dot, 900)) == "2024-05-01T12:30:00.000Z"
    late = datetime(2024, 5, 1, 23, 59, 0, tzinfo=UTC).timestamp()
    assert ocpp_time(next_aligned(late, 7 * 3600)) == "2024-05-02T00:00:00.000Z"  # midnight always aligns


@given(st.floats(1.6e9, 2.0e9), st.integers(1, 86400))
def test_the_next_aligned_instant_is_after_now_and_within_one_interval(now: float, interval: int) -> None:
    aligned = next_aligned(now, interval)
    midnight = datetime.fromtimestamp(aligned, UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    assert now < aligned <= now + interval
    assert round(aligned - midnight) % interval == 0 or aligned == midnight
