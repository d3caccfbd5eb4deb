"""Fuzzed CSMS frames (hypothesis, sent raw by our simulator) never crash the backend link or drop its
connection, and each gets the answer OCPP-J 1.6 asks for: nothing for a frame without a readable id,
FormationViolation for a broken PDU, NotImplemented for an unknown action, NotSupported for a known one
the station does not serve, FormationViolation for an extra property, and a CALLRESULT for any CALL
that fits the schema.
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.actors.test_backend_link_harness import CP_ID, Station, eventually, station

CP_INITIATED = ["Authorize", "BootNotification", "Heartbeat", "MeterValues", "StatusNotification"]
VALID = {
    "Reset": {"type": "Soft"},
    "GetLocalListVersion": {},
    "ClearCache": {},
    "GetConfiguration": {"key": ["HeartbeatInterval"]},
    "DataTransfer": {"vendorId": "com.example"},
    "TriggerMessage": {"requestedMessage": "Heartbeat"},
    "UnlockConnector": {"connectorId": 1},
    "RemoteStopTransaction": {"transactionId": 1},
}
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    # finite only: JSON has no NaN or Infinity, and the link drops such frames as not JSON
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
unique_ids = st.uuids().map(str)
identifiers = st.text(alphabet=string.ascii_letters, min_size=1, max_size=30)


def call(unique_id: str, action: Any, payload: Any) -> str:
    return json.dumps([2, unique_id, action, payload])


@st.composite
def frames(draw: st.DrawFn) -> tuple[str, str | None]:
    """A frame and the error code it must be answered with: None for no answer at all, "" for a
    CALLRESULT."""
    kind = draw(st.integers(0, 7))
    uid = draw(unique_ids)
    if kind == 0:  # not JSON, or JSON that is no OCPP-J array with a string id
        text = draw(st.text(max_size=40) | json_values.map(json.dumps))
        try:
            parsed = json.loads(text)
            readable = isinstance(parsed, list) and len(parsed) >= 2 and isinstance(parsed[1], str)
        except ValueError:
            readable = False
        return (text, None) if not readable else (json.dumps({"not": "a frame"}), None)
    if kind == 1:  # an id that is not a string
        bad_id = draw(st.integers() | st.none() | st.lists(st.integers(), max_size=2))
        return json.dumps([2, bad_id, "Reset", {"type": "Soft"}]), None
    if kind == 2:  # a CALL that breaks the PDU: wrong length, action or payload type
        broken = draw(
            st.sampled_from(
                [
                    [2, uid],
                    [2, uid, "Reset"],
                    [2, uid, "Reset", {"type": "Soft"}, "extra"],
                    [2, uid, draw(st.integers() | st.none()), {}],
                    [2, uid, "Reset", draw(st.lists(st.integers(), max_size=3) | st.text(max_size=5))],
                ]
            )
        )
        return json.dumps(broken), "FormationViolation"
    if kind == 3:  # an action OCPP 1.6 does not have
        action = draw(identifiers.filter(lambda a: a not in VALID and not a.endswith("Notification")))
        return call(uid, "X" + action, draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))), (
            "NotImplemented"
        )
    if kind == 4:  # a 1.6 action only a charge point sends (every CSMS action is served), whatever its payload
        action = draw(st.sampled_from(CP_INITIATED))
        return call(uid, action, draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))), "NotSupported"
    if kind == 5:  # a served action with one property too many
        action = draw(st.sampled_from(sorted(VALID)))
        extra = draw(identifiers.filter(lambda k: k not in ("key", "type", "vendorId", "messageId", "data")))
        return call(uid, action, {**VALID[action], "zz" + extra: draw(json_values)}), "FormationViolation"
    if kind == 6:  # configuration keys and values of any text that fits the schema
        key = draw(st.sampled_from(["MeterValueSampleInterval", "LocalPreAuthorize", "MeterValuesSampledData"]))
        value = draw(st.text(max_size=60))
        return call(uid, "ChangeConfiguration", {"key": key, "value": value}), ""
    connector = draw(st.integers(0, 2**31 - 1))  # numbers in range: always answered with a result
    action, payload = draw(
        st.sampled_from(
            [
                ("UnlockConnector", {"connectorId": connector}),
                ("RemoteStopTransaction", {"transactionId": connector}),
                ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": connector}),
                ("ChangeAvailability", {"connectorId": connector, "type": "Operative"}),
                ("GetConfiguration", {"key": [draw(st.text(max_size=50))]}),
                ("RemoteStartTransaction", {"idTag": draw(st.text(min_size=1, max_size=20)), "connectorId": connector}),
                (
                    "InstallCertificate",
                    {"certificateType": "ManufacturerRootCertificate", "certificate": draw(st.text(max_size=300))},
                ),
                (
                    "DeleteCertificate",
                    {
                        "certificateHashData": {
                            "hashAlgorithm": draw(st.sampled_from(["SHA256", "SHA384", "SHA512"])),
                            "issuerNameHash": draw(st.text(max_size=128)),
                            "issuerKeyHash": draw(st.text(max_size=128)),
                            "serialNumber": draw(st.text(max_size=40)),
                        }
                    },
                ),
                ("SetChargingProfile", {"connectorId": connector % 4, "csChargingProfiles": draw(charging_profiles())}),
                ("ClearChargingProfile", {"id": connector}),
                ("GetCompositeSchedule", {"connectorId": connector % 4, "duration": draw(st.integers(0, 2**31 - 1))}),
                ("CancelReservation", {"reservationId": connector}),
                (
                    "ReserveNow",
                    {
                        "connectorId": connector,
                        "expiryDate": "2020-01-01T00:00:00Z",  # past: answered Rejected, nothing is held
                        "idTag": draw(st.text(min_size=1, max_size=20)),
                        "reservationId": connector,
                    },
                ),
            ]
        )
    )
    return call(uid, action, payload), ""


@st.composite
def charging_profiles(draw: st.DrawFn) -> dict[str, Any]:
    """Relative profiles (no dates) with any numbers the 1.6 schema lets through."""
    periods = draw(st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 10**6)), min_size=1, max_size=4))
    return {
        "chargingProfileId": draw(st.integers(-(2**31), 2**31 - 1)),
        "stackLevel": draw(st.integers(0, 20)),
        "chargingProfilePurpose": draw(st.sampled_from(["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"])),
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": draw(st.sampled_from(["A", "W"])),
            "chargingSchedulePeriod": [{"startPeriod": start, "limit": limit} for start, limit in periods],
        },
    }


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with station(tmp_path_factory.mktemp("fuzz"), light=True) as running:
        eventually(lambda: running.link().registration == "Accepted" and running.link().online, "the boot")
        running.pid = running.system.pid_of("backend")  # type: ignore[attr-defined]
        yield running


@SETTINGS
@given(case=frames())
def test_fuzzed_frames_get_the_right_answer_and_never_hurt_the_link(
    linked: Station, case: tuple[str, str | None]
) -> None:
    text, expected = case
    if expected is None:
        linked.csms.send_raw(CP_ID, text)
    else:
        answer = linked.raw_call(text)
        assert answer.error_code == (expected or None), (text, answer.text)
        if not expected:
            assert isinstance(answer.payload, dict)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "text",
    [
        nested(5000),  # json gave up with RecursionError, which ended the link's reader and its connection
        '[2,"n1","Reset",' + nested(5000) + "]",
        '[2,"n2","SetChargingProfile",{"connectorId":1,"limit":NaN}]',  # NaN and Infinity are not JSON
        '[3,"n3",{"x":Infinity}]',
    ],
    ids=["deep-array", "deep-call", "nan", "infinity"],
)
def test_frames_json_cannot_carry_are_dropped_and_the_connection_stays(linked: Station, text: str) -> None:
    linked.csms.send_raw(CP_ID, text)
    assert linked.call_action("GetLocalListVersion", {}).payload == {"listVersion": 0}
    assert linked.link().connections == 1


def test_a_call_whose_payload_is_nested_deep_gets_a_call_error(linked: Station) -> None:
    # json reads 900 levels; copying and validating the payload recursively must not lose the answer
    answer = linked.raw_call('[2,"deep-1","DataTransfer",{"vendorId":"x","data":' + nested(900) + "}]")
    assert answer.error_code in ("FormationViolation", "TypeConstraintViolation", "PropertyConstraintViolation"), (
        answer.text
    )


@SETTINGS
@given(
    number=st.integers(2**31, 2**80) | st.integers(-(2**80), -1) | st.floats(allow_nan=False, allow_infinity=False),
    action=st.sampled_from(
        [
            ("UnlockConnector", "connectorId"),
            ("RemoteStopTransaction", "transactionId"),
            ("ChangeAvailability", "connectorId"),
            ("TriggerMessage", "connectorId"),
            ("RemoteStartTransaction", "connectorId"),
            ("ChangeConfiguration", "value"),
        ]
    ),
)
@example(number=2**70, action=("RemoteStopTransaction", "transactionId"))
def test_numbers_out_of_range_are_answered_and_never_hurt_the_link(
    linked: Station, number: float, action: tuple[str, str]
) -> None:
    name, field = action
    payload = {
        "UnlockConnector": {},
        "RemoteStopTransaction": {},
        "ChangeAvailability": {"type": "Operative"},
        "TriggerMessage": {"requestedMessage": "StatusNotification"},
        "RemoteStartTransaction": {"idTag": "T1"},
        "ChangeConfiguration": {"key": "MeterValueSampleInterval"},
    }[name]
    answer = linked.raw_call(json.dumps([2, str(uuid.uuid4()), name, {**payload, field: number}]))
    assert answer.error_code or isinstance(answer.payload, dict), answer.text


def test_after_the_fuzzing_the_link_is_the_same_link(linked: Station) -> None:
    assert linked.call_action("GetLocalListVersion", {}).payload == {"listVersion": 0}
    status = linked.link()
    assert status.online and status.connections == 1
    assert linked.system.pid_of("backend") == linked.pid  # type: ignore[attr-defined]
