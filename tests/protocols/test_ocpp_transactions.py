"""Transaction payloads, stop reasons, the connector of a remote start, and ChangeAvailability plans."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from charger.protocols.evse_events import StopReason
from charger.protocols.ocpp_transactions import (
    OCPP16_STOP_REASONS,
    AvailabilityPlan,
    AvailabilityStatus,
    AvailabilityType,
    id_tag_of,
    ocpp_stop_reason,
    plan_availability,
    remote_start_target,
    start_transaction_payload,
    stop_transaction_payload,
)

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()


def test_meter_start_and_stop_are_the_registers_in_whole_wh() -> None:
    assert start_transaction_payload(2, "TAG", 1234.5001, AT) == {
        "connectorId": 2,
        "idTag": "TAG",
        "meterStart": 1235,
        "timestamp": "2024-05-01T12:00:00.000Z",
    }
    assert stop_transaction_payload(2234.4, AT, "EVDisconnected") == {
        "meterStop": 2234,
        "timestamp": "2024-05-01T12:00:00.000Z",
        "reason": "EVDisconnected",
    }
    assert stop_transaction_payload(None, AT, None)["meterStop"] == 0  # an EVSE without a meter
    assert "transactionId" not in stop_transaction_payload(1.0, AT, "Local")  # the queue fills it in


def test_every_evse_stop_reason_becomes_a_16_reason() -> None:
    for reason in StopReason:
        assert ocpp_stop_reason(reason.value) in OCPP16_STOP_REASONS
    assert ocpp_stop_reason("SoftReset") == "SoftReset" and ocpp_stop_reason("GroundFault") == "Other"


def test_id_tags_are_id_tokens() -> None:
    assert id_tag_of("04A1B2C3D4") == ("04A1B2C3D4", None)
    assert id_tag_of(None)[0] == "UNKNOWN"
    tag, why = id_tag_of("x" * 25)
    assert tag == "x" * 20 and why is not None


STATES = {1: "Charging", 2: "WaitingForAuthentication", 3: "Idle", 4: "Idle"}


@pytest.mark.parametrize(
    ("requested", "operative", "target"),
    [
        (None, {}, 2),  # a car waits: it goes first
        (3, {}, 3),
        (1, {}, None),  # busy
        (9, {}, None),  # no such connector
        (None, {2: False}, 3),
        (3, {3: False}, None),  # out of service
    ],
)
def test_remote_start_target(requested: int | None, operative: dict[int, bool], target: int | None) -> None:
    assert remote_start_target(requested, STATES, operative) == target


def test_remote_start_target_without_a_free_connector() -> None:
    assert remote_start_target(None, {1: "Charging", 2: "Finished"}, {}) is None


BUSY = {1: (True, True), 2: (True, False), 3: (False, False)}  # (operative, transaction)


def test_availability_of_one_connector() -> None:
    assert plan_availability(2, AvailabilityType.INOPERATIVE, BUSY) == AvailabilityPlan(
        status=AvailabilityStatus.ACCEPTED, apply_now={2: False}, unschedule=frozenset({2})
    )
    assert plan_availability(1, AvailabilityType.INOPERATIVE, BUSY) == AvailabilityPlan(
        status=AvailabilityStatus.SCHEDULED, schedule={1: False}
    )
    assert plan_availability(3, AvailabilityType.INOPERATIVE, BUSY).apply_now == {}  # already
    assert plan_availability(7, AvailabilityType.OPERATIVE, BUSY).status is AvailabilityStatus.REJECTED


def test_availability_of_the_whole_station() -> None:
    plan = plan_availability(0, AvailabilityType.INOPERATIVE, BUSY)
    assert plan.status is AvailabilityStatus.SCHEDULED and plan.station_operative is False
    assert plan.apply_now == {2: False} and plan.schedule == {1: False} and plan.unschedule == {2, 3}
    back = plan_availability(0, AvailabilityType.OPERATIVE, BUSY)
    assert back.status is AvailabilityStatus.ACCEPTED and back.apply_now == {3: True} and back.station_operative
    assert back.unschedule == {1, 2, 3}  # Operative cancels a scheduled Inoperative
