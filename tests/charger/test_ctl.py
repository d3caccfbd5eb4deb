"""What each `charger.ctl` subcommand sends: the JSON-RPC method and params behind the shortcut."""

from __future__ import annotations

import pytest

from charger.ctl import _parser, _shortcut


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
        (["fault", "1", "rcd", "--clear"], "connector.fault", {"fault": "rcd", "active": False, "connector": "1"}),
        (["lease", "1", "--amps", "10"], "connector.lease", {"amps": 10.0, "valid_for_s": 60.0, "connector": "1"}),
    ],
)
def test_a_subcommand_is_the_documented_call(argv: list[str], method: str, params: dict[str, object]) -> None:
    assert _shortcut(_parser().parse_args(argv)) == (method, params)


def test_enable_takes_no_reason() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["enable", "1", "--reason", "Other"])
