"""JSON-RPC 2.0 parsing as the specification's examples describe it (jsonrpc.org §7)."""

from __future__ import annotations

import json

from charger.protocols import jsonrpc
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.fuzz import PURE, ROUND_TRIP


def test_a_request_and_a_notification() -> None:
    items, batch = jsonrpc.parse('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}')
    assert not batch and items == [jsonrpc.Request(id=1, method="subtract", params=[42, 23], is_notification=False)]
    items, _ = jsonrpc.parse('{"jsonrpc": "2.0", "method": "update", "params": [1, 2, 3]}')
    assert isinstance(items[0], jsonrpc.Request) and items[0].is_notification


def test_spec_error_examples() -> None:
    assert (
        jsonrpc.parse('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')[0][0]["error"]["code"] == -32700
    )
    assert jsonrpc.parse('{"jsonrpc": "2.0", "method": 1, "params": "bar"}')[0][0]["error"]["code"] == -32600
    assert jsonrpc.parse("[]")[0][0]["error"]["code"] == -32600
    items, batch = jsonrpc.parse("[1,2,3]")
    assert batch and [i["error"]["code"] for i in items] == [-32600] * 3


def test_a_bool_id_is_invalid_and_oversize_is_refused() -> None:
    assert jsonrpc.parse('{"jsonrpc": "2.0", "method": "m", "id": true}')[0][0]["error"]["code"] == -32600
    big = json.dumps({"jsonrpc": "2.0", "method": "m", "params": {"x": "y" * jsonrpc.MAX_REQUEST_BYTES}})
    assert "larger than" in jsonrpc.parse(big)[0][0]["error"]["message"]


def test_nan_and_infinity_are_not_json() -> None:
    # Python's json reads them; a NaN current limit passed the params schema's "minimum": 0
    for constant in ("NaN", "Infinity", "-Infinity"):
        frame = '{"jsonrpc": "2.0", "id": 1, "method": "m", "params": {"amps": ' + constant + "}}"
        items, _ = jsonrpc.parse(frame)
        assert items[0]["error"]["code"] == jsonrpc.PARSE_ERROR and constant in items[0]["error"]["data"]


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
@example("[" * 5000)  # json.loads raised RecursionError: the control API actor crashed and restarted
@example(b'{"a":' * 5000)
def test_any_frame_parses_to_requests_or_error_responses(frame: str | bytes) -> None:
    items, _ = jsonrpc.parse(frame)
    assert items and all(isinstance(i, jsonrpc.Request) or i["jsonrpc"] == "2.0" for i in items)


# --- structure-aware fuzzing (docs/robustness.md) ---------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5,
)
_ids = st.none() | st.integers() | st.text(max_size=8)
_members = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0]) | _json,
        "id": _ids | _json,
        "method": st.sampled_from(["ping", "system.status", "rpc.x"]) | _json,
        "params": st.dictionaries(st.text(max_size=6), _json, max_size=3) | st.lists(_json, max_size=3) | _json,
        "extra": _json,
    },
)


@PURE
@given(_members | st.lists(_members | _json, min_size=1, max_size=4))
def test_request_shaped_objects_get_a_request_or_the_specified_error(frame: object) -> None:
    items, is_batch = jsonrpc.parse(json.dumps(frame))
    assert is_batch == isinstance(frame, list)
    assert len(items) == (len(frame) if isinstance(frame, list) else 1)
    for item in items:
        if isinstance(item, dict):
            assert item["error"]["code"] in (jsonrpc.PARSE_ERROR, jsonrpc.INVALID_REQUEST), item
            assert isinstance(item["error"]["message"], str) and item["error"]["message"]


@ROUND_TRIP
@given(
    st.none() | st.integers() | st.text(max_size=12),
    st.text(min_size=1, max_size=20),
    st.dictionaries(st.text(max_size=6), _json, max_size=3) | st.lists(_json, max_size=3),
    st.booleans(),
)
def test_a_valid_request_round_trips(request_id: int | str | None, method: str, params: object, notify: bool) -> None:
    sent = {"jsonrpc": "2.0", "method": method, "params": params, **({} if notify else {"id": request_id})}
    items, _ = jsonrpc.parse(json.dumps(sent))
    assert items == [
        jsonrpc.Request(id=None if notify else request_id, method=method, params=params, is_notification=notify)
    ]  # type: ignore[arg-type]
