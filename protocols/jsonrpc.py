"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification), as pure functions: no I/O.

`parse` turns one websocket text frame into requests, or into the error response the
specification asks for; `result` and `error` build responses. Every malformed input maps to a
response (or to nothing, for notifications), never to an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_REQUEST_BYTES",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Request",
    "error",
    "notification",
    "parse",
    "result",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_ERROR = -32000
"""Server errors are -32000 to -32099 (spec §5.1): the call reached an actor and failed there."""

MAX_REQUEST_BYTES = 64 * 1024
_MAX_BATCH = 50

Id = str | int | None


@dataclass(frozen=True, slots=True)
class Request:
    id: Id
    method: str
    params: dict[str, Any] | list[Any]
    is_notification: bool
    """No ``id`` member: the client wants no response (spec §4.1)."""


def result(request_id: Id, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def error(request_id: Id, code: int, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A server-to-client message that needs no answer (used for event streams)."""
    return {"jsonrpc": "2.0", "method": method, "params": params}


def parse(frame: str | bytes) -> tuple[list[Request | dict[str, Any]], bool]:
    """Parse one frame. Returns (items, is_batch): each item is a `Request` or a ready error response."""
    if len(frame) > MAX_REQUEST_BYTES:
        return [error(None, INVALID_REQUEST, f"request larger than {MAX_REQUEST_BYTES} bytes")], False
    try:
        data = json.loads(frame, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        # RecursionError: a few thousand "[" fit in one frame, deeper than json's recursion allows
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        return [error(None, PARSE_ERROR, "Parse error", detail)], False
    if isinstance(data, list):
        if not data:
            return [error(None, INVALID_REQUEST, "empty batch")], False
        if len(data) > _MAX_BATCH:
            return [error(None, INVALID_REQUEST, f"batch of more than {_MAX_BATCH} requests")], False
        return [_request(item) for item in data], True
    return [_request(data)], False


def _not_json(constant: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON (RFC 8259 §6) does not have; a NaN limit would
    pass every `minimum` check of a params schema."""
    raise ValueError(f"{constant} is not a JSON value")


def _request(item: Any) -> Request | dict[str, Any]:  # noqa: PLR0911 - one return per rule of spec §4
    if not isinstance(item, dict):
        return error(None, INVALID_REQUEST, "a request must be an object")
    raw_id = item.get("id")
    request_id: Id = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    if "id" in item and raw_id is not None and request_id is None:
        return error(None, INVALID_REQUEST, "id must be a string, a number or null")
    if item.get("jsonrpc") != "2.0":
        return error(request_id, INVALID_REQUEST, 'jsonrpc must be exactly "2.0"')
    method = item.get("method")
    if not isinstance(method, str) or not method:
        return error(request_id, INVALID_REQUEST, "method must be a non-empty string")
    unknown = set(item) - {"jsonrpc", "id", "method", "params"}
    if unknown:
        return error(request_id, INVALID_REQUEST, f"unknown member(s) {sorted(unknown)}")
    params = item.get("params", {})
    if not isinstance(params, dict | list):
        return error(request_id, INVALID_REQUEST, "params must be an object or an array")
    return Request(id=request_id, method=method, params=params, is_notification="id" not in item)
