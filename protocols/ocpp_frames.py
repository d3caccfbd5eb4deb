"""OCPP-J 1.6 frames as a charge point receives them: what a frame is, which CALLERROR answers it, and
how to show a frame in a log without the AuthorizationKey (pure).

OCPP-J 1.6 §4 defines three frames: CALL ``[2, id, action, payload]``, CALLRESULT ``[3, id, payload]``
and CALLERROR ``[4, id, code, description, details]``, with a unique id of at most 36 characters. §4.2.3
lists the error codes; the `ocpp` library deviates from them (shared/reference/ocpp.md §2), so the codes
the backend link answers with are decided here:

- a frame that is not a JSON array with a readable string id cannot be answered (there is no id to
  answer to; OCPP 2.0.1 Part 4 §4.2.3 also allows dropping it): `Unanswerable`, logged and dropped;
- a CALL-like frame (type 2, or an unknown type) with a readable id but the wrong shape, a non-string
  action, a non-object payload or an over-long id breaks the PDU structure: CALLERROR FormationViolation;
- an action OCPP 1.6 does not know is ``NotImplemented`` ("Requested Action is not known by receiver"),
  a known one the station does not support is ``NotSupported`` ("recognized but not supported");
- schema errors keep the library's codes, in the 1.6J spelling (`wire_error_code`).

A malformed CALLRESULT or CALLERROR is never answered: answering an answer could make two peers loop.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIONS_16",
    "MAX_PAYLOAD_DEPTH",
    "MAX_UNIQUE_ID_LENGTH",
    "ErrorCode",
    "IncomingAnswer",
    "IncomingCall",
    "MustRefuse",
    "Unanswerable",
    "call_error_text",
    "classify",
    "redact",
    "wire_error_code",
]

MAX_UNIQUE_ID_LENGTH = 36  # OCPP-J 1.6 §4.1.3: "Maximum of 36 characters, to allow for GUIDs"
MAX_PAYLOAD_DEPTH = 32
"""Deepest nesting of objects and arrays a payload may have. The deepest 1.6 message (SetChargingProfile)
nests 5 levels; the library copies and validates payloads recursively, which a few hundred levels break."""
_CALL, _CALLRESULT, _CALLERROR = 2, 3, 4
_DESCRIPTION_MAX = 255

ACTIONS_16 = frozenset(
    {
        # OCPP 1.6 edition 2, every feature profile
        "Authorize",
        "BootNotification",
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "Heartbeat",
        "MeterValues",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
        # the security whitepaper ("Improved security for OCPP 1.6-J", ed. 3)
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
        "SignedUpdateFirmware",
    }
)
"""Every action name of OCPP 1.6J with the security extensions."""


class ErrorCode(enum.StrEnum):
    """OCPP-J 1.6 §4.2.3 CALLERROR codes, with the specification's own spellings."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMATION_VIOLATION = "FormationViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"


_LIBRARY_SPELLINGS = {
    "FormatViolation": ErrorCode.FORMATION_VIOLATION,  # OCPP 2.0.1's spelling, used by the library on 1.6
    "OccurrenceConstraintViolation": ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
}


