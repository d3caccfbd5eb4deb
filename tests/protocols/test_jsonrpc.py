"""JSON-RPC 2.0 parsing as the specification's examples describe it (jsonrpc.org §7)."""

from __future__ import annotations

import json

from charger.protocols import jsonrpc
from hypothesis import given, settings
from hypothesis import strategies as st


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


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_frame_parses_to_requests_or_error_responses(frame: str | bytes) -> None:
    items, _ = jsonrpc.parse(frame)
    assert items and all(isinstance(i, jsonrpc.Request) or i["jsonrpc"] == "2.0" for i in items)
