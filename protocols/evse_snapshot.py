"""Snapshot codec for `ConnectorMachine`: its facts dataclass <-> a dict of msgpack-native values.

The actor journals the dict (SQLite, DESIGN §6) and hands it back after a restart. Decoding checks
every field's type and rejects unknown or missing keys and a different version with ValueError, so a
corrupt journal row cannot produce a half-initialised machine.
"""

from __future__ import annotations

import enum
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["SNAPSHOT_VERSION", "facts_from_native", "facts_to_native"]

SNAPSHOT_VERSION = 2
"""Bumped whenever the facts change shape; an older snapshot is refused, not guessed at."""

T = TypeVar("T")


def facts_to_native(facts: Any) -> dict[str, Any]:
    """Every field of the dataclass instance `facts`, plus ``version``, as msgpack-native values."""
    out: dict[str, Any] = {"version": SNAPSHOT_VERSION}
    for f in fields(facts):
        out[f.name] = _to_native(getattr(facts, f.name))
    return out


def facts_from_native(cls: type[T], snapshot: Mapping[str, Any]) -> T:
    """Rebuild a `cls` instance from `facts_to_native` output, or raise ValueError."""
    if not isinstance(snapshot, Mapping):
        raise ValueError(f"snapshot must be a mapping, got {type(snapshot).__name__}")
    if snapshot.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {snapshot.get('version')!r}, expected {SNAPSHOT_VERSION}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown, missing = set(snapshot) - names - {"version"}, names - set(snapshot)
    if unknown or missing:
        raise ValueError(f"snapshot keys: unknown {sorted(map(str, unknown))}, missing {sorted(missing)}")
    return cls(**{name: _from_native(hints[name], snapshot[name], name) for name in names})


def _to_native(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {_to_native(k): _to_native(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_to_native(v) for v in value)
    return value


def _from_native(hint: Any, value: Any, name: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _from_native(inner, value, name)
    if origin is dict:
        if type(value) is not dict:
            raise ValueError(f"{name}: expected a map, got {value!r}")
        return {_from_native(args[0], k, name): _from_native(args[1], v, name) for k, v in value.items()}
    if origin is set:
        if type(value) is not list:
            raise ValueError(f"{name}: expected an array, got {value!r}")
        return {_from_native(args[0], v, name) for v in value}
    return _scalar_from_native(hint, value, name)


def _scalar_from_native(hint: Any, value: Any, name: str) -> Any:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except (ValueError, TypeError):
            raise ValueError(f"{name}: {value!r} is not a {hint.__name__}") from None
    if hint is float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        return float(value)
    if hint in (bool, int, str):
        if type(value) is not hint:  # exact: a bool is not an int here
            raise ValueError(f"{name}: expected {hint.__name__}, got {value!r}")
        return value
    raise TypeError(f"{name}: unsupported field type {hint!r}")
