"""Typed messages: frozen dataclasses registered by class name and carried as msgpack bytes.

The class name is the wire tag. Decoding validates every field against the class's type hints and
rejects unknown tags, unknown or missing fields, wrong types and oversize frames with `DecodeError`,
so a receiver can drop bad bytes instead of crashing on them.

Supported field types: ``int``, ``float`` (an int is accepted and widened), ``bool``, ``str``,
``bytes``, ``None``, unions and ``Optional``, ``list[T]``, ``tuple[T, ...]``, ``tuple[A, B]``,
``dict[K, V]`` with ``str`` or ``int`` keys, ``Literal[...]``, ``enum.Enum`` subclasses (sent by
value), other message classes (nested), and ``Any`` (any msgpack-native value).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgpack

__all__ = [
    "MAX_FRAME",
    "DecodeError",
    "Envelope",
    "Kind",
    "decode",
    "decode_envelope",
    "encode",
    "encode_envelope",
    "message",
    "registered",
]

MAX_FRAME = 1 << 20
"""Largest frame a receiver accepts, in bytes. Larger frames are rejected before unpacking."""

_MAX_DEPTH = 32

T = TypeVar("T")
_Convert = Callable[[Any, str], Any]


class DecodeError(ValueError):
    """Bad bytes from a peer. The receiver logs and drops them (or answers with an error); it never crashes."""


_REGISTRY: dict[str, type] = {}
_CODECS: dict[type, tuple[tuple[str, _Convert, _Convert], ...]] = {}


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def message(cls: type[T]) -> type[T]:
    """Class decorator: make a frozen, slotted, keyword-only dataclass and register it by class name."""
    made = dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)
    previous = _REGISTRY.setdefault(made.__name__, made)
    if previous is not made:
        raise TypeError(
            f"duplicate wire tag {made.__name__!r}: {previous.__module__} and {made.__module__} both define it"
        )
    return made


def registered() -> Mapping[str, type]:
    """Every registered message class by wire tag (read-only view)."""
    return types.MappingProxyType(_REGISTRY)


# --- per-field converters, built once per class from its type hints ------------------------------


def _fields(cls: type) -> tuple[tuple[str, _Convert, _Convert], ...]:
    codec = _CODECS.get(cls)
    if codec is None:
        hints = typing.get_type_hints(cls)
        codec = tuple(
            (f.name, _to_wire(hints[f.name]), _from_wire(hints[f.name], f"{cls.__name__}.{f.name}"))
            for f in dataclasses.fields(cls)
        )
        _CODECS[cls] = codec
    return codec


def _to_wire(hint: Any) -> _Convert:  # noqa: PLR0911 - one return per type form
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return lambda v, _p: _message_to_wire(v)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda v, _p: v.value
    if origin in (list, tuple) or hint in (list, tuple):
        item = _to_wire(args[0]) if args else _identity
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            items = [_to_wire(a) for a in args]
            return lambda v, p: [conv(x, p) for conv, x in zip(items, v, strict=True)]
        return lambda v, p: [item(x, p) for x in v]
    if origin is dict:
        key, val = (_to_wire(a) for a in args) if args else (_identity, _identity)
        return lambda v, p: {key(k, p): val(x, p) for k, x in v.items()}
    if origin in (typing.Union, types.UnionType):
        return _union_to_wire(args)
    return _identity


def _union_to_wire(args: tuple[Any, ...]) -> _Convert:
    complex_args = [a for a in args if _to_wire(a) is not _identity]
    if not complex_args:
        return _identity

    def convert(v: Any, p: str) -> Any:
        for a in complex_args:
            base = typing.get_origin(a) or a
            if isinstance(base, type) and isinstance(v, base):
                return _to_wire(a)(v, p)
        return v

    return convert


def _identity(v: Any, _path: str) -> Any:
    return v


def _fail(path: str, expected: str, value: Any) -> DecodeError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return DecodeError(f"{path}: expected {expected}, got {type(value).__name__} {shown}")


def _from_wire(hint: Any, path: str) -> _Convert:  # noqa: C901, PLR0911, PLR0912 - one branch per type form
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return _check_native
    if hint is None or hint is type(None):
        return _exact(type(None), "nil")
    if hint is bool:
        return _exact(bool, "bool")
    if hint is int:
        return _exact(int, "int")
    if hint is float:
        return _float
    if hint is str:
        return _exact(str, "str")
    if hint is bytes:
        return _exact(bytes, "bytes")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return lambda v, p: _message_from_wire(hint, v, p)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint)
    if origin is typing.Literal:
        return _literal(args)
    if origin in (typing.Union, types.UnionType):
        options = [_from_wire(a, path) for a in args]
        return _union(options, " | ".join(_name(a) for a in args))
    if origin is list or hint is list:
        item = _from_wire(args[0], path) if args else _check_native
        return _sequence(item, list)
    if origin is tuple or hint is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item = _from_wire(args[0], path) if args else _check_native
            return _sequence(item, tuple)
        return _fixed_tuple([_from_wire(a, path) for a in args])
    if origin is dict or hint is dict:
        key, val = (_from_wire(a, path) for a in args) if args else (_key, _check_native)
        return _mapping(key, val)
    raise TypeError(f"{path}: unsupported field type {hint!r}")


def _name(hint: Any) -> str:
    return "nil" if hint is type(None) else getattr(hint, "__name__", repr(hint))


def _exact(kind: type, label: str) -> _Convert:
    def check(v: Any, p: str) -> Any:
        if type(v) is not kind:  # exact: a bool is not an int on the wire
            raise _fail(p, label, v)
        return v

    return check


def _float(v: Any, p: str) -> float:
    if type(v) is float:
        return v
    if type(v) is int:
        return float(v)
    raise _fail(p, "float", v)


def _key(v: Any, p: str) -> Any:
    if type(v) not in (str, int):
        raise _fail(p, "str or int key", v)
    return v


def _enum(cls: type[enum.Enum]) -> _Convert:
    def check(v: Any, p: str) -> Any:
        try:
            return cls(v)
        except (ValueError, TypeError):
            raise _fail(p, f"one of {[m.value for m in cls]}", v) from None

    return check


def _literal(allowed: tuple[Any, ...]) -> _Convert:
    def check(v: Any, p: str) -> Any:
        if not any(type(v) is type(a) and v == a for a in allowed):
            raise _fail(p, f"one of {list(allowed)}", v)
        return v

    return check


def _union(options: list[_Convert], label: str) -> _Convert:
    def check(v: Any, p: str) -> Any:
        deeper: list[DecodeError] = []
        for option in options:
            try:
                return option(v, p)
            except DecodeError as exc:
                # an option whose shape matched failed further in: that error says more than the union's
                if not str(exc).startswith(f"{p}: expected"):
                    deeper.append(exc)
        if len(deeper) == 1:
            raise deeper[0]
        raise _fail(p, label, v)

    return check


def _sequence(item: _Convert, make: type) -> _Convert:
    def check(v: Any, p: str) -> Any:
        if type(v) is not list:
            raise _fail(p, "array", v)
        return make(item(x, f"{p}[{i}]") for i, x in enumerate(v))

    return check


def _fixed_tuple(items: list[_Convert]) -> _Convert:
    def check(v: Any, p: str) -> Any:
        if type(v) is not list or len(v) != len(items):
            raise _fail(p, f"array of {len(items)}", v)
        return tuple(conv(x, f"{p}[{i}]") for i, (conv, x) in enumerate(zip(items, v, strict=True)))

    return check


def _mapping(key: _Convert, val: _Convert) -> _Convert:
    def check(v: Any, p: str) -> Any:
        if type(v) is not dict:
            raise _fail(p, "map", v)
        return {key(k, p): val(x, f"{p}[{k!r}]") for k, x in v.items()}

    return check


def _check_native(v: Any, p: str, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise DecodeError(f"{p}: nested deeper than {_MAX_DEPTH}")
    if v is None or type(v) in (bool, int, float, str, bytes):
        return v
    if type(v) is list:
        return [_check_native(x, p, depth + 1) for x in v]
    if type(v) is dict:
        return {_key(k, p): _check_native(x, p, depth + 1) for k, x in v.items()}
    raise _fail(p, "a msgpack-native value", v)


# --- whole messages -------------------------------------------------------------------------------


def _message_to_wire(msg: Any) -> dict[str, Any]:
    return {name: out(getattr(msg, name), name) for name, out, _ in _fields(type(msg))}


def _message_from_wire(cls: type[T], body: Any, path: str) -> T:
    if type(body) is not dict:
        raise _fail(path, f"map of {cls.__name__} fields", body)
    known = _fields(cls)
    unknown = set(body) - {name for name, _, _ in known}
    if unknown:
        raise DecodeError(f"{path}: unknown field(s) {sorted(map(str, unknown))} for {cls.__name__}")
    values = {name: back(body[name], f"{path}.{name}") for name, _, back in known if name in body}
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise DecodeError(f"{path}: {exc}") from None
    except ValueError as exc:  # the class's own __post_init__ refused the values
        raise DecodeError(f"{path}: {exc}") from None


def _class_of(tag: Any) -> type:
    if type(tag) is not str:
        raise _fail("tag", "str", tag)
    cls = _REGISTRY.get(tag)
    if cls is None:
        raise DecodeError(f"unknown message type {tag!r}")
    return cls


def _unpack(frame: Any) -> Any:
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(frame).__name__}")
    if len(frame) > MAX_FRAME:
        raise DecodeError(f"frame of {len(frame)} bytes exceeds the limit of {MAX_FRAME}")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many unrelated types for bad bytes
        raise DecodeError(f"not a msgpack frame: {type(exc).__name__}: {exc}") from None


def encode(msg: Any) -> bytes:
    """Encode one registered message as ``[tag, {field: value}]``."""
    tag = type(msg).__name__
    if _REGISTRY.get(tag) is not type(msg):
        raise TypeError(f"{tag} is not a registered message class")
    return msgpack.packb([tag, _message_to_wire(msg)])  # type: ignore[no-any-return]


def decode(frame: bytes) -> Any:
    """Decode bytes made by `encode`, or raise `DecodeError`."""
    raw = _unpack(frame)
    if type(raw) is not list or len(raw) != 2:
        raise DecodeError("expected [tag, body]")
    cls = _class_of(raw[0])
    return _message_from_wire(cls, raw[1], cls.__name__)


# --- envelopes ------------------------------------------------------------------------------------


class Kind(enum.IntEnum):
    """What an envelope is for."""

    CALL = 0  #: a request that expects exactly one REPLY or ERROR with the same correlation id
    REPLY = 1  #: the successful answer to a CALL
    ERROR = 2  #: the failed answer to a CALL; the body is a `CallFailed`
    CAST = 3  #: a one-way request
    EVENT = 4  #: a published variable or notification


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """Transport metadata around one message. On the wire: ``[kind, corr, sender, tag, body]``."""

    kind: Kind
    corr: int
    """Correlation id that pairs a REPLY or ERROR with its CALL; 0 for casts and events."""
    sender: str
    """Topology name of the sending actor, or a client's label."""
    body: Any
    """The decoded message instance."""

    @property
    def tag(self) -> str:
        return type(self.body).__name__


def encode_envelope(kind: Kind, corr: int, sender: str, msg: Any) -> bytes:
    tag = type(msg).__name__
    if _REGISTRY.get(tag) is not type(msg):
        raise TypeError(f"{tag} is not a registered message class")
    return msgpack.packb([int(kind), corr, sender, tag, _message_to_wire(msg)])  # type: ignore[no-any-return]


def decode_envelope(frame: Any) -> Envelope:
    """Decode bytes made by `encode_envelope`, or raise `DecodeError`."""
    raw = _unpack(frame)
    if type(raw) is not list or len(raw) != 5:
        raise DecodeError("expected envelope [kind, corr, sender, tag, body]")
    kind, corr, sender, tag, body = raw
    if type(kind) is not int or kind not in Kind._value2member_map_:
        raise _fail("kind", f"one of {[int(k) for k in Kind]}", kind)
    if type(corr) is not int or not 0 <= corr < 1 << 63:
        raise _fail("corr", "non-negative int", corr)
    if type(sender) is not str:
        raise _fail("sender", "str", sender)
    cls = _class_of(tag)
    return Envelope(Kind(kind), corr, sender, _message_from_wire(cls, body, cls.__name__))
