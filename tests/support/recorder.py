"""Recorder: an actor that subscribes to other actors' vars and keeps them, so a test can see what was
published (config ``subscribe: {actor_name: [MessageTypeName, ...]}``) and call `GetRecorded`."""

from __future__ import annotations

import importlib
import time
from typing import Any, ClassVar

from charger.behaviour import Behaviour, handles
from charger.messages import message, registered


@message
class GetRecorded:
    """The recorded vars of type `tag` (all types when empty) with index >= `since`."""

    tag: str = ""
    since: int = 0


@message
class Recorded:
    items: list[Any]
    """[index, tag, publisher-independent fields as a map, receive time] per var, oldest first."""
    next_index: int


class Recorder(Behaviour):
    config_schema: ClassVar = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "subscribe": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "default": {},
            },
            "keep": {"type": "integer", "minimum": 1, "default": 5000},
            "imports": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["charger.actors.ticker", "charger.actors.charging"],
                "description": "Modules that define the watched message types.",
            },
        },
    }

    def init(self) -> None:
        self._items: list[tuple[int, str, dict[str, Any], float]] = []
        self._next = 0
        for module in self.config["imports"]:
            importlib.import_module(module)
        types = registered()
        routes = dict(type(self)._routes)
        for target, tags in self.config["subscribe"].items():
            classes = [types[tag] for tag in tags]
            for cls in classes:
                routes[cls] = "_record"
            self.subscribe(target, *classes)
        self._routes = routes  # instance routes: this actor handles whatever it was told to watch

    def _record(self, msg: Any) -> None:
        fields = {name: _native(getattr(msg, name)) for name in msg.__dataclass_fields__}
        self._items.append((self._next, type(msg).__name__, fields, time.time()))
        self._next += 1
        del self._items[: -self.config["keep"]]

    @handles(GetRecorded)
    def on_get(self, req: GetRecorded) -> Recorded:
        items = [list(i) for i in self._items if i[0] >= req.since and (not req.tag or i[1] == req.tag)]
        return Recorded(items=items, next_index=self._next)


def _native(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {name: _native(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, list | tuple):
        return [_native(v) for v in value]
    if hasattr(value, "value") and type(value).__module__ != "builtins":
        return value.value
    return value
