"""OCPP-J 1.6 frame classification, the 1.6J error spellings, CALLERROR frames and log redaction."""

from __future__ import annotations

import json

import pytest
from charger.protocols.ocpp_frames import (
    ACTIONS_16,
    ErrorCode,
    IncomingAnswer,
    IncomingCall,
    MustRefuse,
    Unanswerable,
    call_error_text,
    classify,
    redact,
    wire_error_code,
)
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support.fuzz import PURE, ROUND_TRIP


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('[2,"a1","Reset",{"type":"Soft"}]', IncomingCall("a1", "Reset", {"type": "Soft"})),
        ('[2,"a1","Anything",{}]', IncomingCall("a1", "Anything", {})),
        ('[2,"a1","Reset"]', MustRefuse("a1", ErrorCode.FORMATION_VIOLATION, "a CALL has 4 elements, not 3")),
        ('[2,"a1",5,{}]', MustRefuse("a1", ErrorCode.FORMATION_VIOLATION, "the action is not a non-empty string")),
        ('[2,"a1","",{}]', MustRefuse("a1", ErrorCode.FORMATION_VIOLATION, "the action is not a non-empty string")),
        ('[2,"a1","Reset",[]]', MustRefuse("a1", ErrorCode.FORMATION_VIOLATION, "the payload is not a JSON object")),
        (
            '[2,"","Reset",{}]',
            MustRefuse("", ErrorCode.FORMATION_VIOLATION, "the unique id must be 1 to 36 characters long"),
        ),
        ("not json", Unanswerable("not JSON")),
        (
            '[2,"a1","DataTransfer",{"data":' + "[" * 33 + "]" * 33 + "}]",  # copying it broke the answer task
            MustRefuse("a1", ErrorCode.FORMATION_VIOLATION, "the payload nests deeper than 32 levels"),
        ),
        (
            '[2,"a1","DataTransfer",{"data":' + "[" * 31 + "]" * 31 + "}]",
            IncomingCall(
                "a1", "DataTransfer", {"data": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}
            ),
        ),
        (
            '[3,"a1",{"x":' + "[" * 40 + "]" * 40 + "}]",
            Unanswerable("a CALLRESULT or CALLERROR nested deeper than 32 levels"),
        ),
        ('[2,"a1","SetChargingProfile",{"limit":NaN}]', Unanswerable("not JSON")),  # Python reads it; JSON has no NaN
        ('[2,"a1","Reset",{"x":-Infinity}]', Unanswerable("not JSON")),
        ("{}", Unanswerable("not an OCPP-J array with a message type and a unique id")),
        ("[2]", Unanswerable("not an OCPP-J array with a message type and a unique id")),
        ('[2,17,"Reset",{}]', Unanswerable("the unique id is not a string")),
        ('[3,"a1",[]]', Unanswerable("a malformed CALLRESULT or CALLERROR")),
        ('[4,"a1","InternalError","x"]', Unanswerable("a malformed CALLRESULT or CALLERROR")),
        (b'[2,"a1","Reset",{}]', Unanswerable("a binary WebSocket frame (OCPP-J uses text frames)")),
    ],
)
def test_classify(frame: str | bytes, expected: object) -> None:
    assert classify(frame) == expected


def test_answers_are_passed_on_and_an_unknown_message_type_is_refused() -> None:
    result = classify('[3,"a1",{"status":"Accepted"}]')
    assert isinstance(result, IncomingAnswer) and result.message_type == 3 and result.unique_id == "a1"
    error = classify('[4,"a1","NotSupported","no",{}]')
    assert isinstance(error, IncomingAnswer) and error.message_type == 4
    assert isinstance(classify('[5,"a1","Reset",{}]'), MustRefuse)
    assert isinstance(classify('[true,"a1","Reset",{}]'), MustRefuse)  # a boolean is no message type
    long_id = "x" * 37
    refused = classify(json.dumps([2, long_id, "Heartbeat", {}]))
    assert isinstance(refused, MustRefuse) and refused.unique_id == long_id  # echoed, so it can be matched


@given(st.text(max_size=200))
def test_any_text_is_classified_without_raising(text: str) -> None:
    assert isinstance(classify(text), IncomingCall | IncomingAnswer | MustRefuse | Unanswerable)


@given(
    st.lists(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=10)
        | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        max_size=6,
    )
)
def test_any_json_array_is_classified_and_only_string_ids_get_answers(message: list[object]) -> None:
    result = classify(json.dumps(message))
    if isinstance(result, MustRefuse | IncomingCall | IncomingAnswer):
        assert isinstance(message[1], str) and result.unique_id == message[1]
    if isinstance(result, IncomingCall):
        assert message[0] == 2 and len(message) == 4 and message[2] and isinstance(message[3], dict)


