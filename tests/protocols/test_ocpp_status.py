"""OCPP 1.6 connector status: the mapping from EVSE manager states, and MinimumStatusDuration."""

from __future__ import annotations

import pytest
from charger.protocols.ocpp_status import (
    ChargePointErrorCode,
    ChargePointStatus,
    ConnectorView,
    StatusReporter,
    connector_view,
)
from hypothesis import given
from hypothesis import strategies as st

S, E = ChargePointStatus, ChargePointErrorCode


@pytest.mark.parametrize(
    ("state", "token", "status"),
    [
        ("Idle", None, S.AVAILABLE),
        ("Idle", "04A1B2C3D4", S.PREPARING),  # a token waits for the plug
        ("WaitingForAuthentication", None, S.PREPARING),
        ("PrepareCharging", "T", S.SUSPENDED_EV),
        ("Charging", "T", S.CHARGING),
        ("ChargingPausedEV", "T", S.SUSPENDED_EV),
        ("ChargingPausedEVSE", "T", S.SUSPENDED_EVSE),
        ("StoppingCharging", "T", S.SUSPENDED_EVSE),
        ("Finished", "T", S.FINISHING),
        ("Disabled", None, S.UNAVAILABLE),
        ("SomethingNew", None, S.UNAVAILABLE),
    ],
)
def test_states_map_to_charge_point_status(state: str, token: str | None, status: ChargePointStatus) -> None:
    assert connector_view(state, [], token) == ConnectorView(status)


def test_faults_give_faulted_with_the_most_serious_error_code() -> None:
    view = connector_view("Inoperative", ["meter_offline", "rcd"], None)
    assert view == ConnectorView(S.FAULTED, E.GROUND_FAILURE, "meter_offline,rcd")
    assert connector_view("Inoperative", [], None).error_code is E.OTHER_ERROR  # pilot E or F
    assert connector_view("Inoperative", ["lock_failure"], "T").error_code is E.CONNECTOR_LOCK_FAILURE
    assert connector_view("Charging", ["meter_offline"], "T") == ConnectorView(
        S.CHARGING, E.POWER_METER_FAILURE, "meter_offline"
    )


def test_an_inoperative_connector_is_unavailable_when_idle_only() -> None:
    assert connector_view("Idle", [], None, operative=False).status is S.UNAVAILABLE
    assert connector_view("Charging", [], "T", operative=False).status is S.CHARGING  # scheduled, not yet


def test_a_change_is_due_once_it_has_lasted_the_minimum_duration() -> None:
    reporter = StatusReporter()
    reporter.observe(1, ConnectorView(S.AVAILABLE), at=100.0)
    assert [r.view.status for r in reporter.due(100.0, 5)] == []
    assert reporter.next_due(5) == 105.0
    (report,) = reporter.due(105.0, 5)
    assert (report.connector_id, report.view.status, report.since) == (1, S.AVAILABLE, 100.0)
    reporter.told(report)
    assert reporter.due(200.0, 5) == [] and reporter.next_due(5) is None


def test_a_change_that_reverts_in_time_is_never_reported() -> None:
    reporter = StatusReporter()
    reporter.observe(1, ConnectorView(S.AVAILABLE), at=0.0)
    reporter.told(reporter.due(10.0, 5)[0])
    reporter.observe(1, ConnectorView(S.PREPARING), at=20.0)
    reporter.observe(1, ConnectorView(S.AVAILABLE), at=22.0)
    assert reporter.due(100.0, 5) == []
    reporter.observe(1, ConnectorView(S.AVAILABLE), at=23.0)  # the same view again: the clock does not restart
    assert reporter.current(1) is not None and reporter.current(1).since == 22.0  # type: ignore[union-attr]


def test_after_a_reconnect_everything_is_due_again() -> None:
    reporter = StatusReporter()
    for c in (0, 1, 2):
        reporter.observe(c, ConnectorView(S.AVAILABLE), at=0.0)
    for report in reporter.due(1.0, 0):
        reporter.told(report)
    assert reporter.due(2.0, 0) == []
    reporter.forget_told()
    assert [r.connector_id for r in reporter.due(2.0, 0)] == [0, 1, 2]


@given(st.lists(st.tuples(st.sampled_from(list(S)), st.floats(0, 10)), min_size=1, max_size=20))
def test_with_no_minimum_the_last_view_is_always_due_unless_told(changes: list[tuple[S, float]]) -> None:
    reporter, now = StatusReporter(), 0.0
    for status, step in changes:
        now += step
        reporter.observe(1, ConnectorView(status), at=now)
    (report,) = reporter.due(now, 0)
    assert report.view.status is changes[-1][0]
    reporter.told(report)
    assert reporter.due(now, 0) == []


def test_a_reserved_idle_connector_is_reserved_and_only_then() -> None:
    assert connector_view("Idle", [], None, reserved=True) == ConnectorView(S.RESERVED)
    assert connector_view("Idle", [], "T", reserved=True) == ConnectorView(S.PREPARING)
    assert connector_view("WaitingForAuthentication", [], None, reserved=True) == ConnectorView(S.PREPARING)
    assert connector_view("Idle", [], None, operative=False, reserved=True) == ConnectorView(S.UNAVAILABLE)
    assert connector_view("Inoperative", ["rcd"], None, reserved=True).status is S.FAULTED
