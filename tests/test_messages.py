"""The msgpack codec: exact wire bytes, typed rejection of bad frames, and property tests that
round-trip every registered message type and fuzz the decoder."""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import typing
from typing import Any, Literal

import charger.actors.charging
import charger.actors.counter
import charger.actors.ocpp_messages
import charger.actors.ticker
import msgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import charger.lifecycle
import tests.support.probes  # noqa: F401 - registers the test message types too
from charger.messages import (
    MAX_FRAME,
    DecodeError,
    Kind,
    decode,
    decode_envelope,
    encode,
    encode_envelope,
    message,
    registered,
)

assert charger.actors.counter and charger.actors.ticker and charger.lifecycle
assert charger.actors.charging and charger.actors.ocpp_messages  # every product message type is fuzzed


class Phase(enum.Enum):
    A = "a"
    B = "b"


@message
class Sample:
    """Exercises every supported field form."""

    i: int
    f: float
    b: bool
    s: str
    raw: bytes
    maybe: int | None
    items: list[str]
    pair: tuple[int, str]
    many: tuple[float, ...]
    table: dict[str, int]
    phase: Phase
    mode: Literal["on", "off"]
    anything: Any
    nested: Inner | None = None


@message
class Inner:
    level: int


def test_exact_wire_bytes_of_a_message() -> None:
    from charger.actors.ticker import Tick

    assert encode(Tick(source="t", seq=3)) == b"\x92\xa4Tick\x82\xa6source\xa1t\xa3seq\x03"


def test_exact_wire_bytes_of_an_envelope() -> None:
    from charger.actors.ticker import Tick

    frame = encode_envelope(Kind.EVENT, 0, "t", Tick(source="t", seq=1))
    assert frame == b"\x95\x04\x00\xa1t\xa4Tick\x82\xa6source\xa1t\xa3seq\x01"
    env = decode_envelope(frame)
    assert (env.kind, env.corr, env.sender, env.tag) == (Kind.EVENT, 0, "t", "Tick")


def _sample(**over: Any) -> Sample:
    base: dict[str, Any] = dict(
        i=1,
        f=1.5,
        b=True,
        s="x",
        raw=b"\0",
        maybe=None,
        items=["a"],
        pair=(1, "p"),
        many=(0.5,),
        table={"k": 2},
        phase=Phase.B,
        mode="on",
        anything={"x": [1, None]},
        nested=Inner(level=2),
    )
    base.update(over)
    return Sample(**base)


def test_round_trip_of_every_field_form() -> None:
    msg = _sample()
    assert decode(encode(msg)) == msg


def _raw(msg: Any) -> list[Any]:
    return typing.cast(list[Any], msgpack.unpackb(encode(msg), raw=False))


def _with(field: str, value: Any) -> bytes:
    tag, body = _raw(_sample())
    body[field] = value
    return typing.cast(bytes, msgpack.packb([tag, body]))


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("i", "1", "Sample.i: expected int"),
        ("i", True, "Sample.i: expected int"),  # a bool is not an int on the wire
        ("f", "1.0", "Sample.f: expected float"),
        ("b", 1, "Sample.b: expected bool"),
        ("raw", "text", "Sample.raw: expected bytes"),
        ("items", ["a", 1], "Sample.items[1]: expected str"),
        ("pair", [1], "Sample.pair: expected array of 2"),
        ("table", {"k": "v"}, "Sample.table['k']: expected int"),
        ("phase", "c", "Sample.phase: expected one of ['a', 'b']"),
        ("mode", "auto", "Sample.mode: expected one of ['on', 'off']"),
        ("nested", {"level": "x"}, "Sample.nested"),
        ("nested", {"level": 1, "extra": 2}, "unknown field(s) ['extra']"),
    ],
)
def test_wrong_field_types_are_rejected_with_the_path(field: str, value: Any, phrase: str) -> None:
    with pytest.raises(DecodeError, match=None) as info:
        decode(_with(field, value))
    assert phrase in str(info.value)


def test_int_is_widened_to_float() -> None:
    assert decode(_with("f", 2)).f == 2.0


