"""What each `charger.ctl` subcommand sends: the JSON-RPC method and params behind the shortcut."""

from __future__ import annotations

import time

import pytest

from charger.ctl import _connector_line, _parser, _shortcut, next_clock_time


@pytest.mark.parametrize(
    ("argv", "method", "params"),
    [
        (["stop", "1"], "connector.stop", {"reason": "Local", "connector": "1"}),
        (["disable", "2"], "connector.availability", {"available": False, "reason": "Other", "connector": "2"}),
        (
            ["disable", "evse-1", "--reason", "HardReset"],
            "connector.availability",
            {"available": False, "reason": "HardReset", "connector": "evse-1"},
        ),
        (["enable", "2"], "connector.availability", {"available": True, "connector": "2"}),
        (["pause", "1"], "connector.pause", {"connector": "1"}),
        (["unlock", "2"], "connector.unlock", {"connector": "2"}),
        (["fault", "1", "rcd", "--clear"], "connector.fault", {"fault": "rcd", "active": False, "connector": "1"}),
        (["lease", "1", "--amps", "10"], "connector.lease", {"amps": 10.0, "valid_for_s": 60.0, "connector": "1"}),
        (["need", "1", "--kwh", "12.5"], "energy.session", {"energy_kwh": 12.5, "departure": None, "connector": "1"}),
        (["need", "evse-2", "--clear"], "energy.session", {"connector": "evse-2"}),
        (["cap", "grid", "--kw", "40"], "energy.cap", {"node": "grid", "amps": None, "kw": 40.0, "valid_until": None}),
    ],
)
def test_a_subcommand_is_the_documented_call(argv: list[str], method: str, params: dict[str, object]) -> None:
    assert _shortcut(_parser().parse_args(argv)) == (method, params)


def test_enable_takes_no_reason() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["enable", "1", "--reason", "Other"])


def test_need_departs_at_the_next_time_the_clock_shows() -> None:
    method, params = _shortcut(_parser().parse_args(["need", "1", "--depart", "07:30"]))
    departure = params["departure"]
    assert method == "energy.session" and time.time() < departure <= time.time() + 86400
    assert time.strftime("%H:%M", time.localtime(departure)) == "07:30"
    now = time.mktime((2026, 3, 10, 8, 0, 0, 0, 0, -1))
    assert next_clock_time("09:15", now) == now + 75 * 60
    assert next_clock_time("07:00", now) == time.mktime((2026, 3, 11, 7, 0, 0, 0, 0, -1))  # tomorrow
    with pytest.raises(SystemExit):
        _parser().parse_args(["need", "1", "--depart", "25:00"])


def test_a_cap_for_a_while_ends_then() -> None:
    _, params = _shortcut(_parser().parse_args(["cap", "feeder", "--amps", "16", "--valid-for", "600"]))
    assert params["amps"] == 16.0 and time.time() + 590 < params["valid_until"] <= time.time() + 600


def test_a_connector_line_shows_its_leases_lowest_first_and_its_reservations() -> None:
    status = {
        "connector": "evse-1",
        "pilot": "B",
        "state": "WaitingForAuthentication",
        "current_limit_a": 10.0,
        "power_w": None,
        "energy_wh": None,
        "session_id": "evse-1-4",
        "last_event": "AuthRequired",
        "faults": [],
        "leases": {"energy-manager": 16.0, "backend": 10.0},
        "reservations": [{"reservation_id": 21, "id_tag": "04A1B2C3D4", "expires_at": 0.0, "parent_id_tag": None}],
    }
    line = _connector_line(status)
    until = time.strftime("%H:%M", time.localtime(0.0))
    assert line.endswith(f"  leases: backend 10.0 A, energy-manager 16.0 A  reserved: #21 for 04A1B2C3D4 until {until}")
    assert "leases" not in _connector_line({**status, "leases": {}, "reservations": []})