def test_library_codes_get_the_16j_spellings() -> None:
    assert wire_error_code("FormatViolation") is ErrorCode.FORMATION_VIOLATION
    assert wire_error_code("OccurrenceConstraintViolation") is ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
    assert wire_error_code("TypeConstraintViolation") is ErrorCode.TYPE_CONSTRAINT_VIOLATION
    assert wire_error_code("RpcFrameworkError") is ErrorCode.GENERIC_ERROR  # 2.0.1 only


@given(st.text(max_size=40), st.text(max_size=400))
def test_call_error_text_is_always_a_five_element_frame(unique_id: str, description: str) -> None:
    frame = json.loads(call_error_text(unique_id, ErrorCode.PROTOCOL_ERROR, description, {"cause": description}))
    assert frame[:3] == [4, unique_id, "ProtocolError"] and len(frame) == 5
    assert len(frame[3]) <= 255 and isinstance(frame[4], dict)


def test_the_action_list_is_every_16_action() -> None:
    assert len(ACTIONS_16) == 39 and {"Reset", "SignedUpdateFirmware", "StopTransaction"} <= ACTIONS_16


@pytest.mark.parametrize("key", ["AuthorizationKey", "authorizationkey", "AUTHORIZATIONKEY"])
def test_redact_hides_the_authorization_key_however_it_is_spelt(key: str) -> None:
    frame = json.dumps([2, "a1", "ChangeConfiguration", {"key": key, "value": "00112233445566778899aabbccddeeff"}])
    shown = redact(frame)
    assert "00112233445566778899aabbccddeeff" not in shown and "<hidden>" in shown
    other = json.dumps([2, "a1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}])
    assert redact(other) == other
    assert "secret" not in redact('{"AuthorizationKey": "secret", broken')


def test_redact_hides_credentials_in_urls() -> None:
    frame = json.dumps([2, "a2", "UpdateFirmware", {"location": "ftp://maker:hunter2@files.example.com/fw.bin"}])
    shown = redact(frame)
    assert "hunter2" not in shown and "maker" not in shown
    assert json.loads(shown)[3]["location"] == "ftp://***@files.example.com/fw.bin"
    plain = json.dumps([2, "a3", "GetDiagnostics", {"location": "https://files.example.com/up/?a=b@c"}])
    assert redact(plain) == plain  # an @ after the host is no credential


# --- fuzzing at the boundary (docs/robustness.md) ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)
deeply_nested = st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth)
unique_ids = st.text(min_size=1, max_size=36)
frames_on_the_wire = (
    st.text(max_size=300)
    | st.binary(max_size=300)
    | deeply_nested
    | st.lists(json_values, max_size=6).map(json.dumps)
    | st.tuples(st.sampled_from([2, 3, 4]), unique_ids, json_values, json_values).map(json.dumps)
)


@PURE
@given(frames_on_the_wire)
@example("[" * 5000)  # json.loads raised RecursionError, which killed the link's reader
@example('{"a":' * 5000)
@example('[2,"a","Reset",' + "[" * 5000)
def test_any_frame_is_classified_and_redacted_without_raising(frame: str | bytes) -> None:
    assert isinstance(classify(frame), IncomingCall | IncomingAnswer | MustRefuse | Unanswerable)
    assert isinstance(redact(frame), str)


payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=3)


@ROUND_TRIP
@given(
    unique_ids, st.sampled_from(sorted(ACTIONS_16)), payloads, st.sampled_from(list(ErrorCode)), st.text(max_size=300)
)
def test_well_formed_frames_round_trip(
    unique_id: str, action: str, payload: dict[str, object], code: ErrorCode, description: str
) -> None:
    assert classify(json.dumps([2, unique_id, action, payload])) == IncomingCall(unique_id, action, payload)
    result = classify(json.dumps([3, unique_id, payload]))
    assert isinstance(result, IncomingAnswer) and result.message == [3, unique_id, payload]
    error = classify(call_error_text(unique_id, code, description, {"cause": description}))
    assert isinstance(error, IncomingAnswer) and error.message[:4] == [4, unique_id, code.value, description[:255]]


@PURE
@given(
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=40),
    st.sampled_from(["AuthorizationKey", "authorizationKey", "AUTHORIZATIONKEY"]),
    st.integers(0, 40),
)
@example("00112233445566778899aabbccddeeff", "AuthorizationKey", 990)
def test_redact_never_shows_the_key_however_deep_the_frame(secret: str, key: str, depth: int) -> None:
    inner = json.dumps({"key": key, "value": secret})
    frame = '[2,"a1","ChangeConfiguration",' + "[" * depth + inner + "]" * depth + "]"
    assert secret not in redact(frame)
    assert secret not in redact(frame[: len(frame) // 2])  # cut short: not JSON at all