def wire_error_code(code: str) -> ErrorCode:
    """The 1.6J code for an error code the `ocpp` library raised; anything unknown is GenericError."""
    if code in _LIBRARY_SPELLINGS:
        return _LIBRARY_SPELLINGS[code]
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.GENERIC_ERROR


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A well-formed CALL; the action may still be unknown and the payload may still break its schema."""

    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IncomingAnswer:
    """A well-formed CALLRESULT or CALLERROR, as parsed."""

    message_type: int
    unique_id: str
    message: list[Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class MustRefuse:
    """A CALL that breaks the frame structure but whose id can be answered."""

    unique_id: str
    code: ErrorCode
    description: str


@dataclass(frozen=True, slots=True)
class Unanswerable:
    """A frame that cannot be answered: log it and drop it."""

    reason: str


Incoming = IncomingCall | IncomingAnswer | MustRefuse | Unanswerable


def classify(frame: str | bytes) -> Incoming:
    """What an incoming WebSocket frame is, and whether and how it must be answered."""
    if isinstance(frame, bytes):
        return Unanswerable("a binary WebSocket frame (OCPP-J uses text frames)")
    try:
        message = json.loads(frame, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # a few thousand "[" fit in one frame: RecursionError
        return Unanswerable("JSON nested too deeply" if isinstance(exc, RecursionError) else "not JSON")
    if not isinstance(message, list) or len(message) < 2:
        return Unanswerable("not an OCPP-J array with a message type and a unique id")
    kind, unique_id = message[0], message[1]
    if not isinstance(unique_id, str):
        return Unanswerable("the unique id is not a string")
    if kind in (_CALLRESULT, _CALLERROR) and type(kind) is int:
        return _answer(kind, unique_id, message)
    why = _call_structure_problem(message)
    return _structure(unique_id, why) if why else IncomingCall(unique_id, message[2], message[3])


def _not_json(constant: str) -> Any:
    """Python's json reads NaN and Infinity; JSON (RFC 8259 §6) has neither, and a NaN limit would pass
    every "number" check of the OCPP schemas."""
    raise ValueError(f"{constant} is not a JSON value")


def _call_structure_problem(message: list[Any]) -> str | None:
    kind, unique_id = message[0], message[1]
    if not 0 < len(unique_id) <= MAX_UNIQUE_ID_LENGTH:
        return f"the unique id must be 1 to {MAX_UNIQUE_ID_LENGTH} characters long"
    if kind != _CALL or type(kind) is not int:
        return f"message type {json.dumps(kind)[:20]} is not CALL, CALLRESULT or CALLERROR"
    if len(message) != 4:
        return f"a CALL has 4 elements, not {len(message)}"
    if not isinstance(message[2], str) or not message[2]:
        return "the action is not a non-empty string"
    if not isinstance(message[3], dict):
        return "the payload is not a JSON object"
    deep = _nests_deeper(message[3], MAX_PAYLOAD_DEPTH)
    return f"the payload nests deeper than {MAX_PAYLOAD_DEPTH} levels" if deep else None


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (iterative: the point is deep input)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _answer(kind: int, unique_id: str, message: list[Any]) -> Incoming:
    if _nests_deeper(message, MAX_PAYLOAD_DEPTH + 1):
        return Unanswerable(f"a CALLRESULT or CALLERROR nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if kind == _CALLRESULT and len(message) == 3 and isinstance(message[2], dict):
        return IncomingAnswer(kind, unique_id, message)
    if (
        kind == _CALLERROR
        and len(message) == 5
        and isinstance(message[2], str)
        and isinstance(message[3], str)
        and isinstance(message[4], dict)
    ):
        return IncomingAnswer(kind, unique_id, message)
    return Unanswerable("a malformed CALLRESULT or CALLERROR")


def _structure(unique_id: str, why: str) -> MustRefuse:
    # The id goes back as received, even an over-long one: only then can the CSMS match the answer.
    return MustRefuse(unique_id, ErrorCode.FORMATION_VIOLATION, why)


def call_error_text(unique_id: str, code: ErrorCode, description: str, details: dict[str, Any] | None = None) -> str:
    """The CALLERROR frame; the description is cut to 255 characters, details are always an object."""
    frame = [_CALLERROR, unique_id, code.value, description[:_DESCRIPTION_MAX], details or {}]
    return json.dumps(frame, separators=(",", ":"), default=str)


_SECRET_KEYS = frozenset({"authorizationkey"})


_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s\"]+@")


def redact(frame: str | bytes) -> str:
    """The frame as it may appear in a log: the value of a ChangeConfiguration of the AuthorizationKey is
    replaced, whichever way the frame is written, and so are user name and password in URLs. Text that
    is not an OCPP-J array is shortened."""
    text = frame if isinstance(frame, str) else frame.decode("utf-8", errors="replace")
    text = _URL_CREDENTIALS.sub(r"\1***@", text)  # e.g. an UpdateFirmware location with user:password
    if "authorizationkey" not in text.casefold():
        return text
    try:
        message = json.loads(text)
        if not isinstance(message, list):
            return "<a frame mentioning the AuthorizationKey: hidden>"
        return json.dumps(_hide(message), separators=(",", ":"))
    except ValueError:
        return "<a frame mentioning the AuthorizationKey, not JSON: hidden>"
    except RecursionError:  # too deep to parse or to walk: hide it all rather than risk the secret
        return "<a frame mentioning the AuthorizationKey, nested too deeply: hidden>"


def _hide(value: Any) -> Any:
    if isinstance(value, list):
        return [_hide(v) for v in value]
    if isinstance(value, dict):
        secret = isinstance(value.get("key"), str) and value["key"].casefold() in _SECRET_KEYS
        return {k: ("<hidden>" if secret and k == "value" else _hide(v)) for k, v in value.items()}
    return value
