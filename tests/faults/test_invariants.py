"""The invariant checks themselves, on made-up records: each one catches what it is there to catch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from charger.chaos.__main__ import select_cases
from charger.chaos.cases import CaseResult
from charger.chaos.invariants import SafetyWindow, billing, safety_violations
from charger.chaos.report import table

CP = "CP1"


def frame(direction: str, body: list[Any], at: float = 100.0, cp: str = CP) -> dict[str, Any]:
    return {"at": at, "cp": cp, "dir": direction, "frame": json.dumps(body)}


def start(msg_id: str, tx: int, meter: int = 1000, connector: int = 1) -> list[dict[str, Any]]:
    payload = {"connectorId": connector, "idTag": "T", "meterStart": meter, "timestamp": "x"}
    return [frame("rx", [2, msg_id, "StartTransaction", payload]), frame("tx", [3, msg_id, {"transactionId": tx}])]


def stop(msg_id: str, tx: int, meter: int, reason: str = "EVDisconnected") -> list[dict[str, Any]]:
    payload = {"transactionId": tx, "meterStop": meter, "reason": reason, "timestamp": "x"}
    return [frame("rx", [2, msg_id, "StopTransaction", payload]), frame("tx", [3, msg_id, {}])]


def test_one_start_one_stop_reports_the_energy() -> None:
    seen = billing([*start("a", 7), *stop("b", 7, 1042)], CP, 1, since_wall=0)
    assert (seen.missing, seen.duplicate, seen.out_of_order, seen.reported_wh) == (0, 0, [], 42)


def test_a_retransmitted_call_is_one_message_but_a_second_id_is_a_duplicate() -> None:
    again = start("a", 7)[0]
    seen = billing([*start("a", 7), again, *stop("b", 7, 1042)], CP, 1, since_wall=0)
    assert seen.duplicate == 0
    seen = billing([*start("a", 7), *start("c", 8), *stop("b", 7, 1042)], CP, 1, since_wall=0)
    assert seen.duplicate == 1 and seen.reported_wh is None


def test_missing_stop_and_frames_of_other_cases_connectors_and_stations_are_not_counted() -> None:
    old = [dict(f, at=1.0) for f in start("o", 5)]
    other = start("x", 6, connector=2) + [dict(f, cp="CP2") for f in start("y", 9)]
    seen = billing([*old, *other, *start("a", 7)], CP, 1, since_wall=50.0)
    assert [s["_tx"] for s in seen.starts] == [7] and seen.missing == 1


def test_stop_before_start_and_meter_values_after_stop_are_out_of_order() -> None:
    late_start = start("a", 7)
    frames = [*stop("b", 7, 1042), *late_start]
    assert billing(frames, CP, 1, since_wall=0).out_of_order  # answered id 7 only after the stop arrived
    values = frame("rx", [2, "m", "MeterValues", {"connectorId": 1, "transactionId": 7, "meterValue": []}])
    seen = billing([*start("a", 7), *stop("b", 7, 1042), values], CP, 1, since_wall=0)
    assert seen.out_of_order == ["MeterValues m after the StopTransaction"]


def row(t: float, relays: bool, pilot: str = "C", pwm: int | None = 533, **faults: bool) -> dict[str, Any]:
    return {"t": t, "relays": relays, "pilot": pilot, "pwm": pwm, "watchdog": False, "rcd": False, **faults}


def test_relays_closed_within_the_rules_pass() -> None:
    record = [row(10.0, False, "B"), row(11.0, False), row(11.1, True), row(15.0, False, "B")]
    assert safety_violations(record, SafetyWindow(start=9.0, authorized_at=10.5)) == []


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (row(11.1, True, "B"), "pilot in B"),
        (row(11.1, True, pwm=None), "without PWM"),
        (row(11.1, True, pwm=1000), "without PWM"),
        (row(11.1, True, watchdog=True), "latched board fault"),
        (row(10.2, True), "before the session was authorized"),
    ],
)
def test_relays_closed_outside_the_allowed_states_are_violations(bad: dict[str, Any], why: str) -> None:
    (violation,) = safety_violations([row(10.0, False), bad], SafetyWindow(start=9.0, authorized_at=10.5))
    assert why in violation


def test_relays_may_stay_closed_for_6_s_after_pwm_stops_under_load_not_longer() -> None:
    window = SafetyWindow(start=9.0, authorized_at=10.0)
    stopping = [row(11.0, True), row(12.0, True, pwm=None), row(17.9, True, pwm=None), row(18.0, False, "B")]
    assert safety_violations(stopping, window) == []
    stuck = [row(11.0, True), row(12.0, True, pwm=None), row(18.5, True, pwm=None, pilot="D")]
    assert safety_violations(stuck, window) == ["t+9.50 s: relays closed 6.50 s after PWM stopped"]


def test_relays_that_stay_closed_after_a_stop_beyond_the_budget_are_a_violation() -> None:
    window = SafetyWindow(start=9.0, authorized_at=10.0, stop_requested_at=[12.0], end=30.0)
    in_time = [row(11.0, True), row(17.5, False)]
    assert safety_violations(in_time, window) == []
    late = [row(11.0, True), row(18.5, False)]
    assert "6.50 s after PWM stop" in safety_violations(late, window)[0]
    never = [row(11.0, True)]
    assert "18.00 s after PWM stop" in safety_violations(never, window)[0]


def test_cases_are_chosen_by_target_phase_or_explicitly() -> None:
    assert select_cases("auth,meter", None, None, every=False) == [("auth", "charging"), ("meter", "charging")]
    assert len(select_cases("auth", None, None, every=True)) == 5
    assert select_cases(None, None, "whole-box@paused,meter", every=False) == [
        ("whole-box", "paused"),
        ("meter", "charging"),
    ]
    with pytest.raises(ValueError, match="unknown target nope"):
        select_cases("nope", None, None, every=False)
    with pytest.raises(ValueError, match="unknown phase idle"):
        select_cases(None, None, "auth@idle", every=False)


def test_the_table_marks_failures_and_says_why() -> None:
    good = CaseResult("auth", "charging", recovered=True, recovery_s=0.08, outcome="continued", energy_error_wh=0)
    bad = CaseResult("meter", "paused", recovered=True, recovery_s=0.1, energy_error_wh=3, billing=["told 45 Wh"])
    lines = table([good, bad])
    assert lines[0].split()[:2] == ["case", "recovered"]
    assert lines[2].startswith("auth@charging") and lines[2].endswith("ok") and "80 ms" in lines[2]
    assert lines[3].endswith("FAIL") and "3 Wh" in lines[3]
    assert lines[4] == "meter@paused: billing: told 45 Wh"