def test_unknown_type_unknown_field_missing_field_and_oversize() -> None:
    with pytest.raises(DecodeError, match="unknown message type 'Nope'"):
        decode(msgpack.packb(["Nope", {}]))
    tag, body = _raw(_sample())
    with pytest.raises(DecodeError, match=r"unknown field\(s\) \['zzz'\]"):
        decode(msgpack.packb([tag, {**body, "zzz": 1}]))
    del body["i"]
    with pytest.raises(DecodeError, match="missing"):
        decode(msgpack.packb([tag, body]))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(b"\x00" * (MAX_FRAME + 1))
    with pytest.raises(DecodeError, match="not a msgpack frame"):
        decode(b"\xc1")


def test_a_class_name_is_registered_once() -> None:
    with pytest.raises(TypeError, match="duplicate wire tag 'Inner'"):

        @message
        class Inner:
            level: int


# --- properties ---------------------------------------------------------------------------------

_native = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return _native
    if hint is int:
        return st.integers(-(2**63), 2**64 - 1)
    if hint is float:
        return st.floats(allow_nan=False)
    if hint in (bool, str, bytes) or hint is type(None):
        return st.from_type(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return message_strategy(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, __import__("types").UnionType):
        return st.one_of(*(strategy_for(a) for a in args))
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(strategy_for(args[0]), max_size=4).map(tuple)
    if origin is tuple:
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=4)
    raise TypeError(hint)


def message_strategy(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_every_registered_type_round_trips(data: st.DataObject) -> None:
    for tag, cls in sorted(registered().items()):
        msg = data.draw(message_strategy(cls), label=tag)
        frame = encode(msg)
        again = decode(frame)
        assert encode(again) == frame
        kind = data.draw(st.sampled_from(list(Kind)))
        env = decode_envelope(encode_envelope(kind, 7, "x", msg))
        assert env.kind is kind and _equal(env.body, again)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_decode_error(frame: bytes) -> None:
    for fn in (decode, decode_envelope):
        try:
            fn(frame)
        except DecodeError:
            pass


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(sorted(registered())), _native)
def test_well_formed_msgpack_with_random_bodies_is_rejected_cleanly(tag: str, body: Any) -> None:
    try:
        decode_envelope(msgpack.packb([Kind.CAST, 1, "fuzz", tag, body]))
    except DecodeError:
        pass


# --- structure-aware fuzzing (docs/robustness.md) ---------------------------------------------------


@functools.cache
def strategy_for_tag(tag: str) -> st.SearchStrategy[Any]:
    """Built once per type: building the strategy costs more than drawing from it."""
    return message_strategy(registered()[tag])


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> tuple[bytes, str]:
    """A valid envelope of any registered type with one thing wrong (or, sometimes, nothing)."""
    tag = draw(st.sampled_from(sorted(registered())))
    body = msgpack.unpackb(encode(draw(strategy_for_tag(tag))), raw=False, strict_map_key=False)[1]
    head: list[Any] = [int(draw(st.sampled_from(list(Kind)))), draw(st.integers(0, 2**63 - 1)), "fuzz", tag]
    mutation = draw(st.sampled_from(["none", "replace", "drop", "add", "retag", "head"]))
    if mutation == "replace" and body:
        body[draw(st.sampled_from(sorted(body)))] = draw(_native)
    elif mutation == "drop" and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif mutation == "add":
        body[draw(st.text(max_size=8) | st.integers(-(2**63), 2**63 - 1))] = draw(_native)
    elif mutation == "retag":
        head[3] = tag = draw(st.sampled_from(sorted(registered())))
    elif mutation == "head":
        head[draw(st.integers(0, 3))] = draw(_native)
    return msgpack.packb([*head, body]), tag


@settings(max_examples=2000, deadline=None)
@given(mutated_envelopes())
@example((msgpack.packb([3, 1, "fuzz", "CallFailed", {"code": 1, "message": "m"}]), "CallFailed"))
def test_a_valid_envelope_with_one_thing_wrong_decodes_or_raises_decode_error(case: tuple[bytes, str]) -> None:
    frame, tag = case
    try:
        env = decode_envelope(frame)
    except DecodeError as exc:
        assert str(exc)  # the reason is what the receiver logs
        return
    assert type(env.body) is registered()[tag]
    assert decode_envelope(encode_envelope(env.kind, env.corr, env.sender, env.body)) == env  # and it round-trips
